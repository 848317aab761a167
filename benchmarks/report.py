"""Render a pytest-benchmark JSON file as Markdown.

    python -m pytest benchmarks --benchmark-json=.benchmarks/latest.json
    python benchmarks/report.py .benchmarks/latest.json

Prints the machine and package versions, one timing table (median per round, per key
or item, ratio to hashring in the same group), the memory and balance measures, and
issue 3's targets checked against the same file. ``render(data)`` is the entry point
for other code (``python -m hashring bench`` loads this file by path).
"""

from __future__ import annotations

import json
import math
import re
import sys

PACKAGES = ("hashring-ha", "numpy", "uhashring", "ketama", "jump-consistent-hash", "clandestined", "xxhash", "pyarrow")


# --- reading the JSON -----------------------------------------------------------------


def impl(bench) -> str:
    """Row name: the implementation the test recorded, else its parameter id."""
    return bench.get("extra_info", {}).get("impl") or bench.get("param") or bench["name"]


def items(bench) -> int:
    """Keys, entries or operations of one round."""
    extra = bench.get("extra_info", {})
    return extra.get("items") or extra.get("entries_per_round") or 1


def median_ns(bench) -> float:
    return bench["stats"]["median"] * 1e9


def per_item_ns(bench) -> float:
    return median_ns(bench) / items(bench)


def is_measure(bench) -> bool:
    """Rows whose result is a measure in extra_info, not their timing."""
    extra = bench.get("extra_info", {})
    return "bytes_per_point" in extra or "peak_mean" in extra


def scenario_order(group: str, first_seen: int):
    m = re.match(r"(\d+) ", group)
    return (int(m.group(1)) if m else math.inf, first_seen)


def index(benchmarks) -> dict:
    """group -> {implementation -> benchmark}, groups in scenario order."""
    groups = {}
    for bench in benchmarks:
        groups.setdefault(bench.get("group") or "", {})[impl(bench)] = bench
    order = sorted(enumerate(groups), key=lambda pair: scenario_order(pair[1], pair[0]))
    return {group: groups[group] for _, group in order}


# --- formatting ------------------------------------------------------------------------


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:,.{2 if ns < 10 * scale else 1}f} {unit}"
    return f"{ns:,.{2 if ns < 10 else 1}f} ns"


def fmt_ratio(x: float) -> str:
    return f"{x:.2g}x" if x < 0.1 else f"{x:,.{2 if x < 10 else 1}f}x"


def table(header, rows) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


# --- sections --------------------------------------------------------------------------


def header(data) -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    versions = machine.get("package_versions", {})
    packages = ", ".join(f"{name} {versions[name]}" for name in PACKAGES if versions.get(name))
    return (f"Machine: {cpu.get('brand_raw') or machine.get('processor') or '?'}, {cpu.get('count', '?')} cores; "
            f"Python {machine.get('python_version', '?')}; run {data.get('datetime', '?')[:19]}; "
            f"mode: {machine.get('benchmark_mode', '?')}; {packages or 'package versions not recorded'}.")


def timing_section(groups) -> list:
    rows = []
    for group, benches in groups.items():
        timed = [b for b in benches.values() if not is_measure(b)]
        if not timed:
            continue
        base = next((per_item_ns(b) for b in timed if impl(b).startswith("hashring")), None)
        for i, bench in enumerate(sorted(timed, key=per_item_ns)):
            ratio = fmt_ratio(per_item_ns(bench) / base) if base else "-"
            rows.append([group if i == 0 else "", impl(bench), fmt_time(median_ns(bench)),
                         fmt_time(per_item_ns(bench)), ratio])
    return ["### Timings", "",
            "Medians. Per item: per key (or per entry, operation) of a round. "
            "Ratio: the row's per-item median over the first hashring row's in its group.", ""] + \
        table(["scenario", "implementation", "median per round", "per key / item", "ratio"], rows)


def memory_section(groups) -> list:
    rows = []
    for benches in groups.values():
        for bench in benches.values():
            extra = bench.get("extra_info", {})
            if "bytes_per_point" in extra:
                rows.append((extra["bytes_per_point"], [impl(bench), f"{extra['bytes_per_point']:.1f}",
                                                        extra.get("method", "")]))
    if not rows:
        return []
    return ["### Memory per ring point (100 nodes, each at its defaults)", ""] + \
        table(["implementation", "bytes / point", "measured by"], [r for _, r in sorted(rows, key=lambda r: r[0])])


def balance_section(groups) -> list:
    columns = {}            # node count -> {implementation: cell}
    for benches in groups.values():
        for bench in benches.values():
            extra = bench.get("extra_info", {})
            if "peak_mean" in extra:
                cell = f"{extra['peak_mean']:.3f}"
                if extra.get("keys", 1_000_000) != 1_000_000:
                    cell += f" ({extra['keys']:,} keys)"
                columns.setdefault(extra.get("nodes", 0), {})[impl(bench)] = cell
    if not columns:
        return []
    sizes = sorted(columns)
    names = list(dict.fromkeys(name for size in sizes for name in columns[size]))
    rows = [[name] + [columns[size].get(name, "-") for size in sizes] for name in names]
    return ["### Balance: peak / mean keys per node (1M keys, each at its defaults)", ""] + \
        table(["implementation"] + [f"{size:,} nodes" for size in sizes], rows)


# --- targets ---------------------------------------------------------------------------


