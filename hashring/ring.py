"""HashRing: the Python face of the compiled ring.

A ring is a sequence of immutable snapshots (:class:`RingSnapshot`). Lookups read the
current snapshot through one attribute and never lock; a change builds the next
snapshot under a writer lock and swaps it in with one assignment. A reader holding an
old snapshot gets an old but consistent answer.

Placement rules (``compat=None``):

- node ``name`` with weight ``w`` gets ``max(1, floor(vnodes * w + 0.5))`` points; weights
  are absolute, so adding a node never moves another node's points;
- point ``j`` of ``name`` is ``hash64(f"{name}-{j}")``;
- points are ordered by value, ties by node name, then ``j``;
- a key belongs to the first point whose value is ``>= hash64(key)``, wrapping past the
  largest point to the smallest.

``compat="ketama"`` and ``compat="uhashring"`` reproduce libketama and uhashring's ketama
mode key for key (their rules are in ``research``/README: float32 vs integer group
rounding, ``>=`` vs ``>``, tie handling, ``str(key)``); a change rebuilds the whole ring,
as theirs do.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import threading
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from . import _ring
from ._ring import EmptyRingError, RingLookups, RingTable
from .keys import _HASH_IDS, key_batches

__all__ = ["HashRing", "RingSnapshot", "EmptyRingError", "DEFAULT_VNODES", "MAX_POINTS"]

_COMPAT_IDS = {"ketama": _ring.ALGO_KETAMA, "uhashring": _ring.ALGO_UHASHRING}

#: Default points per node (native) or md5 groups of 4 points per node (compat modes).
#: 1024 keeps peak/mean load at 100 equal nodes near 1.07 over 1M keys (README).
DEFAULT_VNODES = {None: 1024, "ketama": 40, "uhashring": 40}

#: Upper bound on the points of one ring (16 bytes each: 2 GiB of lookup tables).
MAX_POINTS = 1 << 27

#: Keys each extra thread must have before ``threads=`` splits a batch (thread start-up
#: costs about as much as mapping a few thousand keys).
MIN_KEYS_PER_THREAD = 1 << 16


class _Config:
    """The immutable settings of a ring."""

    __slots__ = ("compat", "hash", "vnodes", "algo")

    def __init__(self, vnodes, hash, compat):
        if compat is not None and (not isinstance(compat, str) or compat not in _COMPAT_IDS):
            raise ValueError(f"compat must be None, 'ketama' or 'uhashring', not {compat!r}")
        if hash is None:
            hash = "md5" if compat else "xxh3"
        if not isinstance(hash, str) or hash not in _HASH_IDS:
            raise ValueError(f"hash must be one of {sorted(_HASH_IDS)}, not {hash!r}")
        if compat and hash != "md5":
            raise ValueError(f"hash={hash!r} cannot be used with compat={compat!r}, which hashes with md5")
        if vnodes is None:
            vnodes = DEFAULT_VNODES[compat]
        if isinstance(vnodes, bool) or not isinstance(vnodes, numbers.Integral):
            raise TypeError(f"vnodes must be a positive int, not {type(vnodes).__name__}")
        vnodes = int(vnodes)
        if vnodes <= 0:
            raise ValueError(f"vnodes must be a positive int, not {vnodes}")
        if vnodes > MAX_POINTS:
            raise ValueError(f"vnodes={vnodes} is above the limit of {MAX_POINTS} points per ring")
        self.compat = compat
        self.hash = hash
        self.vnodes = vnodes
        self.algo = _COMPAT_IDS[compat] if compat else _HASH_IDS[hash]

    def check_name(self, name):
        if not isinstance(name, str):
            raise TypeError(f"node names must be str, not {type(name).__name__} ({name!r})")
        if not name:
            raise ValueError("node names must be non-empty")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"node name {name!r} is not valid Unicode") from None
        return name

    def check_weight(self, name, weight):
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"weight of node {name!r} must be a positive number, not {type(weight).__name__}")
        if self.compat:
            if not isinstance(weight, numbers.Integral):
                raise TypeError(f"weight of node {name!r} must be a positive int in compat={self.compat!r} mode, "
                                f"not {weight!r}")
            weight = int(weight)
        elif isinstance(weight, numbers.Integral):
            weight = int(weight)
        else:
            try:
                weight = float(weight)
            except OverflowError:
                weight = math.inf
        if not weight > 0 or weight > MAX_POINTS:      # also catches NaN and inf
            raise ValueError(f"weight of node {name!r} must be a positive finite number "
                             f"up to {MAX_POINTS}, not {weight!r}")
        return weight

    def native_count(self, weight) -> int:
        return max(1, math.floor(self.vnodes * weight + 0.5))

    def groups(self, weight, n_nodes, total_weight) -> int:
        """md5 groups (4 points each) of one node in a compat mode."""
        if self.compat == "uhashring":
            return (self.vnodes * n_nodes * weight) // total_weight
        # libketama: float pct = (float)w / (float)W; floorf(pct * 40.0 * (float)N),
        # the product in double, rounded to float by the floorf argument.
        pct = np.float32(np.float32(weight) / np.float32(total_weight))
        return int(math.floor(np.float32(float(pct) * float(self.vnodes) * float(np.float32(n_nodes)))))

    def __reduce__(self):
        return (_Config, (self.vnodes, self.hash, self.compat))


def _parse_nodes(cfg: _Config, nodes) -> dict:
    if isinstance(nodes, (str, bytes)):
        raise TypeError(f"nodes must be an iterable of node names or a mapping name -> weight, "
                        f"not a single {type(nodes).__name__}")
    if isinstance(nodes, Mapping):
        items = nodes.items()
    else:
        try:
            items = [(n, 1) for n in nodes]
        except TypeError:
            raise TypeError(f"nodes must be an iterable of node names or a mapping name -> weight, "
                            f"not {type(nodes).__name__}") from None
    weights = {}
    for name, weight in items:
        cfg.check_name(name)
        weight = cfg.check_weight(name, weight)
        if name in weights:
            raise ValueError(f"nodes: duplicate node name {name!r}")
        weights[name] = weight
    return weights


def _check_size(cfg: _Config, weights: dict, total: int | None = None):
    """Refuse rings over MAX_POINTS (total: the native point count, when known)."""
    if cfg.compat:
        total = 4 * cfg.vnodes * max(len(weights), 1)
    elif total is None:
        total = sum(cfg.native_count(w) for w in weights.values())
    if total > MAX_POINTS:
        raise ValueError(f"vnodes={cfg.vnodes} with these weights gives {total} points, above the limit "
                         f"of {MAX_POINTS} (hashring.MAX_POINTS)")
    if cfg.compat and weights:
        total_weight = sum(weights.values())
        if not any(cfg.groups(w, len(weights), total_weight) for w in weights.values()):
            raise ValueError(f"vnodes={cfg.vnodes} gives no points to any of the {len(weights)} nodes in "
                             f"compat={cfg.compat!r} mode (groups per node = vnodes * N * w / W, rounded down)")


def _owners_for(counts) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int32), counts)


def _name_rank(names: tuple) -> np.ndarray:
    """Each node's place in name order: the tie-break between equal points."""
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    return rank


