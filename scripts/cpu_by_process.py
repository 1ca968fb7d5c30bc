#!/usr/bin/env python3
"""CPU time of the bench's processes, by part, for `make bench`'s write rows.

`cpu_by_process.py snap FILE` keeps each process's CPU time so far (user + system, from
/proc/<pid>/stat); `cpu_by_process.py per FILE REQUESTS` prints the CPU each part spent since
the snapshot, per request, most first: "postgres 0.41 ms, redis 0.12 ms, ...".
"""
import json
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def part(pid):
    """The part of the stack a process is, by its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return None
    program = os.path.basename(words[0].decode(errors="replace"))
    line = b" ".join(words).decode(errors="replace")
    if program.startswith("postgres") or line.startswith("postgres:"):
        return "postgres"
    if program.startswith("redis"):
        return "redis"
    if program == "java" and "kafka" in line:
        return "kafka"
    if program == "nginx" or line.startswith("nginx:"):
        return "nginx"
    if program in ("command-api", "projector", "query-api", "wrk"):
        return program
    return None


def snapshot():
    """Per process (pid and start time, so that a pid used again is not mixed up): its part and CPU seconds."""
    seen = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        name = part(pid)
        if name is None:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state is field 3, utime 14, stime 15, starttime 22.
        seen[f"{pid}/{fields[19]}"] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return seen


def main():
    command, path = sys.argv[1], sys.argv[2]
    if command == "snap":
        with open(path, "w") as f:
            json.dump(snapshot(), f)
        return
    requests = float(sys.argv[3])
    with open(path) as f:
        before = json.load(f)
    spent = {}
    for key, (name, seconds) in snapshot().items():
        spent[name] = spent.get(name, 0.0) + seconds - before.get(key, (name, 0.0))[1]
    ranked = sorted(spent.items(), key=lambda item: -item[1])
    print(", ".join(f"{name} {1000 * seconds / requests:.2f} ms" for name, seconds in ranked if seconds > 0))


main()
