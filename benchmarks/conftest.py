"""Shared inputs, the --quick switch and the machine info of the benchmarks.

Every implementation is timed on the same pre-built inputs: str keys
``f"user:{id}"`` drawn from ``random.Random(42)`` and created in order (so the str
objects sit in memory the way a real batch's do), in the forms a batch arrives in, and
nodes named ``node1`` .. ``nodeN``.
"""

from __future__ import annotations

import importlib.util
import os
import random
from importlib import metadata

import numpy as np
import pytest

PACKAGES = ("hashring-ha", "numpy", "uhashring", "ketama", "jump-consistent-hash", "clandestined",
            "xxhash", "pyarrow")
KETAMA_KEY_PREFIXES = (100_000, 1_000_000)      # the key counts ketama rows look up


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", default=False,
                     help="1M keys instead of 10M, no 10,000-node builds, fewer rounds "
                          "(also on with HASHRING_BENCH_QUICK=1)")


def pytest_configure(config):
    if os.environ.get("HASHRING_BENCH_QUICK", "0") not in ("", "0"):
        config.option.quick = True


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["benchmark_mode"] = "quick" if config.getoption("quick") else "full"
    versions = {}
    for dist in PACKAGES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    machine_info["package_versions"] = versions


class Mode:
    """Sizes and round counts of this run (full, or --quick)."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.max_keys = 1_000_000 if quick else 10_000_000

    def rounds(self, full: int, quick: int) -> int:
        return quick if self.quick else full


class Inputs:
    """Inputs built on first use and kept for the session; larger ones reuse the key list."""

    def __init__(self, max_keys: int):
        rnd = random.Random(42)
        self._keys = [f"user:{rnd.randrange(10**12)}" for _ in range(max_keys)]
        self._cache = {}

    def _cached(self, kind, n, make):
        if (kind, n) not in self._cache:
            self._cache[kind, n] = make()
        return self._cache[kind, n]

    def keys(self, n: int) -> list:
        """The first n keys (the same str objects for every n)."""
        if n > len(self._keys):
            raise ValueError(f"only {len(self._keys):,} keys in this run")
        return self._keys if n == len(self._keys) else self._cached("list", n, lambda: self._keys[:n])

    def s_array(self, n: int) -> np.ndarray:
        return self._cached("S", n, lambda: np.array(self.keys(n), dtype="S"))

    def arrow(self, n: int):
        pa = pytest.importorskip("pyarrow")
        return self._cached("arrow", n, lambda: pa.array(self.keys(n), type=pa.string()))

    def hashes(self, n: int) -> np.ndarray:
        """hashring.hash64 of the first n keys: the input of pre-hashed lookups."""
        import hashring

        return self._cached("hashes", n, lambda: hashring.hash64_many(self.keys(n)))

    def hash_list(self, n: int) -> list:
        return self._cached("hash list", n, lambda: self.hashes(n).tolist())

    @staticmethod
    def nodes(n: int) -> list:
        return [f"node{i}" for i in range(1, n + 1)]


@pytest.fixture(scope="session")
def mode(pytestconfig):
    return Mode(pytestconfig.getoption("quick"))


@pytest.fixture(scope="session")
def inputs(mode):
    return Inputs(mode.max_keys)


@pytest.fixture(scope="session")
def node_names(inputs):
    return inputs.nodes(100)


@pytest.fixture(scope="session")
def ketama_worker(inputs):
    """The libketama worker process, given the first 1M keys (see ketama_worker.py)."""
    if importlib.util.find_spec("ketama") is None:
        pytest.skip("ketama (libketama binding) is not installed")
    from ketama_worker import KetamaWorker

    worker = KetamaWorker(inputs.keys(max(KETAMA_KEY_PREFIXES)), list(KETAMA_KEY_PREFIXES))
    yield worker
    worker.close()
