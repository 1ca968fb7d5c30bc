"""The results of `make bench`: one JSON line per measurement, then one table.

    bench_table.py record RESULTS NAME CONCURRENCY CEILING 'RESULT key=value ...' [NOTE]
    bench_table.py ceiling RESULTS ID 'what it is' 'RESULT key=value ...'
    bench_table.py print RESULTS

A measurement names the ceiling it is compared with (an id recorded with `ceiling`, or `-`);
the table shows its throughput as a share of that ceiling's.
"""

import json
import sys


def parse(result):
    fields = {}
    for part in result.split()[1:]:
        key, _, value = part.partition("=")
        try:
            fields[key] = float(value)
        except ValueError:
            fields[key] = value
    return fields


def record(path, name, concurrency, ceiling, result, note=""):
    line = {"kind": "measure", "name": name, "concurrency": concurrency,
            "ceiling": ceiling, "note": note, **parse(result)}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


def ceiling(path, ident, what, result, concurrency=""):
    line = {"kind": "ceiling", "id": ident, "name": what, "concurrency": concurrency,
            **parse(result)}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


def fmt(value, digits=1):
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def show(path):
    lines = [json.loads(line) for line in open(path) if line.strip()]
    ceilings = {line["id"]: line for line in lines if line["kind"] == "ceiling"}
    header = ["path", "conc.", "req/s", "p50 ms", "p99 ms", "max ms", "MB/s", "ceiling",
              "ceiling req/s", "ratio", "note"]
    rows = []
    for line in lines:
        if line["kind"] == "ceiling":
            rows.append([f"[{line['id']}] {line['name']}", line.get("concurrency", ""),
                         fmt(line.get("rps")), fmt(line.get("p50_ms"), 2),
                         fmt(line.get("p99_ms"), 2), fmt(line.get("max_ms"), 2),
                         fmt(line.get("mb_s")), "", "", "", ""])
            continue
        top = ceilings.get(line["ceiling"])
        ratio = ""
        if top and top.get("rps") and line.get("rps"):
            ratio = f"{100 * line['rps'] / top['rps']:.1f}%"
        note = line.get("note", "")
        if line.get("refused"):
            note = (note + f" refused {int(line['refused'])}").strip()
        if line.get("busy"):
            note = (note + f" (busy {int(line['busy'])})").strip()
        if line.get("socket_errors"):
            note = (note + f" socket errors {int(line['socket_errors'])}").strip()
        if line.get("non_2xx"):
            note = (note + f" non-2xx {int(line['non_2xx'])}").strip()
        rows.append([line["name"], line["concurrency"], fmt(line.get("rps")),
                     fmt(line.get("p50_ms"), 2), fmt(line.get("p99_ms"), 2),
                     fmt(line.get("max_ms"), 2), fmt(line.get("mb_s")),
                     line["ceiling"] if line["ceiling"] != "-" else "",
                     fmt(top.get("rps")) if top else "", ratio, note])
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"record": record, "ceiling": ceiling, "print": show}[command](*args)
