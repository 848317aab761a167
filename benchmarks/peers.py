"""One small adapter per implementation: how to build its ring and how to look keys up.

Every adapter answers in node names, so a test checks any peer's output the same way.
An operation a peer does not have skips the test with the reason.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import tracemalloc

import numpy as np
import pytest

from hashring import HashRing


def names_of(nodes, indices) -> list:
    """Owner indices as a list of node names."""
    return np.asarray(nodes, dtype=object)[indices].tolist()


class Peer:
    """An implementation under test; subclasses fill in what it supports."""

    label = ""
    modules: tuple = ()         # imported by require(); a missing one skips the test

    def require(self):
        for name in self.modules:
            pytest.importorskip(name)
        return self

    def build(self, names, vnodes=None):
        raise NotImplementedError

    def get(self, ring):
        """key -> node name."""
        self.unsupported("single-key lookup")

    def loop(self, ring):
        """keys -> None: one lookup per key, results dropped (the per-key cost)."""
        get = self.get(ring)

        def run(keys):
            for key in keys:
                get(key)
        return run

    def map(self, ring):
        """keys -> result: the owner of every key, in the peer's own form."""
        get = self.get(ring)

        def run(keys):
            return [get(key) for key in keys]
        return run

    def names(self, ring, result) -> list:
        """map()'s result as a list of node names (untimed)."""
        return result

    def lookup_names(self, ring, keys) -> list:
        """Owners of a few keys, for checks (untimed)."""
        get = self.get(ring)
        return [get(key) for key in keys]

    def preference_loop(self, ring, n):
        """keys -> None: one n-node preference list per key, results dropped."""
        self.unsupported("preference lists")

    def preference(self, ring, n, keys) -> list:
        """Preference lists of keys as lists of node names (untimed)."""
        self.unsupported("preference lists")

    def add_node(self, ring, name):
        """Add a node; return the ring that has it."""
        ring.add_node(name)
        return ring

    def build_rounds(self, names, vnodes=None):
        """(target, setup) for pedantic: what a timed build runs, and its untimed setup."""
        return (lambda: self.build(names, vnodes)), None

    def fresh(self, ring):
        """An independent copy, so every timed add_node starts from the same ring."""
        return copy.deepcopy(ring)

    def n_points(self, ring) -> int:
        self.unsupported("ring points")

    def bytes_per_point(self, names):
        """(bytes per ring point, how it was measured) for a ring of names."""
        self.unsupported("ring points")

    def unsupported(self, what):
        pytest.skip(f"{self.label} has no {what}")


def traced_bytes_per_point(build, n_points):
    """tracemalloc delta of one build, per point (sees Python allocations only)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ring = build()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n_points(ring)


class Hashring(Peer):
    label = "hashring"

    def __init__(self, label="hashring", vnodes=None, compat=None):
        self.label, self.vnodes, self.compat = label, vnodes, compat

    def build(self, names, vnodes=None):
        return HashRing(names, vnodes=vnodes or self.vnodes, compat=self.compat)

    def get(self, ring):
        return ring.get_node

    def map(self, ring):
        return ring.map

    def names(self, ring, result):
        return names_of(ring.nodes, result)

    def preference_loop(self, ring, n):
        get_nodes = ring.get_nodes

        def run(keys):
            for key in keys:
                get_nodes(key, n)
        return run

    def preference(self, ring, n, keys):
        return [ring.get_nodes(key, n) for key in keys]

    def fresh(self, ring):
        return copy.copy(ring)          # shares the immutable snapshot: O(1)

    def n_points(self, ring):
        return len(ring.snapshot().points)

    def bytes_per_point(self, names):
        snap = self.build(names).snapshot()
        return snap.nbytes / len(snap.points), "snapshot().nbytes (entries and prefix index)"


class HashringBatchPreference(Hashring):
    """hashring's preference lists for a whole batch at once (map_nodes)."""

    def preference_loop(self, ring, n):
        return lambda keys: ring.map_nodes(keys, n)

    def preference(self, ring, n, keys):
        return [names_of(ring.nodes, row) for row in ring.map_nodes(keys, n)]


class UHashRing(Peer):
    """uhashring 2.5: default md5-128 ring, or hash_fn="ketama" (libketama's ring)."""

    modules = ("uhashring",)

    def __init__(self, label="uhashring", **options):
        self.label, self.options = label, options

    def build(self, names, vnodes=None):
        import uhashring

        assert vnodes is None, "uhashring runs at its defaults"
        return uhashring.HashRing(list(names), **self.options)

    def get(self, ring):
        return ring.get_node

    def preference_loop(self, ring, n):
        nodes = ring.range

        def run(keys):
            for key in keys:
                [conf["nodename"] for conf in nodes(key, size=n)]
        return run

    def preference(self, ring, n, keys):
        return [[conf["nodename"] for conf in ring.range(key, size=n)] for key in keys]

    def n_points(self, ring):
        return len(ring.get_points())

    def bytes_per_point(self, names):
        return (traced_bytes_per_point(lambda: self.build(names), self.n_points),
                "tracemalloc delta of one build")