def _build_native(cfg: _Config, weights: dict) -> RingTable:
    names = tuple(weights)
    counts = np.array([cfg.native_count(w) for w in weights.values()], dtype=np.int64)
    points = _ring.vnode_points([name.encode("utf-8") for name in names], counts, cfg.algo)
    return RingTable(points, _owners_for(counts), names, cfg.algo, _name_rank(names))


def _build_compat(cfg: _Config, weights: dict) -> RingTable:
    names = tuple(weights)
    total = sum(weights.values())
    groups = [cfg.groups(w, len(names), total) for w in weights.values()]
    parts = [_ring.ketama_points(name.encode("utf-8"), g) for name, g in zip(names, groups)]
    points = np.concatenate(parts) if parts else np.empty(0, np.uint64)
    owners = _owners_for([4 * g for g in groups])
    # Stable: equal points stay in node order, then group, then digest word (libketama).
    order = np.argsort(points, kind="stable")
    points, owners = points[order], owners[order]
    if cfg.compat == "uhashring" and len(points) > 1:
        # uhashring keeps a dict point -> node, so the node added last owns every copy.
        starts = np.flatnonzero(np.r_[True, points[1:] != points[:-1]])
        if len(starts) < len(points):
            winners = np.maximum.reduceat(owners, starts)
            owners = np.repeat(winners, np.diff(np.r_[starts, len(points)])).astype(np.int32)
    return RingTable(points, owners, names, cfg.algo)


