"""Checks that the workspace's `rust-version` is what the lockfile needs: the newest
`rust-version` any locked dependency declares (`cargo metadata`). Exits 1, naming the
dependency, when they differ.

    python3 scripts/rust_version.py
"""

import json
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


def main():
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True, capture_output=True, text=True).stdout)
    ours = set(metadata["workspace_members"])
    declared = {package["rust_version"] for package in metadata["packages"]
                if package["id"] in ours and package.get("rust_version")}
    needed = max(((version(package["rust_version"]), package["name"], package["version"])
                  for package in metadata["packages"]
                  if package["id"] not in ours and package.get("rust_version")),
                 default=((0,), "nothing", ""))
    if len(declared) != 1 or version(declared.pop())[:2] != needed[0][:2]:
        wanted = ".".join(str(part) for part in needed[0][:2])
        print(f"rust-version in Cargo.toml should be {wanted}: {needed[1]} {needed[2]} needs it",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