class Ketama(Peer):
    """libketama through the ketama 0.1.1 binding, run by ketama_worker (<= 117 servers).

    Its rings live in the worker, so a "ring" here is (index in the worker, point count),
    and timed calls can only name prefixes of the keys the worker was given.
    """

    label = "ketama"
    max_nodes = 117                     # 118 servers overflow its 512 KiB segment: segfault

    def __init__(self, worker):
        self.worker = worker

    @classmethod
    def check_size(cls, n_nodes):
        if n_nodes > cls.max_nodes:
            pytest.skip(f"ketama 0.1.1 segfaults at >= {cls.max_nodes + 1} servers (fixed 512 KiB shm)")

    def build(self, names, vnodes=None):
        assert vnodes is None, "libketama has a fixed 160 points per server"
        self.check_size(len(names))
        return self.worker.call("load", self.worker.call("config", list(names)))

    def build_rounds(self, names, vnodes=None):
        # The config file is written untimed; a round is Ketama(path) plus one round trip.
        assert vnodes is None, "libketama has a fixed 160 points per server"
        self.check_size(len(names))
        return ((lambda path: self.worker.call("load", path)),
                (lambda: ((self.worker.call("config", list(names)),), {})))

    def get(self, ring):
        self.unsupported("in-process lookup (it runs in its worker process)")

    def loop(self, ring):
        return lambda keys: self.worker.call("loop", ring[0], len(keys))

    def map(self, ring):
        return lambda keys: self.worker.call("collect", ring[0], len(keys))

    def names(self, ring, result):
        return self.worker.call("fetch")

    def lookup_names(self, ring, keys):
        return self.worker.call("names", ring[0], list(keys))

    def add_node(self, ring, name):
        self.unsupported("add_node (libketama re-reads an edited config file)")

    def n_points(self, ring):
        return ring[1]

    def bytes_per_point(self, names, warmup=3, measured=3):
        # The continuum sits in a SysV shm segment, invisible to tracemalloc: use the
        # worker's RSS, after a few builds that absorb one-off heap growth.
        for _ in range(warmup):
            self.build(names)
        before = self.worker.call("rss")
        rings = [self.build(names) for _ in range(measured)]
        grown = self.worker.call("rss") - before
        return (grown / sum(self.n_points(r) for r in rings),
                f"worker RSS delta over {measured} builds (after {warmup} warm-up builds)")


class Jump(Peer):
    """jump-consistent-hash on xxh3_64 of the UTF-8 key; its "ring" is the node list."""

    label = "jump"
    modules = ("jump", "xxhash")

    def build(self, names, vnodes=None):
        return list(names)

    @staticmethod
    def _parts(names):
        import jump
        import xxhash

        return jump.hash, xxhash.xxh3_64_intdigest, len(names)

    def get(self, names):
        bucket, h, n = self._parts(names)
        return lambda key: names[bucket(h(key.encode()), n)]

    # Inline loops: jump is a bare function, so a wrapper frame per key would be ours, not its.
    def loop(self, names):
        bucket, h, n = self._parts(names)

        def run(keys):
            for key in keys:
                names[bucket(h(key.encode()), n)]
        return run

    def map(self, names):
        bucket, h, n = self._parts(names)
        return lambda keys: [names[bucket(h(key.encode()), n)] for key in keys]

    def map_hashes(self, names):
        """Pre-hashed keys (a list of ints) -> bucket numbers."""
        bucket, _, n = self._parts(names)
        return lambda hashes: [bucket(h, n) for h in hashes]


class Clandestined(Peer):
    """clandestined 1.1: rendezvous hashing (murmur3 in C, a Python loop over the nodes)."""

    label = "clandestined"
    modules = ("clandestined",)

    def build(self, names, vnodes=None):
        from clandestined import RendezvousHash

        return RendezvousHash(list(names))

    def get(self, ring):
        return ring.find_node

    def _cluster(self, ring, n):
        # One zone per replica: Cluster.find_nodes returns one node from each of n zones.
        from clandestined import Cluster

        config = {name: {"name": name, "zone": f"zone{i % n}"} for i, name in enumerate(ring.nodes)}
        return Cluster(config, replicas=n)

    def preference_loop(self, ring, n):
        find_nodes = self._cluster(ring, n).find_nodes

        def run(keys):
            for key in keys:
                find_nodes(key)
        return run

    def preference(self, ring, n, keys):
        find_nodes = self._cluster(ring, n).find_nodes
        return [find_nodes(key) for key in keys]

    def n_points(self, ring):
        return len(ring.nodes)          # no ring: one "point" per node


def searchsorted_owners(points, owners, hashes):
    """Owner of each hash: the first point >= it, wrapping past the last point to the first."""
    idx = np.searchsorted(points, hashes, side="left")
    idx[idx == len(points)] = 0
    return owners[idx]