def _build(cfg: _Config, weights: dict) -> RingTable:
    return _build_compat(cfg, weights) if cfg.compat else _build_native(cfg, weights)


def _check_n(n, n_nodes) -> int:
    if isinstance(n, bool):
        raise TypeError("n must be an int, not bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int, not {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    if n > n_nodes:
        raise ValueError(f"n={n} is larger than the {n_nodes} nodes in the ring")
    return n


class RingSnapshot(RingLookups):
    """One immutable state of a ring. Every lookup on it sees the same nodes."""

    __slots__ = ("_weights", "_config")

    def __init__(self, table: RingTable, weights: dict, config: _Config):
        self._table = table
        self._weights = weights
        self._config = config

    # --- introspection -------------------------------------------------------
    @property
    def nodes(self) -> tuple:
        """Node names, in insertion order; ``map`` returns indices into this tuple."""
        return self._table.names

    @property
    def weights(self) -> Mapping:
        """Read-only mapping name -> weight."""
        return MappingProxyType(self._weights)

    @property
    def vnodes(self) -> int:
        return self._config.vnodes

    @property
    def hash(self) -> str:
        return self._config.hash

    @property
    def compat(self):
        return self._config.compat

    @property
    def points(self) -> np.ndarray:
        """Sorted ring points (read-only; compat modes keep their u32 points in the top half)."""
        return self._table.points

    @property
    def owners(self) -> np.ndarray:
        """Owner index of each point (read-only int32)."""
        return self._table.owners

    @property
    def nbytes(self) -> int:
        """Bytes of the lookup tables (points, owners, prefix index)."""
        return self._table.nbytes

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._weights

    def __reduce__(self):
        return (type(self), (self._table, self._weights, self._config))

    def _key(self):
        return (self._config.__reduce__()[1], tuple(self._weights.items()))

    def __eq__(self, other):
        if not isinstance(other, RingSnapshot):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None

    def __iter__(self):
        return iter(self._table.names)

    # --- lookups -------------------------------------------------------------
    def _require_points(self):
        if self._table.n_points == 0:
            raise EmptyRingError("the ring is empty: no node owns a point (add a node)")

    _check_n = staticmethod(_check_n)     # RingLookups.get_nodes calls it for odd n

    def map(self, keys, *, threads: int = 1) -> np.ndarray:
        """Owner of every key as an int32 array of indices into ``nodes``.

        ``threads``: split a large batch over this many threads (0: one per CPU).
        """
        self._require_points()
        threads = _check_threads(threads)
        table = self._table
        batches = key_batches(keys, table.algo == _ring.ALGO_UHASHRING)
        out = np.empty(sum(b.length for b in batches), dtype=np.int32)
        _run_split(table.map_batch, batches, out, threads)
        return out

    def map_nodes(self, keys, n: int, *, threads: int = 1) -> np.ndarray:
        """Preference lists of every key: an int32 array of shape ``(len(keys), n)``."""
        self._require_points()
        n = _check_n(n, len(self._weights))
        threads = _check_threads(threads)
        table = self._table
        batches = key_batches(keys, table.algo == _ring.ALGO_UHASHRING)
        out = np.empty((sum(b.length for b in batches), n), dtype=np.int32)
        _run_split(lambda kb, part, a, b: table.map_nodes_batch(kb, n, part, a, b), batches, out, threads)
        return out

    def lookup_hashes(self, hashes, *, threads: int = 1) -> np.ndarray:
        """Owner of pre-hashed keys (uint64 array) as int32 indices into ``nodes``.

        Native rings take ``hash64`` values; compat rings take the 32-bit ketama hash
        (``md5_32``), each value < 2**32.
        """
        self._require_points()
        threads = _check_threads(threads)
        if not isinstance(hashes, np.ndarray):
            # Python ints above 2**63 would turn a plain np.asarray into float64: be exact.
            try:
                hashes = np.fromiter((operator.index(h) for h in hashes), dtype=np.uint64)
            except TypeError:
                raise TypeError("hashes must be a uint64 array or an iterable of ints") from None
            except (OverflowError, ValueError):
                raise ValueError("hashes must be in [0, 2**64)") from None
        if hashes.dtype != np.uint64:
            raise TypeError(f"hashes must be a uint64 array, not dtype {hashes.dtype} "
                            f"(convert with .astype(np.uint64) if the values are hashes)")
        if hashes.ndim != 1:
            raise ValueError(f"hashes must be 1-dimensional, got shape {hashes.shape}")
        hashes = np.ascontiguousarray(hashes)
        out = np.empty(len(hashes), dtype=np.int32)
        _run_split(self._table.map_batch, [_ring.KeyBatch(_ring.KIND_HASHES, hashes, len(hashes))], out, threads)
        return out

    def shares(self) -> dict:
        """Fraction of the hash space owned by each node (sums to 1)."""
        P = self._table.n_points
        result = dict.fromkeys(self._table.names, 0.0)
        if P == 0:
            return result
        if P == 1:
            result[self._table.names[self._table.owners[0]]] = 1.0
            return result
        pts = self._table.points
        # Point i owns the arc (points[i-1], points[i]]; point 0 also owns the wrap.
        arcs = np.empty(P, dtype=np.uint64)
        arcs[1:] = pts[1:] - pts[:-1]
        arcs[:1] = pts[:1] - pts[-1:]         # modulo 2**64 (array ops wrap silently)
        per_node = np.bincount(self._table.owners, weights=arcs.astype(np.float64),
                               minlength=len(self._table.names))
        per_node /= per_node.sum()          # the arcs add up to 2**64 exactly; keep float sums at 1
        for name, share in zip(self._table.names, per_node):
            result[name] = float(share)
        return result

    def __repr__(self):
        return f"<RingSnapshot {_describe(self)}>"


def _describe(snap: RingSnapshot) -> str:
    names = snap.nodes
    shown = ", ".join(repr(n) for n in names[:4]) + (", ..." if len(names) > 4 else "")
    mode = f"compat={snap.compat!r}" if snap.compat else f"hash={snap.hash!r}"
    return f"{len(names)} nodes [{shown}], {snap._table.n_points} points, vnodes={snap.vnodes}, {mode}"


class HashRing(RingLookups):
    """A consistent hash ring with named, weighted nodes.

    ``nodes``: an iterable of node names, or a mapping name -> weight (positive int or
    float; only ints in compat modes). ``vnodes``: points per node of weight 1 (native),
    or md5 groups of 4 points (compat). ``hash``: ``"xxh3"`` (default), ``"md5"`` or
    ``"murmur3"``. ``compat``: ``None``, ``"ketama"`` (libketama) or ``"uhashring"``.

    Lookups never lock and are safe while other threads add or remove nodes.
    """

    __slots__ = ("_snap", "_lock", "__weakref__")

    def __init__(self, nodes=(), *, vnodes=None, hash=None, compat=None):
        cfg = _Config(vnodes, hash, compat)
        weights = _parse_nodes(cfg, nodes)
        _check_size(cfg, weights)
        self._lock = threading.Lock()
        self._publish(RingSnapshot(_build(cfg, weights), weights, cfg))

    # --- reading ---------------------------------------------------------------
    def snapshot(self) -> RingSnapshot:
        """The current immutable snapshot: a consistent view for several calls."""
        return self._snap

    # get_node and get_nodes are RingLookups' compiled methods, reading self._table.
    _check_n = staticmethod(_check_n)

    def _publish(self, snap: RingSnapshot) -> None:
        # Each attribute store is atomic; a reader between the two sees two valid snapshots.
        self._snap = snap
        self._table = snap._table

    def map(self, keys, *, threads: int = 1) -> np.ndarray:
        """Owner of every key as int32 indices into ``nodes`` (use ``snapshot()`` to pair
        the indices with the names while other threads change the ring).

        ``threads``: split a large batch over this many threads (0: one per CPU).
        """
        return self._snap.map(keys, threads=threads)

    def map_nodes(self, keys, n: int, *, threads: int = 1) -> np.ndarray:
        """Preference lists of every key: int32 array of shape ``(len(keys), n)``."""
        return self._snap.map_nodes(keys, n, threads=threads)

    def lookup_hashes(self, hashes, *, threads: int = 1) -> np.ndarray:
        """Owner of pre-hashed keys (uint64) as int32 indices into ``nodes``."""
        return self._snap.lookup_hashes(hashes, threads=threads)

    def shares(self) -> dict:
        """Fraction of the hash space owned by each node."""
        return self._snap.shares()

    nodes = property(lambda self: self._snap.nodes, doc="Node names in insertion order.")
    weights = property(lambda self: self._snap.weights, doc="Read-only mapping name -> weight.")
    vnodes = property(lambda self: self._snap.vnodes)
    hash = property(lambda self: self._snap.hash)
    compat = property(lambda self: self._snap.compat)

    def __len__(self) -> int:
        return len(self._snap)

    def __contains__(self, name) -> bool:
        return name in self._snap

    def __iter__(self):
        return iter(self._snap)

    # --- changing ------------------------------------------------------------
    def add_node(self, name: str, weight=1) -> None:
        """Add a node; only keys that now belong to it move."""
        with self._lock:
            snap = self._snap
            cfg = snap._config
            cfg.check_name(name)
            weight = cfg.check_weight(name, weight)
            if name in snap._weights:
                raise ValueError(f"node {name!r} is already in the ring")
            weights = {**snap._weights, name: weight}
            _check_size(cfg, weights, None if cfg.compat else snap._table.n_points + cfg.native_count(weight))
            if cfg.compat:
                table = _build_compat(cfg, weights)
            else:
                table = _insert_native(cfg, snap._table, weights, name, len(weights) - 1)
            self._publish(RingSnapshot(table, weights, cfg))

    def remove_node(self, name: str) -> None:
        """Remove a node; only its keys move (to the next node along the ring)."""
        with self._lock:
            snap = self._snap
            if name not in snap:
                raise KeyError(f"node {name!r} is not in the ring")
            weights = {k: v for k, v in snap._weights.items() if k != name}
            cfg = snap._config
            if cfg.compat:
                _check_size(cfg, weights)
                table = _build_compat(cfg, weights)
            else:
                table = _delete_native(snap._table, snap._table.names.index(name), tuple(weights))
            self._publish(RingSnapshot(table, weights, cfg))

    def set_weight(self, name: str, weight) -> None:
        """Change a node's weight; its position in ``nodes`` is kept."""
        with self._lock:
            snap = self._snap
            if name not in snap:
                raise KeyError(f"node {name!r} is not in the ring")
            cfg = snap._config
            weight = cfg.check_weight(name, weight)
            old = snap._weights[name]
            weights = dict(snap._weights)
            weights[name] = weight
            _check_size(cfg, weights, None if cfg.compat else
                        snap._table.n_points - cfg.native_count(old) + cfg.native_count(weight))
            if cfg.compat:
                table = _build_compat(cfg, weights)
            else:
                idx = snap._table.names.index(name)
                without = _delete_native(snap._table, idx, None)
                table = _insert_native(cfg, without, weights, name, idx)
            self._publish(RingSnapshot(table, weights, cfg))

    # --- Python protocols ----------------------------------------------------------
    def __reduce__(self):
        snap = self._snap
        return (_restore, (type(self), snap._config, list(snap._weights.items())))

    def __copy__(self):
        ring = type(self).__new__(type(self))
        ring._lock = threading.Lock()
        ring._publish(self._snap)         # snapshots are immutable: sharing is a copy
        return ring

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __eq__(self, other):
        if not isinstance(other, HashRing):
            return NotImplemented
        return self._snap._key() == other._snap._key()

    __hash__ = None

    def __repr__(self):
        return f"HashRing({_describe(self._snap)})"


def _restore(cls, cfg, items):
    ring = cls.__new__(cls)
    ring._lock = threading.Lock()
    weights = dict(items)
    ring._publish(RingSnapshot(_build(cfg, weights), weights, cfg))
    return ring


def _insert_native(cfg, table: RingTable, weights: dict, name: str, idx: int) -> RingTable:
    """Add one node's points (node index idx) to a native table."""
    names = tuple(weights)
    count = cfg.native_count(weights[name])
    new = _ring.vnode_points([name.encode("utf-8")], np.array([count], dtype=np.int64), cfg.algo)
    old_points, old_owners = table.points, table.owners
    new.sort()
    pos = np.searchsorted(old_points, new)
    hit = pos < len(old_points)
    if not (np.any(old_points[pos[hit]] == new[hit]) or np.any(new[1:] == new[:-1])):
        # No equal points (the rule almost always): merged in order, the table copies them.
        return RingTable(np.insert(old_points, pos, new), np.insert(old_owners, pos, np.int32(idx)),
                         names, cfg.algo)
    points = np.concatenate([old_points, new])
    owners = np.concatenate([old_owners, np.full(count, idx, dtype=np.int32)])
    return RingTable(points, owners, names, cfg.algo, _name_rank(names))


def _delete_native(table: RingTable, idx: int, names) -> RingTable:
    """Drop node idx's points; with names given, later owner indices shift down."""
    keep = table.owners != idx
    points = table.points[keep]
    owners = table.owners[keep]
    if names is None:
        names = table.names
    else:
        owners = owners - (owners > idx).astype(np.int32)
    return RingTable(points, owners, names, table.algo)


def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"threads must be an int, not {type(threads).__name__}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: one per CPU), not {threads}")
    if threads == 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return int(threads)


def _run_split(call, batches, out, threads: int) -> None:
    """call(kb, out_part, start, stop) over every batch, its ranges spread over threads.

    The kernels release the GIL between chunks, so the threads overlap; a failure in
    any range is raised (the first key's, when several fail) after all have stopped.
    """
    jobs, pos = [], 0
    for kb in batches:
        part = out[pos:pos + kb.length]
        pos += kb.length
        # Four ranges a thread, taken from a shared queue: a thread whose core is busy
        # with something else does less of the work instead of holding everyone up.
        k = 1 if threads == 1 else max(1, min(4 * threads, kb.length // MIN_KEYS_PER_THREAD))
        bounds = [kb.length * i // k for i in range(k + 1)]
        jobs += [(kb, part, a, b) for a, b in zip(bounds, bounds[1:])]
    if threads == 1 or len(jobs) == 1:
        for job in jobs:
            call(*job)
        return
    errors = [None] * len(jobs)
    todo = iter(range(len(jobs)))
    todo_lock = threading.Lock()

    def work():
        while True:
            with todo_lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                call(*jobs[i])
            except BaseException as exc:   # re-raised in the caller below
                errors[i] = exc

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, len(jobs)) - 1)]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    for exc in errors:
        if exc is not None:
            raise exc
