"""Render a pytest-benchmark JSON file as the README's Markdown table.

    python -m pytest benchmarks --benchmark-json=.benchmarks/latest.json
    python benchmarks/report.py .benchmarks/latest.json

One row per benchmark: median time per round, per entry/key (when the test records
``entries_per_round`` or the group names a key count), and the ratio of each peer to the
hashring row of its group.
"""

import json
import re
import sys


def per_item(bench):
    extra = bench.get("extra_info", {})
    if "entries_per_round" in extra:
        return extra["entries_per_round"]
    m = re.search(r"(\d[\d,]*)(k|M)? (?:str )?keys", bench["group"])
    if m:
        n = int(m.group(1).replace(",", ""))
        return n * {"k": 1_000, "M": 1_000_000, None: 1}[m.group(2)]
    return 1


def fmt_ns(ns):
    return f"{ns / 1e3:,.1f} µs" if ns >= 10_000 else f"{ns:,.1f} ns"


def render(data):
    m = data["machine_info"]
    lines = [
        f"Machine: {m.get('cpu', {}).get('brand_raw', m.get('processor', '?'))}, "
        f"{m.get('cpu', {}).get('count', '?')} cores; Python {m['python_version']}; "
        f"run {data['datetime'][:19]}. Medians; ratio = peer time per item / hashring's.",
        "",
        "| scenario | implementation | median per round | per entry / key | ratio to hashring |",
        "|---|---|---|---|---|",
    ]
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"], []).append(b)
    for group, benches in groups.items():
        rows = [(b["param"] if "param" in b else b["name"], b["stats"]["median"] * 1e9 / per_item(b), b)
                for b in benches]
        base = next((ns for name, ns, _ in rows if name.startswith("hashring")), None)
        for name, ns, b in sorted(rows, key=lambda r: r[1]):
            ratio = f"{ns / base:.1f}x" if base else "-"
            lines.append(f"| {group} | {name} | {fmt_ns(b['stats']['median'] * 1e9)} | {fmt_ns(ns)} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/latest.json") as f:
        print(render(json.load(f)))