class NumpyRing:
    """A ring as sorted numpy points plus the owner index of each point."""

    def __init__(self, names, points, owners):
        self.nodes = list(names)
        order = np.argsort(points, kind="stable")
        self.points = points[order]
        self.owners = owners[order]

    def lookup(self, hashes):
        return searchsorted_owners(self.points, self.owners, hashes)


class NumpyBaseline(Peer):
    """A baseline whose ring is a NumpyRing and whose map returns owner indices."""

    def names(self, ring, result):
        return names_of(ring.nodes, result)

    def lookup_names(self, ring, keys):
        return self.names(ring, self.map(ring)(keys))

    def n_points(self, ring):
        return len(ring.points)


class XXH3Searchsorted(NumpyBaseline):
    """The pure numpy baseline: xxh3_64 per key in Python, then one np.searchsorted.

    Its ring is xxh3_64(f"{node}-{j}") for j < 160 (the usual ring default); lists are
    hashed as k.encode(), numpy S arrays item by item, and an Arrow array goes through
    arr.to_pylist() inside the timed part (pyarrow has no per-element xxh3).
    """

    label = "xxh3+np.searchsorted"
    modules = ("xxhash",)
    default_vnodes = 160

    def build(self, names, vnodes=None):
        import xxhash

        h, vnodes = xxhash.xxh3_64_intdigest, vnodes or self.default_vnodes
        points = np.fromiter((h(f"{name}-{j}".encode()) for name in names for j in range(vnodes)),
                             dtype=np.uint64, count=len(names) * vnodes)
        return NumpyRing(names, points, np.repeat(np.arange(len(names), dtype=np.int32), vnodes))

    def map(self, ring):
        import xxhash

        h = xxhash.xxh3_64_intdigest

        def run(keys):
            if isinstance(keys, np.ndarray):                # S array: its items are bytes
                hashes = np.fromiter((h(key) for key in keys), dtype=np.uint64, count=len(keys))
            else:
                if not isinstance(keys, list):              # Arrow
                    keys = keys.to_pylist()
                hashes = np.fromiter((h(key.encode()) for key in keys), dtype=np.uint64, count=len(keys))
            return ring.lookup(hashes)
        return run

    def add_node(self, ring, name):
        import xxhash

        h = xxhash.xxh3_64_intdigest
        new = np.fromiter((h(f"{name}-{j}".encode()) for j in range(self.default_vnodes)),
                          dtype=np.uint64, count=self.default_vnodes)
        owner = np.full(self.default_vnodes, len(ring.nodes), dtype=np.int32)
        return NumpyRing(ring.nodes + [name], np.concatenate([ring.points, new]),
                         np.concatenate([ring.owners, owner]))

    def fresh(self, ring):
        return ring                     # immutable: add_node returns a new ring

    def bytes_per_point(self, names):
        ring = self.build(names)
        return (ring.points.nbytes + ring.owners.nbytes) / len(ring.points), "points + owners arrays"


class MD5Searchsorted(NumpyBaseline):
    """numpy baseline for libketama's ring: md5 per key in Python, then np.searchsorted.

    Same points as libketama: 40 md5 digests of f"{node}-{j}" per node, 4 little-endian
    uint32 points each; a key belongs to the first point >= its hash.
    """

    label = "md5+np.searchsorted"

    def build(self, names, vnodes=None):
        md5, groups = hashlib.md5, vnodes or 40
        digests = b"".join(md5(f"{name}-{j}".encode()).digest() for name in names for j in range(groups))
        points = np.frombuffer(digests, dtype="<u4").astype(np.uint32)
        return NumpyRing(names, points, np.repeat(np.arange(len(names), dtype=np.int32), groups * 4))

    def map(self, ring):
        md5, from_bytes = hashlib.md5, int.from_bytes

        def run(keys):
            hashes = np.fromiter((from_bytes(md5(key.encode()).digest()[:4], "little") for key in keys),
                                 dtype=np.uint32, count=len(keys))
            return ring.lookup(hashes)
        return run


def make(label, worker_factory=None):
    """The adapter for a row label (`worker_factory` starts the libketama worker)."""
    factories = {
        "hashring": lambda: Hashring(),
        "hashring default vnodes": lambda: Hashring("hashring default vnodes"),
        "hashring compat=ketama": lambda: Hashring("hashring compat=ketama", compat="ketama"),
        "hashring compat=uhashring": lambda: Hashring("hashring compat=uhashring", compat="uhashring"),
        "hashring get_nodes loop": lambda: Hashring("hashring get_nodes loop"),
        "hashring map_nodes batch": lambda: HashringBatchPreference("hashring map_nodes batch"),
        "uhashring": lambda: UHashRing(),
        "uhashring-ketama": lambda: UHashRing("uhashring-ketama", hash_fn="ketama"),
        "ketama": lambda: Ketama(worker_factory()),
        "jump": Jump,
        "clandestined": Clandestined,
        "xxh3+np.searchsorted": XXH3Searchsorted,
        "md5+np.searchsorted": MD5Searchsorted,
    }
    return factories[label]().require()