class Lookup:
    """Finds rows by group pattern and implementation; the largest key count wins."""

    def __init__(self, groups):
        self.groups = groups

    def group(self, pattern, *impls):
        """The matching group with the most keys (the pattern's first capture) that has impls."""
        found = []
        for group, benches in self.groups.items():
            m = re.fullmatch(pattern, group)
            if m and all(name in benches for name in impls):
                found.append((float(m.group(1)) if m.groups() else 0.0, group))
        return max(found)[1] if found else None

    def row(self, pattern, name):
        group = self.group(pattern, name)
        return (self.groups[group][name], group) if group else (None, None)

    def ratio(self, pattern, slow, fast):
        group = self.group(pattern, slow, fast)
        if not group:
            return None, None
        benches = self.groups[group]
        return per_item_ns(benches[slow]) / per_item_ns(benches[fast]), group


def keys_note(group):
    m = re.search(r"(\d+M) (?:str )?keys", group or "")
    return f" ({m.group(1)} keys)" if m else ""


def targets_section(groups) -> list:
    find = Lookup(groups)
    rows = []

    def at_most(target, pattern, name, limit, unit, per_item=True):
        bench, group = find.row(pattern, name)
        if bench is None:
            rows.append([target, "n/a", "n/a"])
            return
        value = per_item_ns(bench) if per_item else median_ns(bench)
        shown = f"{value:,.1f} ns/{unit}" if per_item else fmt_time(value)
        rows.append([target, shown + keys_note(group), "yes" if value <= limit else "no"])

    def at_least(target, pattern, slow, fast, limit):
        value, group = find.ratio(pattern, slow, fast)
        if value is None:
            rows.append([target, "n/a", "n/a"])
        else:
            rows.append([target, fmt_ratio(value) + keys_note(group), "yes" if value >= limit else "no"])

    def extra(target, pattern, name, field, limit, fmt):
        bench, _ = find.row(pattern, name)
        value = bench.get("extra_info", {}).get(field) if bench else None
        if value is None:
            rows.append([target, "n/a", "n/a"])
        else:
            rows.append([target, fmt.format(value), "yes" if value <= limit else "no"])

    prehashed = r"3 pre-hashed, (\d+)M keys, {} points"
    str_list = r"2 map list of (\d+)M str keys"
    compat = r"8 ketama-compatible map, (\d+)M str keys, 100 nodes"
    at_most("pre-hashed, 16,000 points: <= 3 ns/key", prehashed.format("16,000"), "hashring", 3, "key")
    at_least("pre-hashed, 16,000 points: >= 25x np.searchsorted", prehashed.format("16,000"),
             "np.searchsorted", "hashring", 25)
    at_most("pre-hashed, 1,000,000 points: <= 10 ns/key", prehashed.format("1,000,000"), "hashring", 10, "key")
    at_most("list of str keys: <= 25 ns/key", str_list, "hashring", 25, "key")
    at_least("list of str keys: >= 50x uhashring get_node loop", str_list, "uhashring", "hashring", 50)
    at_least("list of str keys: >= 5x xxh3 + np.searchsorted", str_list, "xxh3+np.searchsorted", "hashring", 5)
    at_most("numpy S array: <= 12 ns/key", r"2 map numpy S array, (\d+)M keys", "hashring", 12, "key")
    at_most("Arrow string array: <= 12 ns/key", r"2 map Arrow string array, (\d+)M keys", "hashring", 12, "key")
    at_least("ketama-compatible batch: >= 8x uhashring ketama (same mapping)", compat,
             "uhashring-ketama", "hashring compat=uhashring", 8)
    at_least("ketama-compatible batch: >= 2x libketama binding (same mapping)", compat,
             "ketama", "hashring compat=ketama", 2)
    at_most("single get_node: <= 150 ns", r"1 get_node, str key, 100 nodes", "hashring", 150, "key")
    at_most("get_nodes(key, 3): <= 300 ns", r"4 get_nodes\(key, 3\), 100 nodes", "hashring get_nodes loop", 300, "key")
    at_most("build, 1,000 nodes x 160 points: <= 10 ms", r"5 build, 1,000 nodes x 160 points", "hashring",
            10e6, "", per_item=False)
    at_most("add one node to a 1,000-node ring: <= 10 ms", r"5 add one node to a 1,000-node ring", "hashring",
            10e6, "", per_item=False)
    extra("memory: <= 16 B/point", r"6 memory per ring point", "hashring", "bytes_per_point", 16, "{:.1f} B/point")
    threads = r"2 map (\d+)M keys on 2 threads"
    value, group = find.ratio(threads, "hashring 1 thread", "hashring 2 threads")
    rows.append(["2 threads: >= 1.7x one thread"] + (["n/a", "n/a"] if value is None else
                [fmt_ratio(value) + keys_note(group), "yes" if value >= 1.7 else "no"]))
    extra("balance, 100 nodes: peak/mean <= 1.10", r"7 balance, 1M keys, 100 nodes", "hashring", "peak_mean", 1.10,
          "{:.3f}")
    measured = [row for row in rows if row[1] != "n/a"]
    out = ["### Targets (issue 3)", ""] + table(["target", "measured", "met"], rows) if measured else []
    routes = []
    for form in ("list of 1M str keys", "numpy S array, 1M keys"):
        value, group = find.ratio(rf"9 failover routes, {re.escape(form)}, 100 nodes",
                                  "hashring route_many", "hashring ring.map")
        if value is not None:
            routes.append([f"route_many, {form}: <= 2x ring.map", f"{value:.2f}x", "yes" if value <= 2 else "no"])
    if routes:
        out += ([""] if out else []) + ["### Targets (issue 5)", ""] + table(["target", "measured", "met"], routes)
    return out


def render(data) -> str:
    groups = index(data.get("benchmarks", []))
    sections = [[header(data)], timing_section(groups), memory_section(groups), balance_section(groups)]
    if any(re.match(r"\d+ ", group) for group in groups):
        sections.append(targets_section(groups))
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else ".benchmarks/latest.json"
    with open(path) as f:
        sys.stdout.write(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
