"""``python -m hashring``: a demonstration on built-in defaults.

Builds a 100-node ring, batch-maps 10 million keys, and reports throughput, balance,
and how many keys move when one node leaves and another joins.

``python -m hashring bench [--quick]`` runs the benchmark suite against the peers (from
a source checkout) and prints its Markdown report.

``python -m hashring failover-demo [--runs 20]`` kills the primary of a partition replicated
on three local processes over a shared-memory log, and reports the failover (detection,
promotion, the new epoch, acknowledged entries lost, time to the first committed write).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import HashRing, __version__

CHUNK = 1_000_000


class Progress:
    """A one-line progress indicator on stderr for steps longer than a second."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.start = label, total, time.perf_counter()
        self.shown = False

    def update(self, done: int):
        if time.perf_counter() - self.start > 1.0 or self.shown:
            self.shown = True
            sys.stderr.write(f"\r  {self.label}: {done / self.total:6.1%}")
            sys.stderr.flush()

    def close(self):
        if self.shown:
            sys.stderr.write("\r" + " " * (len(self.label) + 16) + "\r")
            sys.stderr.flush()


def make_keys(n: int, seed: int) -> np.ndarray:
    """n keys like b"user:123456789012" as a numpy bytes array (random ids, fixed seed)."""
    rng = np.random.default_rng(seed)
    keys = np.empty(n, dtype="S17")
    progress = Progress(f"generating {n:,} keys", n)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        ids = rng.integers(0, 10**12, size=m, dtype=np.int64).astype("S12")
        keys[start:start + m] = np.char.add(np.array(b"user:", dtype="S5"), ids)
        progress.update(start + m)
    progress.close()
    return keys


def map_all(ring_or_snap, keys: np.ndarray, label: str) -> tuple[np.ndarray, float]:
    out = np.empty(len(keys), dtype=np.int32)
    progress = Progress(label, len(keys))
    elapsed = 0.0
    for start in range(0, len(keys), CHUNK):
        part = keys[start:start + CHUNK]
        t0 = time.perf_counter()
        out[start:start + len(part)] = ring_or_snap.map(part)
        elapsed += time.perf_counter() - t0
        progress.update(start + len(part))
    progress.close()
    return out, elapsed


