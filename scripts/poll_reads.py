"""A client reading while something else runs (a rebuild): GETs each URL in turn every
EVERY seconds until the process PID exits, then prints what it saw.

    poll_reads.py EVERY PID URL...

An answer counts as failed when it is not HTTP 200 with `status_code` 0, and as empty when
a list in it that was not empty at the first poll of its URL is empty. Prints one line for
bench_table.py (`RESULT p50_ms=... p99_ms=... max_ms=... polls=... failed=... empty=...`) and
exits 1 if any answer failed or was empty.
"""

import json
import os
import sys
import time
import urllib.request

LISTS = ("video_list", "comment_list", "user_list", "message_list")


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def get(url):
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
    except Exception as error:  # noqa: BLE001 - any failure is a failed read
        return time.perf_counter() - started, None, str(error)
    return time.perf_counter() - started, body, None


def main():
    every, pid, urls = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    seen_lists = {}
    latencies, failed, empty = [], [], []
    while alive(pid):
        for url in urls:
            took, body, error = get(url)
            latencies.append(took * 1000)
            if error or body.get("status_code") != 0:
                failed.append(error or body)
                continue
            lists = {name: len(body[name]) for name in LISTS if isinstance(body.get(name), list)}
            first = seen_lists.setdefault(url, lists)
            if any(first.get(name, 0) > 0 and length == 0 for name, length in lists.items()):
                empty.append(url)
        time.sleep(every)
    latencies.sort()
    if not latencies:
        print("RESULT polls=0")
        return 1

    def at(share):
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    print(f"RESULT p50_ms={at(0.5):.2f} p99_ms={at(0.99):.2f} max_ms={latencies[-1]:.2f} "
          f"polls={len(latencies)} failed={len(failed)} empty={len(empty)}")
    for failure in failed[:5]:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failed or empty else 0


if __name__ == "__main__":
    sys.exit(main())