def demo(args) -> int:
    print(f"hashring {__version__} on Python {platform.python_version()} ({platform.machine()})")
    t0 = time.perf_counter()
    names = [f"node{i}" for i in range(1, args.nodes + 1)]
    ring = HashRing(names, vnodes=args.vnodes, hash=args.hash)
    build_ms = (time.perf_counter() - t0) * 1e3
    snap = ring.snapshot()
    print(f"ring: {len(ring)} nodes, {len(snap.points):,} points ({snap.vnodes} per node, hash={snap.hash}), "
          f"built in {build_ms:.1f} ms, {snap.nbytes / len(snap.points):.1f} bytes/point")

    t0 = time.perf_counter()
    keys = make_keys(args.keys, args.seed)
    print(f"keys: {args.keys:,} keys like {keys[0].decode()!r} (numpy bytes array, made in "
          f"{time.perf_counter() - t0:.1f} s)")

    owners, elapsed = map_all(snap, keys, f"mapping {args.keys:,} keys")
    print(f"map: {args.keys:,} keys in {elapsed:.2f} s = {args.keys / elapsed / 1e6:.1f} M keys/s "
          f"({elapsed / args.keys * 1e9:.1f} ns/key)")

    counts = np.bincount(owners, minlength=len(ring))
    print(f"balance: keys per node min {counts.min():,} / mean {counts.mean():,.0f} / max {counts.max():,}; "
          f"peak/mean = {counts.max() / counts.mean():.3f}")

    leaving = names[len(names) // 2]
    share = snap.shares()[leaving]
    ring.remove_node(leaving)
    after_remove, _ = map_all(ring.snapshot(), keys, f"remapping after removing {leaving}")
    old_names = np.array(snap.nodes, dtype=object)
    new_names = np.array(ring.nodes, dtype=object)
    moved = old_names[owners] != new_names[after_remove]
    only_its_keys = bool(np.all(old_names[owners][moved] == leaving))
    print(f"remove {leaving}: {int(moved.sum()):,} keys moved ({moved.mean():.3%}; its share was {share:.3%}); "
          f"only its own keys moved: {only_its_keys}")

    snap2 = ring.snapshot()
    ring.add_node("newcomer")
    after_add, _ = map_all(ring.snapshot(), keys, "remapping after adding newcomer")
    names2 = np.array(snap2.nodes, dtype=object)
    names3 = np.array(ring.nodes, dtype=object)
    moved = names2[after_remove] != names3[after_add]
    only_to_it = bool(np.all(names3[after_add][moved] == "newcomer"))
    print(f"add newcomer: {int(moved.sum()):,} keys moved ({moved.mean():.3%}; its share is "
          f"{ring.shares()['newcomer']:.3%}); every moved key went to it: {only_to_it}")
    return 0


def find_benchmarks() -> Path | None:
    """The suite lives beside the package in a source checkout (or under the cwd)."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (root / "benchmarks" / "report.py").is_file():
            return root / "benchmarks"
    return None


def bench(argv) -> int:
    parser = argparse.ArgumentParser(prog="hashring bench",
                                     description="Run the benchmark suite against the peers and print the report.")
    parser.add_argument("--quick", action="store_true", help="smaller inputs; finishes in under 2 minutes")
    parser.add_argument("--json", help="where to keep pytest-benchmark's JSON (default: a temporary file)")
    parser.add_argument("-k", dest="select", help="only benchmarks matching this pytest -k expression")
    args = parser.parse_args(argv)
    where = find_benchmarks()
    if where is None:
        parser.error("the benchmark suite ships with the source tree, not the wheel: "
                     "run this from a clone of the repository")
    if importlib.util.find_spec("pytest_benchmark") is None:
        parser.error("pytest-benchmark is not installed: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.json or os.path.join(tmp, "bench.json")
        cmd = [sys.executable, "-m", "pytest", str(where), "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={out}", "--benchmark-columns=median,rounds"]
        if args.quick:
            cmd.append("--quick")
        if args.select:
            cmd += ["-k", args.select]
        print("running:", " ".join(cmd), file=sys.stderr)
        rc = subprocess.call(cmd, cwd=where.parent, stdout=sys.stderr)   # stdout: the report only
        if not os.path.exists(out):
            return rc or 1
        spec = importlib.util.spec_from_file_location("hashring_bench_report", where / "report.py")
        report = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(report)
        with open(out) as f:
            print(report.render(json.load(f)))
    return rc


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return bench(argv[1:])
    if argv[:1] == ["failover-demo"]:
        from ._failover_demo import main as failover_demo
        return failover_demo(argv[1:])
    parser = argparse.ArgumentParser(prog="hashring", description=__doc__.splitlines()[0],
                                     epilog="python -m hashring bench [--quick]: the benchmark suite; "
                                            "python -m hashring failover-demo [--runs N]: failover of "
                                            "local processes")
    parser.add_argument("--nodes", type=int, default=100, help="nodes in the ring (default 100)")
    parser.add_argument("--keys", type=int, default=10_000_000, help="keys to map (default 10,000,000)")
    parser.add_argument("--vnodes", type=int, default=None, help="points per node (default: the library's)")
    parser.add_argument("--hash", default="xxh3", choices=["xxh3", "md5", "murmur3"])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.keys < 1 or args.seed < 0:
        parser.error("--nodes must be >= 2, --keys >= 1 and --seed >= 0")
    try:
        HashRing(["probe"], vnodes=args.vnodes, hash=args.hash)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        return demo(args)
    except BrokenPipeError:          # e.g. piped into `head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
