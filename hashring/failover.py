"""Failover: failure detection, the membership store, promotion, and the controller.

:class:`PhiAccrual` is the φ-accrual failure detector of Hayashibara et al. (SRDS 2004),
in the form Akka uses: the gaps between a node's heartbeats are modelled as a normal
distribution (mean and standard deviation over a sliding window), and

    φ(t) = -log10(P(the next heartbeat comes later than t after the last))

so φ = 1 means a 10% chance that the node is merely late, φ = 8 one in 10**8. A node
is *suspect* once φ reaches the threshold. Time is passed in by the caller (seconds, from
any monotonic clock), so tests are deterministic; the detector never reads a clock.

:class:`MemoryStore` is where a controller keeps what must survive it and be agreed on:
a key-value map whose every change gets a new store-wide revision, writes that take
effect only if a key is still at the revision the writer read (compare-and-set), and
leases that expire unless kept alive, taking their keys with them. These are etcd v3's
primitives (mod_revision compares in a transaction, leases with a TTL), so an etcd
backend can stand in for the embedded store.

:func:`decide_promotions` is the controller's decision, kept pure so it can be tested
case by case: for every partition whose primary is down, the in-sync backup that is up
and has acknowledged the most takes over under the next epoch (ties: the earlier in the
partition's preference list). With no such backup the partition is reported unavailable,
unless unclean promotion is allowed.

:class:`FailoverController` puts them together over a ring: fixed partitions placed on the
ring's preference lists, node states from heartbeats, in-sync sets from reported positions,
promotions and fail-backs written to the store by compare-and-set under new epochs, events,
metrics, and lock-free routes (``route_many`` in one compiled pass). It decides and
records; the data path acts on its events and fences by epoch (README, "Failover").
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import numbers
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from . import _ring
from .keys import key_batches

__all__ = ["PhiAccrual", "MemoryStore", "StoreEntry", "NodeState", "PartitionState", "Promotion",
           "decide_promotions", "FailoverController", "FailoverEvent", "Position", "Route", "Routes",
           "NodeStatus", "PartitionStatus", "ControllerStatus", "StaleEpochError", "EVENT_KINDS", "Store"]

_LN10 = math.log(10.0)


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")
    return value


def _phi_of_late(z: float) -> float:
    """-log10 of P(X > mean + z*std) for a normal X, accurate far into the tail."""
    if z < 25.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    # erfc underflows there: P ~ exp(-z²/2) / (z √(2π)) (the first term of its expansion).
    return (z * z / 2.0 + math.log(z * math.sqrt(2.0 * math.pi))) / _LN10


class _History:
    """One node's heartbeat arrivals: the last one and a window of gaps."""

    __slots__ = ("last", "gaps", "total", "total_sq", "added")

    def __init__(self, now: float, window: int):
        self.last = now
        self.gaps: deque = deque(maxlen=window)
        self.total = 0.0
        self.total_sq = 0.0
        self.added = 0

    def add_gap(self, gap: float) -> None:
        if len(self.gaps) == self.gaps.maxlen:
            old = self.gaps[0]
            self.total -= old
            self.total_sq -= old * old
        self.gaps.append(gap)
        self.total += gap
        self.total_sq += gap * gap
        self.added += 1
        if self.added % self.gaps.maxlen == 0:
            # Running sums drift as gaps leave the window: re-add them now and then.
            self.total = math.fsum(self.gaps)
            self.total_sq = math.fsum(g * g for g in self.gaps)


class PhiAccrual:
    """φ-accrual failure detector over the heartbeats of many nodes.

    ``threshold``: φ at which a node is suspect (8: a one-in-10**8 chance of a mistake
    under the model). ``window``: gaps kept per node. ``min_std``: floor on the standard
    deviation (seconds), so perfectly regular heartbeats do not make the smallest delay
    look fatal. ``acceptable_pause``: extra seconds of silence added to the expected gap
    (garbage collection, a busy network). ``first_gap``: the gap assumed before a node
    has sent two heartbeats.
    """

    def __init__(self, threshold: float = 8.0, *, window: int = 1000, min_std: float = 0.1,
                 acceptable_pause: float = 0.0, first_gap: float = 1.0):
        self.threshold = _check_positive("threshold", threshold)
        if isinstance(window, bool) or not isinstance(window, numbers.Integral):
            raise TypeError(f"window must be an int, not {type(window).__name__}")
        if window < 2:
            raise ValueError(f"window must be >= 2 gaps, not {window}")
        self.window = int(window)
        self.min_std = _check_positive("min_std", min_std)
        self.acceptable_pause = _check_positive("acceptable_pause", acceptable_pause, allow_zero=True)
        self.first_gap = _check_positive("first_gap", first_gap)
        self._nodes: dict = {}

    def heartbeat(self, node, now: float) -> None:
        """Record a heartbeat from ``node`` at time ``now`` (seconds, never decreasing)."""
        now = self._check_now(now)
        history = self._nodes.get(node)
        if history is None:
            self._nodes[node] = _History(now, self.window)
            return
        if now < history.last:
            raise ValueError(f"now={now!r} is before the last heartbeat of {node!r} "
                             f"({history.last!r}): time must not go backwards")
        history.add_gap(now - history.last)
        history.last = now

    def phi(self, node, now: float) -> float:
        """Suspicion level of ``node`` at ``now``: near 0 just after a heartbeat, about
        0.3 when the expected gap has passed, then growing without bound (but finite)
        with silence. ``KeyError`` for a node that has sent no heartbeat."""
        now = self._check_now(now)
        history = self._nodes[node]
        silence = max(0.0, now - history.last)
        n = len(history.gaps)
        if n == 0:
            mean, std = self.first_gap, self.first_gap / 4.0
        else:
            mean = history.total / n
            variance = max(0.0, history.total_sq / n - mean * mean)
            std = math.sqrt(variance)
        std = max(std, self.min_std)
        z = (silence - mean - self.acceptable_pause) / std
        return _phi_of_late(z)

    def suspect(self, node, now: float) -> bool:
        """Whether ``node``'s φ at ``now`` has reached the threshold."""
        return self.phi(node, now) >= self.threshold

    def last_heartbeat(self, node) -> float:
        """Time of ``node``'s last heartbeat (``KeyError`` if none)."""
        return self._nodes[node].last

    def forget(self, node) -> None:
        """Drop ``node``'s history (a restarted node starts afresh)."""
        self._nodes.pop(node, None)

    def __contains__(self, node) -> bool:
        return node in self._nodes

    @staticmethod
    def _check_now(now) -> float:
        if isinstance(now, bool) or not isinstance(now, numbers.Real):
            raise TypeError(f"now must be a number of seconds, not {type(now).__name__}")
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, not {now!r}")
        return now

    def __repr__(self):
        return (f"PhiAccrual(threshold={self.threshold}, window={self.window}, min_std={self.min_std}, "
                f"acceptable_pause={self.acceptable_pause}, first_gap={self.first_gap}; "
                f"{len(self._nodes)} nodes)")


class StoreEntry(NamedTuple):
    """A key's value, the store revision that last changed it, and its lease (or None)."""

    value: bytes
    revision: int
    lease: int | None


@runtime_checkable
class Store(Protocol):
    """What the controller needs of a membership store (``MemoryStore`` is the embedded
    one). Each call is atomic; ``put``'s ``expect`` compares on the key's last revision
    (``0``: absent) as an etcd v3 transaction on ``mod_revision`` does, and a lease's keys
    go when it expires or is revoked, as etcd's do."""

    def get(self, key: str) -> StoreEntry | None: ...

    def put(self, key: str, value: bytes, *, expect: int | None = None,
            lease: int | None = None) -> int | None: ...

    def delete(self, key: str, *, expect: int | None = None) -> bool: ...

    def grant_lease(self, ttl: float) -> int: ...

    def keep_alive(self, lease: int) -> bool: ...

    def revoke(self, lease: int) -> None: ...


class MemoryStore:
    """The embedded membership store: revisions, compare-and-set, leases (see the module).

    ``clock``: seconds from a monotonic clock, read to expire leases (tests pass a fake).
    Thread-safe: every call is atomic. Keys are ``str``, values ``bytes`` (what etcd
    stores; the controller serialises its state).
    """

    def __init__(self, *, clock=time.monotonic):
        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict = {}
        self._revision = 0
        self._leases: dict = {}          # lease id -> [deadline, ttl, set of keys]
        self._next_lease = 1

    @property
    def revision(self) -> int:
        """The store's revision: it grows by one with every change."""
        with self._lock:
            self._expire()
            return self._revision

    def get(self, key: str) -> StoreEntry | None:
        """The entry of ``key``, or ``None``."""
        _check_key(key)
        with self._lock:
            self._expire()
            return self._data.get(key)

    def items(self, prefix: str = "") -> list:
        """``(key, entry)`` pairs whose keys start with ``prefix``, in key order."""
        _check_key(prefix, "prefix", allow_empty=True)
        with self._lock:
            self._expire()
            return sorted((k, e) for k, e in self._data.items() if k.startswith(prefix))

    def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int | None:
        """Set ``key`` to ``value``; returns the new revision, or ``None`` when ``expect``
        does not hold and nothing was written.

        ``expect``: ``None`` writes unconditionally; ``0`` only if the key is absent; ``n``
        only if the key was last changed at revision ``n``. ``lease``: the key is deleted
        when that lease expires or is revoked.
        """
        _check_key(key)
        if not isinstance(value, bytes):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        _check_expect(expect)
        if lease is not None:
            _check_int("lease", lease, 1)
        with self._lock:
            self._expire()
            if lease is not None and lease not in self._leases:
                raise KeyError(f"lease {lease} does not exist (expired or revoked)")
            if not self._holds(key, expect):
                return None
            old = self._data.get(key)
            if old is not None and old.lease is not None:
                self._leases[old.lease][2].discard(key)
            self._revision += 1
            self._data[key] = StoreEntry(value, self._revision, lease)
            if lease is not None:
                self._leases[lease][2].add(key)
            return self._revision

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Delete ``key``; ``False`` when it is absent or ``expect`` does not hold."""
        _check_key(key)
        _check_expect(expect)
        with self._lock:
            self._expire()
            if key not in self._data or not self._holds(key, expect):
                return False
            self._drop(key)
            self._revision += 1
            return True

    def grant_lease(self, ttl: float) -> int:
        """A new lease that expires ``ttl`` seconds from now unless kept alive."""
        ttl = _check_positive("ttl", ttl)
        with self._lock:
            self._expire()
            lease = self._next_lease
            self._next_lease += 1
            self._leases[lease] = [self._clock() + ttl, ttl, set()]
            return lease

    def keep_alive(self, lease: int) -> bool:
        """Push the lease's expiry ``ttl`` seconds past now; ``False`` if it has already
        expired or been revoked (its keys are gone: the holder has lost them)."""
        _check_int("lease", lease, 1)
        with self._lock:
            self._expire()
            state = self._leases.get(lease)
            if state is None:
                return False
            state[0] = self._clock() + state[1]
            return True

    def revoke(self, lease: int) -> None:
        """End the lease now and delete its keys (no error if it has already ended)."""
        _check_int("lease", lease, 1)
        with self._lock:
            self._expire()
            self._end_lease(lease)

    def _holds(self, key, expect) -> bool:
        if expect is None:
            return True
        entry = self._data.get(key)
        return entry is None if expect == 0 else entry is not None and entry.revision == expect

    def _drop(self, key) -> None:
        entry = self._data.pop(key)
        if entry.lease is not None and entry.lease in self._leases:
            self._leases[entry.lease][2].discard(key)

    def _end_lease(self, lease) -> None:
        state = self._leases.pop(lease, None)
        if state is not None and state[2]:
            for key in sorted(state[2]):
                del self._data[key]
            self._revision += 1           # the keys of one lease go in one change

    def _expire(self) -> None:
        if self._leases:
            now = self._clock()
            for lease in [lease for lease, state in self._leases.items() if state[0] <= now]:
                self._end_lease(lease)

    def __repr__(self):
        return f"MemoryStore({len(self._data)} keys, {len(self._leases)} leases, revision {self._revision})"


def _check_key(key, name: str = "key", allow_empty: bool = False) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{name} must be a str, not {type(key).__name__}")
    if not key and not allow_empty:
        raise ValueError(f"{name} must not be empty")


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, not {value}")
    return int(value)


def _check_node_name(node, known) -> None:
    if not isinstance(node, str):
        raise TypeError(f"node must be a str, not {type(node).__name__}")
    if node not in known:
        raise KeyError(f"node {node!r} is not in the controller's ring")


def _check_expect(expect) -> None:
    if expect is not None:
        _check_int("expect", expect, 0)


class NodeState(str, enum.Enum):
    """A node as the controller sees it: up; suspect (φ over the threshold, not yet
    convicted); down (convicted: hard timeout or lease expiry)."""

    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass(frozen=True)
class PartitionState:
    """One partition: its replicas (the ring's preference list, preferred primary first),
    the current primary (``None`` while unavailable), the in-sync replicas, the epoch, and
    the store revision of the record these come from (read together, so a primary reports
    as ``Position.config`` the revision of the very in-sync set it applies)."""

    partition: int
    replicas: tuple
    primary: str | None
    in_sync: frozenset
    epoch: int
    revision: int = 0           # store revision of the record (report it as Position.config)


@dataclass(frozen=True)
class Promotion:
    """A decision for one partition: ``new_primary`` under ``epoch``, or ``None`` when no
    replica may take over (the partition is unavailable). ``clean`` is False when the new
    primary was not in sync (unclean promotion, which can lose acknowledged writes)."""

    partition: int
    old_primary: str | None
    new_primary: str | None
    epoch: int
    clean: bool
    reason: str


def decide_promotions(partitions, states: Mapping, positions: Mapping, *, unclean: bool = False) -> list:
    """Promotions for the partitions whose primary is down (or missing).

    ``states``: node -> :class:`NodeState` (a node not listed is down). ``positions``:
    ``(node, partition)`` -> highest acknowledged position (absent: 0). A suspect
    primary is not replaced: only a down one is. Candidates are the in-sync replicas that
    are up; the highest position wins, ties go to the earlier in the preference list.
    With no candidate and ``unclean`` set, the up replica with the highest position takes
    over (``clean=False``); otherwise the partition is reported unavailable. Every
    promotion, and every change to unavailable, bumps the epoch.
    """
    decisions = []
    for part in partitions:
        if part.primary is not None and states.get(part.primary, NodeState.DOWN) is not NodeState.DOWN:
            continue
        up = [node for node in part.replicas
              if node != part.primary and states.get(node, NodeState.DOWN) is NodeState.UP]
        clean_candidates = [node for node in up if node in part.in_sync]
        pool, clean = clean_candidates, True
        if not pool and unclean:
            pool, clean = up, False
        if not pool:
            if part.primary is None:
                continue                   # already unavailable; nothing new to decide
            decisions.append(Promotion(part.partition, part.primary, None, part.epoch + 1, True,
                                       "primary down, no in-sync replica is up"))
            continue
        rank = {node: i for i, node in enumerate(part.replicas)}
        best = max(pool, key=lambda node: (positions.get((node, part.partition), 0), -rank[node]))
        why = "primary down" if part.primary is not None else "partition was unavailable"
        if not clean:
            why += "; unclean: no in-sync replica is up"
        decisions.append(Promotion(part.partition, part.primary, best, part.epoch + 1, clean, why))
    return decisions


# ---------------------------------------------------------------------------------------------
# The controller

log = logging.getLogger("hashring.failover")
log.addHandler(logging.NullHandler())

EVENT_KINDS = frozenset({
    "node_suspect", "node_down", "node_up", "node_trusted", "node_restarted",
    "failover", "unavailable", "fail_back",
    "isr_shrink", "isr_expand", "stale_epoch", "epoch_ahead",
    "controller_paused", "controller_active", "controller_standby", "store_conflict",
})
_WARN_EVENTS = frozenset({"node_down", "node_restarted", "failover", "unavailable", "stale_epoch", "epoch_ahead",
                          "isr_shrink", "controller_paused", "store_conflict"})


class StaleEpochError(Exception):
    """A write, replication message or acknowledgement carried an epoch older than the
    partition's (or came from a node that is not the primary of that epoch): refused."""


class Position(NamedTuple):
    """What a replica reports for one partition: the epoch it follows, the highest seq it
    holds (a backup: acknowledged; the primary: appended) and, from the primary, the
    commit position (every seq up to it is committed) and ``config``: the revision of the
    partition's record (``PartitionState.revision``) whose in-sync set its commit rule
    applies. A replica added to the in-sync set becomes a promotion candidate only
    once the primary reports a config that new: before that, the primary may have
    committed entries without it."""

    epoch: int
    seq: int
    commit: int = 0
    config: int = 0


class Route(NamedTuple):
    """Where a key goes: its partition, the primary (``None``: unavailable, do not
    serve), the other live replicas in preference order, and the partition's epoch
    (carry it with every write: a stale one is refused)."""

    partition: int
    primary: str | None
    backups: tuple
    epoch: int


class Routes(NamedTuple):
    """``route_many``'s answer: per key the partition (int64), the primary as an int32
    index into ``nodes`` (-1: unavailable) and the epoch (int64)."""

    partition: np.ndarray
    primary: np.ndarray
    epoch: np.ndarray
    nodes: tuple


@dataclass(frozen=True)
class FailoverEvent:
    """Something the controller saw or did. ``kind`` is one of :data:`EVENT_KINDS`."""

    kind: str
    time: float
    node: str | None = None
    partition: int | None = None
    epoch: int | None = None
    old_primary: str | None = None
    new_primary: str | None = None
    reason: str = ""
    revision: int | None = None     # store revision of the partition's record after a change


@dataclass(frozen=True)
class NodeStatus:
    state: NodeState
    phi: float
    silence: float              # seconds since the last heartbeat (inf: never heard from)
    trusted: bool               # eligible to lead and to re-enter in-sync sets (past hold-down)
    lag: int                    # most entries behind the primary over the partitions it backs up
    lag_seconds: float          # the same, in seconds behind the primary's reports
    primary_of: int             # partitions it leads


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    replicas: tuple
    primary: str | None
    in_sync: tuple
    epoch: int
    commit: int                 # the commit floor: the highest commit a primary reported
    available: bool


@dataclass(frozen=True)
class ControllerStatus:
    active: bool                # holds the controller lease (a standby does not act)
    nodes: dict                 # name -> NodeStatus
    partitions: list            # PartitionStatus, by partition
    metrics: dict


class _NodeTrack:
    """What the controller knows of one node."""

    __slots__ = ("state", "last", "trusted_at", "announced", "incarnation", "stored_incarnation", "restarted")

    def __init__(self, now: float):
        self.state = NodeState.UP
        self.last = None            # time of the last heartbeat (None: never heard from)
        self.trusted_at = now       # eligible from this time on
        self.announced = True       # node_trusted was emitted for the current trusted_at
        self.incarnation = None     # the process incarnation it last reported
        self.stored_incarnation = None  # ... and the one the store holds (None: not read yet)
        self.restarted = False      # a new incarnation seen; tick() acts on it


class _PartTrack:
    """The controller's memory of one partition beyond its stored state."""

    __slots__ = ("revision", "changed_at", "tail", "commit", "reports", "caught_up", "last_seq", "pending",
                 "adopted", "lead_rev", "lead_since", "claimed", "confirmed_at", "lag_since", "seen_epoch",
                 "lost_primary")

    def __init__(self, revision: int, changed_at: float):
        self.revision = revision        # store revision of the partition's record
        self.changed_at = changed_at    # time of the last change of primary
        self.pending: dict = {}         # in-sync replica -> revision the primary must confirm
        self.commit = 0                 # last commit reported (seqs run on across epochs)
        self.seen_epoch = 0             # highest epoch a node reported (a new epoch goes above it)
        self.lead_rev = revision        # the primary leads once it reports a config this new
        self.lead_since = changed_at
        self.reset_epoch(changed_at)

    def reset_epoch(self, now: float) -> None:
        self.tail = -1                  # primary's last reported tail, this epoch (-1: none yet)
        self.reports: deque = deque()   # (time, tail) reports of the primary, this epoch
        self.caught_up: dict = {}       # backup -> newest primary-report time it had caught up to
        self.last_seq: dict = {}        # node -> (epoch, seq) last reported
        self.adopted = 0                # newest record revision the primary said it applies
        self.lost_primary = False       # the primary restarted (new incarnation): replace it
        self.claimed = -math.inf        # last time the primary reported applying lead_rev or newer
        self.confirmed_at: dict = {}    # in-sync replica -> when the primary confirmed its addition
        self.lag_since = -math.inf      # lag counts from here (a gap in the reports moves it; evidence stays)


def _encode_part(part: PartitionState, changed_at: float, pending, commit: int = 0,
                 epoch_rev: int | None = None) -> bytes:
    """``epoch_rev``: the revision of the write that started this epoch (None on that
    write itself: it is the record's own revision)."""
    return json.dumps({"replicas": list(part.replicas), "primary": part.primary,
                       "in_sync": sorted(part.in_sync), "pending": sorted(pending), "epoch": part.epoch,
                       "changed_at": changed_at, "commit": commit, "epoch_rev": epoch_rev},
                      separators=(",", ":")).encode()


class _Record(NamedTuple):
    """A partition record as read from the store."""

    part: PartitionState        # with the entry's revision
    changed_at: float
    pending: list
    commit: int                 # the commit floor
    epoch_rev: int              # the revision of the write that started the epoch


def _decode_part(partition: int, entry: StoreEntry) -> _Record:
    d = json.loads(entry.value)
    part = PartitionState(partition, tuple(d["replicas"]), d["primary"], frozenset(d["in_sync"]),
                          int(d["epoch"]), entry.revision)
    epoch_rev = d.get("epoch_rev")
    return _Record(part, float(d["changed_at"]), list(d.get("pending", ())), int(d.get("commit", 0)),
                   entry.revision if epoch_rev is None else int(epoch_rev))


class FailoverController:
    """Primary/backup failover over a consistent hash ring (see the README's "Failover").

    The key space is cut into ``partitions`` partitions; a key's partition comes from the
    top bits of its xxh3 hash, and a partition's replicas are the ring's preference list
    (``replication_factor`` distinct nodes) of the key ``"partition-<p>"``; the first is
    the preferred primary. Nodes send heartbeats with their replication positions; the
    controller convicts silent nodes (φ-accrual, plus ``hard_timeout``), keeps each
    partition's in-sync set, promotes the most up-to-date in-sync backup of a dead primary
    under a new epoch, and moves a partition back to its preferred primary once that is in
    sync again (``fail_back``). Its state lives in ``store`` (compare-and-set on every
    partition record; a lease marks the active controller).

    ``detector``: a :class:`PhiAccrual`; its threshold convicts (down); ``suspect_phi``
    (default half the threshold) marks a node suspect. ``hard_timeout``: seconds of
    silence that convict whatever φ says (and the grace given to nodes never heard from).
    ``hold_down``: a node that was down is trusted again (may lead, may re-enter in-sync
    sets) only after heartbeating for this long, and a partition fails back no sooner than
    this after its last change of primary. ``max_lag``: a backup more than this many
    seconds behind the primary's reported tail leaves the in-sync set. ``min_in_sync``:
    in-sync replicas, the primary included, needed to accept writes (``status()`` and
    ``writable()`` report it; the data path enforces it). ``unclean``: with no in-sync
    candidate, promote the most up-to-date live replica anyway (can lose acknowledged
    writes). ``pause_limit``: a gap this long between two ticks means the controller itself
    was paused; silence during the pause does not count against the nodes. ``clock``:
    seconds from a monotonic clock (tests pass a fake one).
    """

    def __init__(self, ring, replication_factor: int = 3, min_in_sync: int = 2, partitions: int = 256,
                 detector: PhiAccrual | None = None, clock=time.monotonic, *, store=None,
                 suspect_phi: float | None = None, hard_timeout: float = 5.0, hold_down: float = 10.0,
                 max_lag: float = 2.0, fail_back: bool = True, unclean: bool = False,
                 pause_limit: float = 2.0, tick_interval: float = 0.05, lease_ttl: float | None = None,
                 require_config: bool = False, prefix: str = "hashring"):
        from .ring import HashRing, RingSnapshot
        if not isinstance(ring, (HashRing, RingSnapshot)):
            raise TypeError(f"ring must be a HashRing or RingSnapshot, not {type(ring).__name__}")
        snap = ring.snapshot() if isinstance(ring, HashRing) else ring
        rf = _check_int("replication_factor", replication_factor, 1)
        if rf > len(snap):
            raise ValueError(f"replication_factor={rf} needs at least {rf} nodes; the ring has {len(snap)}")
        min_in_sync = _check_int("min_in_sync", min_in_sync, 1)
        if min_in_sync > rf:
            raise ValueError(f"min_in_sync={min_in_sync} must not exceed replication_factor={rf}")
        n_parts = _check_int("partitions", partitions, 1)
        if n_parts > 1 << 20:
            raise ValueError(f"partitions must be at most {1 << 20}, not {n_parts}")
        if detector is None:
            detector = PhiAccrual()
        elif not isinstance(detector, PhiAccrual):
            raise TypeError(f"detector must be a PhiAccrual, not {type(detector).__name__}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, not {type(clock).__name__}")
        first = clock()
        if isinstance(first, bool) or not isinstance(first, numbers.Real) or not math.isfinite(first):
            raise TypeError(f"clock must return finite seconds (a float), not {first!r}")
        if suspect_phi is None:
            suspect_phi = detector.threshold / 2
        suspect_phi = _check_positive("suspect_phi", suspect_phi)
        if suspect_phi > detector.threshold:
            raise ValueError(f"suspect_phi={suspect_phi} must not exceed the detector's threshold "
                             f"({detector.threshold})")
        self.hard_timeout = _check_positive("hard_timeout", hard_timeout)
        self.hold_down = _check_positive("hold_down", hold_down, allow_zero=True)
        self.max_lag = _check_positive("max_lag", max_lag)
        self.pause_limit = _check_positive("pause_limit", pause_limit)
        self.tick_interval = _check_positive("tick_interval", tick_interval)
        lease_ttl = self.hard_timeout if lease_ttl is None else _check_positive("lease_ttl", lease_ttl)
        # A tick gap is the controller's own pause only if ticks come more often, and the
        # lease must outlive a tick to be kept alive.
        if self.pause_limit <= 2 * self.tick_interval:
            raise ValueError(f"pause_limit={self.pause_limit} must exceed twice tick_interval={self.tick_interval}")
        if lease_ttl <= 2 * self.tick_interval:
            raise ValueError(f"lease_ttl={lease_ttl} must exceed twice tick_interval={self.tick_interval}")
        for name, flag in (("fail_back", fail_back), ("unclean", unclean), ("require_config", require_config)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
        _check_key(prefix, "prefix")
        if store is None:
            store = MemoryStore(clock=clock)
        elif not isinstance(store, Store):
            raise TypeError(f"store must provide get, put, delete, grant_lease, keep_alive and revoke "
                            f"(the Store protocol), not {type(store).__name__}")

        self.ring = snap
        self.nodes = snap.nodes
        self.replication_factor = rf
        self.min_in_sync = min_in_sync
        self.partitions = n_parts
        self.detector = detector
        self.suspect_phi = suspect_phi
        self.fail_back = fail_back
        self.unclean = unclean
        self.require_config = require_config
        self.lease_ttl = lease_ttl
        self.store = store
        self.prefix = prefix
        self._clock = clock
        self._lock = threading.RLock()
        self._callbacks: list = []
        self._thread = None
        self._stop = threading.Event()
        self._node_index = {name: i for i, name in enumerate(self.nodes)}

        now = float(first)
        self._last_tick = None
        self._pause_end = now             # silence before this does not count
        self._nodes = {name: _NodeTrack(now) for name in self.nodes}
        self._lease = None
        self._active = False
        self._stale_seen: set = set()
        self._metrics = {"failovers": 0, "fail_backs": 0, "unclean_failovers": 0, "stale_epoch_rejections": 0,
                         "isr_shrinks": 0, "isr_expands": 0, "store_conflicts": 0}
        self._promotion_delays: deque = deque(maxlen=1000)

        layout = json.dumps({"partitions": n_parts, "replication_factor": rf, "nodes": list(self.nodes)},
                            separators=(",", ":")).encode()
        stored = store.get(f"{prefix}/layout")
        if stored is None and store.put(f"{prefix}/layout", layout, expect=0) is None:
            stored = store.get(f"{prefix}/layout")          # another controller wrote it first
        if stored is not None and stored.value != layout:
            raise ValueError(f"the store's layout under prefix {prefix!r} is {stored.value.decode()}, not this "
                             f"controller's {layout.decode()}: partitions, replication_factor and the ring's nodes "
                             "must match (or use another prefix)")
        # Placement: each partition's preference list, then its state (from the store if a
        # previous controller left one there).
        self._replicas = [tuple(snap.get_nodes(f"partition-{p}", rf)) for p in range(n_parts)]
        self._parts: list = []
        self._track: list = []
        for p in range(n_parts):
            entry = store.get(self._part_key(p))
            if entry is not None:
                record = _decode_part(p, entry)
                if set(record.part.replicas) != set(self._replicas[p]):
                    raise ValueError(f"the store's partition {p} has replicas {record.part.replicas}, but this "
                                     f"ring places it on {self._replicas[p]} (a different ring or prefix?)")
                self._parts.append(record.part)
                track = _PartTrack(entry.revision, min(record.changed_at, now))
                track.pending = {n: entry.revision for n in record.pending}
                track.commit, track.lead_rev = record.commit, record.epoch_rev
                self._track.append(track)
            else:
                part = PartitionState(p, self._replicas[p], self._replicas[p][0], frozenset(self._replicas[p]), 1)
                self._parts.append(part)
                self._track.append(_PartTrack(0, now))
        self._publish()
        self._events: list = []
        self._outbox: deque = deque()       # events in the order they happened, to deliver
        self._drain_lock = threading.Lock()
        self._draining = False
        with self._lock:
            self._try_activate(now)
            events = self._take_events()
        self._deliver(events)

    # --- keys and routes ------------------------------------------------------------
    def _part_key(self, p: int) -> str:
        return f"{self.prefix}/partition/{p}"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}/node/{node}"

    def partition_of(self, key) -> int:
        """The partition of ``key`` (by the ring's key rule, hashed with xxh3)."""
        h = _ring.key_query_value(_ring.key_bytes(key), _ring.ALGO_XXH3)
        return ((h >> 32) * self.partitions) >> 32

    def route(self, key) -> Route:
        """Where ``key`` goes now (lock-free: an atomic read of the published table)."""
        p = self.partition_of(key)
        primary_idx, epochs, backups = self._view
        i = int(primary_idx[p])
        return Route(p, None if i < 0 else self.nodes[i], backups[p], int(epochs[p]))

    def route_many(self, keys) -> Routes:
        """``route`` for a batch of keys (any batch ``HashRing.map`` takes), as arrays:
        one compiled pass hashes each key and reads its partition's primary and epoch."""
        batches = key_batches(keys, bytes_repr=False)
        n = sum(kb.length for kb in batches)
        part = np.empty(n, dtype=np.int64)
        primary = np.empty(n, dtype=np.int32)
        epoch = np.empty(n, dtype=np.int64)
        primary_idx, epochs, _ = self._view            # one table for the whole batch
        pos = 0
        for kb in batches:
            end = pos + kb.length
            _ring.route_batch(kb, self.partitions, primary_idx, epochs, part[pos:end], primary[pos:end],
                              epoch[pos:end])
            pos = end
        return Routes(part, primary, epoch, self.nodes)

    def partition(self, p: int) -> PartitionState:
        """The state of partition ``p``."""
        p = _check_int("p", p, 0)
        if p >= self.partitions:
            raise ValueError(f"p must be below partitions={self.partitions}, not {p}")
        return self._parts[p]

    def revision(self, p: int) -> int:
        """The store revision of partition ``p``'s record (``partition(p).revision``; read
        that instead when you also need the in-sync set it belongs to)."""
        return self.partition(p).revision

    def writable(self, p: int) -> bool:
        """Whether partition ``p`` may accept writes: it has a primary and at least
        ``min_in_sync`` in-sync replicas (the primary included)."""
        part = self.partition(p)
        return part.primary is not None and len(part.in_sync) >= self.min_in_sync

    def check_epoch(self, p: int, epoch: int, node: str | None = None) -> None:
        """Fencing for a data path that asks the controller: raise :class:`StaleEpochError`
        unless ``epoch`` is partition ``p``'s current epoch (and ``node``, if given, its
        primary)."""
        part = self.partition(p)
        epoch = _check_int("epoch", epoch, 0)
        if node is not None:
            _check_node_name(node, self._node_index)
        if part.primary is None or epoch != part.epoch or (node is not None and node != part.primary):
            with self._lock:
                self._metrics["stale_epoch_rejections"] += 1
            who = f" from {node!r}" if node is not None else ""
            raise StaleEpochError(f"partition {p}: epoch {epoch}{who} refused; the partition is at epoch "
                                  f"{part.epoch} with primary {part.primary!r}")

    def _publish(self) -> None:
        """Swap in new routing arrays (readers never lock; they see one table or the other)."""
        primary_idx = np.array([-1 if part.primary is None else self._node_index[part.primary]
                                for part in self._parts], dtype=np.int32)
        epochs = np.array([part.epoch for part in self._parts], dtype=np.int64)
        backups = tuple(tuple(n for n in part.replicas if n != part.primary
                              and self._nodes[n].state is not NodeState.DOWN) for part in self._parts)
        primary_idx.flags.writeable = False
        epochs.flags.writeable = False
        self._view = (primary_idx, epochs, backups)

    # --- events -------------------------------------------------------------------------
    def on_event(self, callback) -> None:
        """Call ``callback(event)`` for every :class:`FailoverEvent` (after the state
        change, outside the controller's lock; an exception in it is logged, not raised)."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._lock:
            self._callbacks.append(callback)

    def _emit(self, kind: str, now: float, **fields) -> None:
        self._events.append(FailoverEvent(kind, now, **fields))

    def _take_events(self) -> list:
        """The events of the call holding the lock (every producer holds it), queued for
        delivery in the order they happened."""
        events, self._events = self._events, []
        self._outbox.extend(events)
        return events

    def _deliver(self, events) -> list:
        """Log queued events and pass them to the callbacks, outside the state lock, in the
        order they happened. One thread delivers at a time; a call made meanwhile (from
        another thread, or from a callback) only queues its events and returns, so a
        callback may call the controller without deadlocking."""
        while True:
            with self._drain_lock:
                if self._draining or not self._outbox:
                    return events
                self._draining = True
            try:
                while True:
                    with self._drain_lock:
                        if not self._outbox:
                            self._draining = False
                            break
                        event = self._outbox.popleft()
                    self._deliver_one(event, list(self._callbacks))
            except BaseException:
                with self._drain_lock:
                    self._draining = False
                raise

    @staticmethod
    def _deliver_one(event, callbacks) -> None:
        level = logging.WARNING if event.kind in _WARN_EVENTS else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s%s%s%s: %s", event.kind,
                    "" if event.node is None else f" node={event.node}",
                    "" if event.partition is None else f" partition={event.partition}",
                    "" if event.epoch is None else f" epoch={event.epoch}", event.reason)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("failover event callback %r failed on %s", callback, event.kind)

    # --- heartbeats ---------------------------------------------------------------------
    def heartbeat(self, node: str, positions: Mapping | None = None, now: float | None = None, *,
                  incarnation: int | None = None) -> list:
        """Record a heartbeat from ``node`` with its replication positions.

        ``positions``: partition -> :class:`Position` (or a tuple of its first 2-4
        fields). The primary of a partition reports its tail and
        commit, a backup the highest seq it has acknowledged. A position under an older
        epoch than the partition's is refused (a ``stale_epoch`` event) while the
        heartbeat still counts as a sign of life. ``incarnation``: a number the node
        changes whenever it restarts without its data (a boot counter, a start time); a
        new one takes it out of every in-sync set and away from the partitions it led,
        even when the restart was too quick to be seen as silence, and even across a
        controller restart (the last one is kept in the store). Returns the events it
        caused (``node_up``, ``stale_epoch``, ``isr_shrink``), which also go to the callbacks.
        """
        _check_node_name(node, self._node_index)
        parsed = self._parse_positions(positions)
        if incarnation is not None:
            incarnation = _check_int("incarnation", incarnation, 0)
        if now is not None:
            now = PhiAccrual._check_now(now)
        with self._lock:
            if now is None:
                now = PhiAccrual._check_now(self._clock())
            track = self._nodes[node]
            if track.last is not None and now < track.last:
                raise ValueError(f"now={now!r} is before {node!r}'s last heartbeat ({track.last!r})")
            if incarnation is not None and incarnation != track.incarnation:
                if track.stored_incarnation is None:
                    entry = self.store.get(self._node_key(node))
                    track.stored_incarnation = -1 if entry is None else int(entry.value)
                known = track.incarnation if track.incarnation is not None else track.stored_incarnation
                track.incarnation = incarnation
                if known not in (-1, incarnation):
                    # It restarted: nothing it reported before holds now.
                    track.restarted = True
                    for part_track in self._track:
                        part_track.caught_up.pop(node, None)
                        part_track.last_seq.pop(node, None)
            if track.state is NodeState.DOWN:
                # Back from the dead: a fresh history (the long gap is not a sample), and no
                # trust until it has kept heartbeating for hold_down.
                self.detector.forget(node)
                for part_track in self._track:      # what it reported before is no evidence now
                    part_track.caught_up.pop(node, None)
                    part_track.last_seq.pop(node, None)
                track.state = NodeState.UP
                track.trusted_at = now + self.hold_down
                track.announced = False
                self._emit("node_up", now, node=node,
                           reason=f"heartbeating again; trusted from t={track.trusted_at:.3f}")
                self._publish()
            self.detector.heartbeat(node, now)
            track.last = now
            for p, pos in parsed:
                self._record_position(node, p, pos, now)
            events = self._take_events()
        return self._deliver(events)

    def leave_in_sync(self, node: str, p: int, reason: str = "reported by the data path") -> list:
        """Take backup ``node`` out of partition ``p``'s in-sync set now (e.g. the log
        buffer evicted its reader, so commits no longer wait for it). Returns the events.
        The primary cannot leave its own in-sync set."""
        _check_node_name(node, self._node_index)
        part = self.partition(p)
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        if node not in part.replicas:
            raise ValueError(f"{node!r} is not a replica of partition {p} (replicas: {part.replicas})")
        with self._lock:
            part = self._parts[p]
            if node == part.primary:
                raise ValueError(f"{node!r} is partition {p}'s primary: it cannot leave the in-sync set")
            if not self._active:
                raise RuntimeError("this controller is standing by (another one holds the lease): "
                                   "ask the active controller")
            if node in part.in_sync:
                self._track[p].caught_up.pop(node, None)
                self._change_isr(p, part.in_sync - {node}, PhiAccrual._check_now(self._clock()),
                                 [("isr_shrink", node, reason)])
            events = self._take_events()
        return self._deliver(events)

    def _parse_positions(self, positions) -> list:
        if positions is None:
            return []
        if not isinstance(positions, Mapping):
            raise TypeError(f"positions must be a mapping of partition -> Position, not {type(positions).__name__}")
        out = []
        n_parts = self.partitions
        for p, pos in positions.items():
            # The common case, checked cheaply: an int partition and a tuple of 2-4 ints.
            if type(p) is int and 0 <= p < n_parts and type(pos) in (Position, tuple) and 2 <= len(pos) <= 4 \
                    and all(type(v) is int and v >= 0 for v in pos):
                pos = Position(*pos)
                if pos.commit > pos.seq:
                    raise ValueError(f"positions[{p}]: commit {pos.commit} is beyond seq {pos.seq}")
                out.append((p, pos))
                continue
            if isinstance(p, bool) or not isinstance(p, numbers.Integral) or not 0 <= p < self.partitions:
                raise ValueError(f"positions: {p!r} is not a partition (0..{self.partitions - 1})")
            if not isinstance(pos, tuple) or not 2 <= len(pos) <= 4:
                raise TypeError(f"positions[{p}] must be a Position or an (epoch, seq[, commit[, config]]) tuple, "
                                f"not {pos!r}")
            try:
                pos = Position(*(_check_int(f"positions[{p}].{f}", v, 0) for f, v in zip(Position._fields, pos)))
            except (TypeError, ValueError) as exc:
                raise type(exc)(str(exc)) from None
            if pos.commit > pos.seq:
                raise ValueError(f"positions[{p}]: commit {pos.commit} is beyond seq {pos.seq}")
            out.append((int(p), pos))
        return out

    def _record_position(self, node, p, pos, now) -> None:
        part = self._parts[p]
        track = self._track[p]
        if node not in part.replicas:
            return                                  # not a replica of p: nothing to learn
        if pos.epoch < part.epoch:
            self._metrics["stale_epoch_rejections"] += 1
            if (node, p, pos.epoch) not in self._stale_seen:
                self._stale_seen.add((node, p, pos.epoch))
                self._emit("stale_epoch", now, node=node, partition=p, epoch=pos.epoch,
                           reason=f"position under epoch {pos.epoch} refused; the partition is at epoch {part.epoch}")
            return
        if pos.epoch > part.epoch:
            # From a future our store has not recorded (a fresh store, say): never hand
            # out an epoch at or below it.
            if pos.epoch > track.seen_epoch:
                track.seen_epoch = pos.epoch
                if not self._active:
                    return                          # a standby is merely behind the store's records
                self._emit("epoch_ahead", now, node=node, partition=p, epoch=pos.epoch,
                           reason=f"reported epoch {pos.epoch}, above the record's {part.epoch}; "
                                  "new epochs will go above it")
            return
        previous = track.last_seq.get(node)
        track.last_seq[node] = (pos.epoch, pos.seq)
        if node == part.primary:
            if not track.reports or now - track.reports[-1][0] > self.max_lag / 2:
                # The first report of this primary after a gap (or ever, for this controller):
                # nobody could show they caught up meanwhile, so lag counts from now.
                track.lag_since = now
            track.tail = max(track.tail, pos.seq)
            track.commit = max(track.commit, pos.commit)
            if pos.config >= track.lead_rev:
                track.claimed = now
            # A revision we have not read (or never wrote) confirms nothing.
            config = pos.config if pos.config <= track.revision else 0
            if config > track.adopted:
                track.adopted = config
                confirmed = [n for n, rev in track.pending.items() if rev <= config]
                for replica in confirmed:
                    del track.pending[replica]
                    track.confirmed_at[replica] = now
                if confirmed and self._active:
                    # Persist the confirmation: a successor must not see them as pending.
                    self._change_isr(p, part.in_sync, now, [])
            track.reports.append((now, track.tail))
            horizon = now - 2 * self.max_lag
            while len(track.reports) > 1 and track.reports[1][0] <= horizon:
                track.reports.popleft()
            return
        if previous is not None and previous[0] == pos.epoch and pos.seq < previous[1]:
            # Went backwards in one epoch: it restarted and lost what it held.
            track.caught_up.pop(node, None)
            if node in part.in_sync and self._active:
                self._change_isr(p, part.in_sync - {node}, now, [("isr_shrink", node,
                                 f"its position went back from {previous[1]} to {pos.seq} (restarted?)")])
            return
        for t, tail in reversed(track.reports):
            if tail <= pos.seq:
                if t > track.caught_up.get(node, -math.inf):
                    track.caught_up[node] = t
                break

    # --- the loop --------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> list:
        """Run one round: convict or clear nodes, keep in-sync sets, promote, fail back.
        Returns the events of this round (also logged and passed to the callbacks)."""
        if now is not None:
            now = PhiAccrual._check_now(now)
        with self._lock:
            if now is None:
                now = PhiAccrual._check_now(self._clock())
            if self._last_tick is not None and now < self._last_tick:
                raise ValueError(f"now={now!r} is before the last tick ({self._last_tick!r})")
            if self._last_tick is not None and now - self._last_tick > self.pause_limit:
                # We were paused (GC, SIGSTOP, a stalled VM): the nodes' silence during it
                # is ours, not theirs.
                self._pause_end = now
                for track in self._track:            # nor is any lag or silence it makes look
                    track.lag_since = now
                    track.lead_since = max(track.lead_since, now)
                self._emit("controller_paused", now, reason=f"no tick for {now - self._last_tick:.3f} s; "
                           "silence before now is not held against the nodes")
            self._last_tick = now
            if self._try_activate(now):
                self._restarts(now)
                self._update_nodes(now)
                self._update_in_sync(now)
                self._promote(now)
                if self.fail_back:
                    self._fail_back(now)
            events = self._take_events()
        return self._deliver(events)

    def _try_activate(self, now) -> bool:
        key = f"{self.prefix}/controller"
        if self._lease is not None and self.store.keep_alive(self._lease):
            return True
        if self._active:
            self._active = False
            self._emit("controller_standby", now, reason="lost the controller lease")
        self._lease = self.store.grant_lease(self.lease_ttl)
        if self.store.put(key, repr(id(self)).encode(), expect=0, lease=self._lease) is None:
            self.store.revoke(self._lease)
            self._lease = None
            # Standing by: follow the active controller's records, change nothing.
            changed = False
            for p in range(self.partitions):
                entry = self.store.get(self._part_key(p))
                if entry is not None and entry.revision != self._track[p].revision:
                    self._reload(p, entry, now)
                    changed = True
            if changed:
                self._publish()
            return False
        self._active = True
        # Another controller may have changed partitions while we were standing by; the
        # first one writes the initial records.
        for p in range(self.partitions):
            entry = self.store.get(self._part_key(p))
            if entry is None:
                track = self._track[p]
                revision = self.store.put(self._part_key(p), _encode_part(self._parts[p], track.changed_at, ()),
                                          expect=0)
                if revision is not None:
                    track.revision = track.lead_rev = revision
                    self._parts[p] = dataclasses.replace(self._parts[p], revision=revision)
                    continue
                entry = self.store.get(self._part_key(p))
            if entry is not None and entry.revision != self._track[p].revision:
                self._reload(p, entry, now)
        for track in self._track:                   # lag counts from now, not from the record's age
            track.lag_since = max(track.lag_since, now)
            track.lead_since = max(track.lead_since, now)
        self._publish()
        self._emit("controller_active", now, reason="holds the controller lease")
        return True

    def _reload(self, p, entry, now) -> None:
        record = _decode_part(p, entry)
        old = self._parts[p]
        self._parts[p] = record.part
        track = self._track[p]
        track.revision = entry.revision
        # We may have missed records between: only a config this new confirms them.
        track.pending = {n: entry.revision for n in record.pending}
        if record.part.epoch != old.epoch:
            track.changed_at = min(record.changed_at, now)
            track.reset_epoch(now)
            track.commit = record.commit            # the new epoch's floor (unclean may lower it)
            track.lead_rev, track.lead_since = record.epoch_rev, now
        else:
            track.commit = max(track.commit, record.commit)

    def _restarts(self, now) -> None:
        """Act on new incarnations: out of every in-sync set, away from every partition it
        led (what it held is gone), trusted again only after hold_down; then remember the
        incarnation in the store, so a successor controller knows it too."""
        for node, track in self._nodes.items():
            if track.incarnation is None or track.incarnation == track.stored_incarnation:
                continue
            entry = self.store.get(self._node_key(node))
            if entry is not None and int(entry.value) == track.incarnation:
                track.restarted = False             # another controller has handled it
                track.stored_incarnation = track.incarnation
                continue
            if track.restarted:
                if track.state is not NodeState.DOWN:
                    track.trusted_at = max(track.trusted_at, now + self.hold_down)
                    track.announced = False
                done = True
                for p, part in enumerate(self._parts):
                    if node == part.primary:
                        self._track[p].lost_primary = True
                    elif node in part.in_sync:
                        done &= self._change_isr(p, part.in_sync - {node}, now,
                                                 [("isr_shrink", node, "restarted (new incarnation)")])
                if not done:
                    continue                        # a conflict: try again next tick
                track.restarted = False
                self._emit("node_restarted", now, node=node,
                           reason=f"new incarnation {track.incarnation}: it lost what it held")
            self.store.put(self._node_key(node), str(track.incarnation).encode())
            track.stored_incarnation = track.incarnation

    def _effective_silence(self, track: _NodeTrack, now: float) -> float:
        start = self._pause_end if track.last is None else max(track.last, self._pause_end)
        return max(0.0, now - start)

    def _phi(self, node, track, now) -> float:
        if track.last is None:
            return 0.0
        return self.detector.phi(node, track.last + self._effective_silence(track, now))

    def _update_nodes(self, now) -> None:
        changed = False
        for node, track in self._nodes.items():
            if track.state is NodeState.DOWN:
                continue
            silence = self._effective_silence(track, now)
            phi = self._phi(node, track, now)
            if phi >= self.detector.threshold or silence >= self.hard_timeout:
                why = (f"phi {phi:.2f} >= {self.detector.threshold}" if phi >= self.detector.threshold
                       else f"silent for {silence:.3f} s >= hard_timeout {self.hard_timeout}")
                track.state = NodeState.DOWN
                self._emit("node_down", now, node=node, reason=why)
                changed = True
            elif phi >= self.suspect_phi:
                if track.state is NodeState.UP:
                    track.state = NodeState.SUSPECT
                    if track.trusted_at > now:       # not steady yet: the hold-down starts over
                        track.trusted_at = now + self.hold_down
                    self._emit("node_suspect", now, node=node, reason=f"phi {phi:.2f} >= {self.suspect_phi}")
            elif track.state is NodeState.SUSPECT:
                track.state = NodeState.UP
                self._emit("node_up", now, node=node, reason=f"phi {phi:.2f} back below {self.suspect_phi}")
            if track.state is NodeState.UP and not track.announced and track.trusted_at <= now:
                track.announced = True
                self._emit("node_trusted", now, node=node, reason=f"heartbeating for hold_down={self.hold_down} s")
        if changed:
            self._publish()

    def _trusted(self, node, now) -> bool:
        track = self._nodes[node]
        return track.state is NodeState.UP and track.trusted_at <= now

    def _lag_seconds(self, p, node) -> float:
        track = self._track[p]
        if not track.reports:
            return 0.0
        newest = track.reports[-1][0]
        return max(0.0, newest - max(track.caught_up.get(node, track.changed_at), track.lag_since))

    def _update_in_sync(self, now) -> None:
        for p, part in enumerate(self._parts):
            if part.primary is None or self._nodes[part.primary].state is NodeState.DOWN:
                continue        # promotion decides; a backup that died with it may be the one to return
            track = self._track[p]
            primary_up = self._nodes[part.primary].state is NodeState.UP
            in_sync = set(part.in_sync)
            reasons = []
            for node in part.replicas:
                if node == part.primary:
                    continue
                state = self._nodes[node].state
                if node in in_sync:
                    if state is NodeState.DOWN:
                        in_sync.discard(node)
                        reasons.append(("isr_shrink", node, "down"))
                    elif (primary_up and track.reports and self._lag_seconds(p, node) > self.max_lag
                          and len((in_sync & part.in_sync) - set(track.pending)) > self.min_in_sync):
                        # Not below min_in_sync confirmed members: commits stop there anyway,
                        # and a backup dropped then still holds every commit but could not
                        # take over if the primary died.
                        in_sync.discard(node)
                        reasons.append(("isr_shrink", node, f"more than max_lag={self.max_lag} s behind"))
                elif (self._trusted(node, now) and track.reports
                      and track.caught_up.get(node, -math.inf) >= track.reports[-1][0] - self.max_lag / 2):
                    # It holds the tail of a recent report of the primary (so every commit
                    # up to then); later commits are its to confirm (pending, below).
                    in_sync.add(node)
                    reasons.append(("isr_expand", node, f"caught up to the primary's tail {track.tail}"))
            if reasons:
                self._change_isr(p, in_sync, now, reasons)

    def _change_isr(self, p, in_sync, now, changes) -> bool:
        """One write of partition ``p``'s new in-sync set; ``changes``: (kind, node, reason)."""
        part = self._parts[p]
        track = self._track[p]
        new = PartitionState(p, part.replicas, part.primary, frozenset(in_sync), part.epoch)
        pending = {n: rev for n, rev in track.pending.items() if n in in_sync}
        for kind, node, _ in changes:
            if kind == "isr_expand":
                pending[node] = None        # the revision of this very write
        if not self._write(p, new, track.changed_at, now, pending):
            return False                    # a conflict (reloaded): decide again next tick
        track.pending = {n: track.revision if rev is None else rev for n, rev in pending.items()}
        for kind, node, reason in changes:
            self._metrics["isr_shrinks" if kind == "isr_shrink" else "isr_expands"] += 1
            self._emit(kind, now, node=node, partition=p, epoch=part.epoch, revision=track.revision,
                       reason=f"{reason}; in sync: {sorted(in_sync)}")
        return True

    def _write(self, p, new: PartitionState, changed_at: float, now: float, pending=(),
               new_epoch: bool = False) -> bool:
        """Compare-and-set partition ``p``'s record; on a conflict reload it and say so."""
        track = self._track[p]
        value = _encode_part(new, changed_at, pending, track.commit, None if new_epoch else track.lead_rev)
        revision = self.store.put(self._part_key(p), value, expect=track.revision)
        if revision is None:
            self._metrics["store_conflicts"] += 1
            entry = self.store.get(self._part_key(p))
            if entry is not None:
                self._reload(p, entry, now)
            self._emit("store_conflict", now, partition=p,
                       reason="the partition's record changed under us (another controller?); reloaded")
            self._publish()
            return False
        self._parts[p] = dataclasses.replace(new, revision=revision)    # one swap: state and revision
        track.revision = revision
        return True

    def _decision_view(self, now):
        """Node states for decide_promotions: a node not yet trusted is no candidate."""
        states = {}
        for node, track in self._nodes.items():
            state = track.state
            if state is NodeState.UP and track.trusted_at > now:
                state = NodeState.SUSPECT
            states[node] = state
        return states

    def _positions(self, p):
        track = self._track[p]
        return {(node, p): track.last_seq.get(node, (0, 0)) for node in self._parts[p].replicas}

    def _promote(self, now) -> None:
        states = self._decision_view(now)
        todo = []
        for part in self._parts:
            if part.primary is None or states[part.primary] is NodeState.DOWN:
                todo.append((part, states))
            elif self._not_leading(part, now):
                todo.append((part, dict(states, **{part.primary: NodeState.DOWN})))   # for this partition only
        if not todo:
            return
        positions = {}
        decisions = []
        for part, view in todo:
            positions.update(self._positions(part.partition))
            # Not candidates: a replica whose addition the primary never confirmed (it may
            # have committed without it), and one that reported less than the last commit.
            track = self._track[part.partition]
            in_sync = frozenset(n for n in part.in_sync if n == part.primary or (
                n not in track.pending and track.last_seq.get(n, (0, 0))[1] >= track.commit))
            eligible = PartitionState(part.partition, part.replicas, part.primary, in_sync,
                                      max(part.epoch, track.seen_epoch))
            decisions += decide_promotions([eligible], view, positions, unclean=self.unclean)
        changed = False
        for decision in decisions:
            p = decision.partition
            part = self._parts[p]
            confirmed = part.in_sync - set(self._track[p].pending)
            if self._track[p].lost_primary:
                confirmed = confirmed - {part.primary}      # it restarted: it holds nothing now
            if decision.new_primary is None:
                # Keep the in-sync set: the first of them to come back takes over.
                new = PartitionState(p, part.replicas, None, confirmed, decision.epoch)
                if self._new_epoch(p, new, now):
                    self._emit("unavailable", now, partition=p, epoch=decision.epoch, old_primary=part.primary,
                               reason=decision.reason, revision=self._track[p].revision)
                    changed = True
                continue
            in_sync = {decision.new_primary} | {n for n in confirmed if n != part.primary
                                                 and states[n] is not NodeState.DOWN}
            if not decision.clean:
                in_sync = {decision.new_primary}
            new = PartitionState(p, part.replicas, decision.new_primary, frozenset(in_sync), decision.epoch)
            floor = self._track[p].commit
            if not decision.clean:
                # What it holds is all there is now: commits beyond it went with the others.
                self._track[p].commit = positions.get((decision.new_primary, p), (0, 0))[1]
            if not self._new_epoch(p, new, now):
                self._track[p].commit = max(self._track[p].commit, floor)
                continue
            self._metrics["failovers"] += 1
            if not decision.clean:
                self._metrics["unclean_failovers"] += 1
            failed = self._nodes[part.primary].last if part.primary is not None else None
            if failed is not None:
                self._promotion_delays.append(now - failed)
            self._emit("failover", now, partition=p, epoch=decision.epoch, old_primary=part.primary,
                       new_primary=decision.new_primary, node=decision.new_primary, reason=decision.reason,
                       revision=self._track[p].revision)
            changed = True
        if changed:
            self._publish()

    def _not_leading(self, part, now) -> bool:
        """The primary heartbeats but has not reported applying the record that made it
        primary (or a newer one) for hard_timeout: it is not leading (it restarted and
        lost its log, or cannot read the store)."""
        track = self._track[part.partition]
        primary = self._nodes[part.primary] if part.primary is not None else None
        if primary is not None and track.lost_primary:
            return True
        # Only when the data path reports configs (require_config): otherwise a primary
        # is never judged on what it applies.
        return (self.require_config and primary is not None and primary.state is NodeState.UP
                and now - max(track.claimed, track.lead_since) >= self.hard_timeout)

    def _new_epoch(self, p, new: PartitionState, now) -> bool:
        """Write a partition's next epoch; its unconfirmed additions were left out of ``new``."""
        if not self._write(p, new, now, now, new_epoch=True):
            return False
        track = self._track[p]
        track.changed_at = now
        track.pending = {}
        track.reset_epoch(now)
        self._stale_seen = {seen for seen in self._stale_seen if seen[1] != p}
        track.lead_rev, track.lead_since = track.revision, now
        return True

    def _fail_back(self, now) -> None:
        changed = False
        for p, part in enumerate(self._parts):
            preferred = part.replicas[0]
            pending = self._track[p].pending
            if part.primary is None or part.primary == preferred or preferred not in part.in_sync \
                    or preferred in pending:
                continue
            if not self._trusted(preferred, now) or self._nodes[part.primary].state is not NodeState.UP:
                continue
            if now - self._track[p].changed_at < self.hold_down:
                continue
            track = self._track[p]
            if track.caught_up.get(preferred, -math.inf) < track.confirmed_at.get(preferred, track.changed_at) \
                    or track.last_seq.get(preferred, (0, -1))[1] < track.commit:
                # Not yet seen holding the tail of one of this primary's reports made after
                # its addition was confirmed (or, carried over, after the epoch began): until
                # then it may lack entries committed without it.
                continue
            new = PartitionState(p, part.replicas, preferred, part.in_sync - set(pending),
                                 max(part.epoch, track.seen_epoch) + 1)
            if not self._new_epoch(p, new, now):
                continue
            self._metrics["fail_backs"] += 1
            self._emit("fail_back", now, partition=p, epoch=new.epoch, old_primary=part.primary,
                       new_primary=preferred, node=preferred,
                       reason="the preferred primary is in sync again: hand over (old primary: stop writing)",
                       revision=self._track[p].revision)
            changed = True
        if changed:
            self._publish()

    # --- background thread ------------------------------------------------------------
    def start(self) -> FailoverController:
        """Tick every ``tick_interval`` seconds on a daemon thread (on the controller's clock)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                raise RuntimeError("the controller is already running")
            # Each thread has its own stop event: a stop() from a callback, then start(),
            # never leaves two loops ticking.
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(stop,), name="hashring-failover", daemon=True)
            self._thread.start()
        return self

    def _run(self, stop) -> None:
        while not stop.wait(self.tick_interval):
            try:
                self.tick()
            except Exception:
                log.exception("failover tick failed")

    def stop(self) -> None:
        """Stop the background thread (if running) and give up the controller lease."""
        with self._lock:
            stop, thread = self._stop, self._thread
            self._thread = None
        stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            if self._lease is not None:
                self.store.revoke(self._lease)
                self._lease = None
            self._active = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- status -----------------------------------------------------------------------
    def status(self, now: float | None = None) -> ControllerStatus:
        """Nodes (state, φ, silence, lag), partitions (primary, in-sync set, epoch) and metrics."""
        if now is None:
            now = self._clock()
        now = PhiAccrual._check_now(now)
        with self._lock:
            lag = {n: 0 for n in self.nodes}
            lag_s = {n: 0.0 for n in self.nodes}
            leads = {n: 0 for n in self.nodes}
            parts = []
            for p, part in enumerate(self._parts):
                track = self._track[p]
                if part.primary is not None:
                    leads[part.primary] += 1
                    for node in part.replicas:
                        if node != part.primary and track.tail >= 0:
                            seq = track.last_seq.get(node, (0, 0))[1]
                            lag[node] = max(lag[node], track.tail - seq)
                            lag_s[node] = max(lag_s[node], self._lag_seconds(p, node))
                parts.append(PartitionStatus(p, part.replicas, part.primary, tuple(sorted(part.in_sync)),
                                             part.epoch, track.commit, part.primary is not None))
            nodes = {}
            for node, track in self._nodes.items():
                silence = math.inf if track.last is None else max(0.0, now - track.last)
                nodes[node] = NodeStatus(track.state, self._phi(node, track, now), silence,
                                         track.state is NodeState.UP and track.trusted_at <= now,
                                         lag[node], lag_s[node], leads[node])
            delays = sorted(self._promotion_delays)
            metrics = dict(self._metrics)
            metrics.update(
                unavailable_partitions=sum(1 for part in self._parts if part.primary is None),
                under_min_in_sync=sum(1 for part in self._parts
                                      if part.primary is not None and len(part.in_sync) < self.min_in_sync),
                promotion_seconds_last=self._promotion_delays[-1] if delays else None,
                promotion_seconds_median=delays[len(delays) // 2] if delays else None,
                promotion_seconds_max=delays[-1] if delays else None,
                replication_lag=lag,
            )
            return ControllerStatus(self._active, nodes, parts, metrics)

    def __repr__(self):
        return (f"<FailoverController {len(self.nodes)} nodes, {self.partitions} partitions, "
                f"rf={self.replication_factor}, min_in_sync={self.min_in_sync}, "
                f"{'active' if self._active else 'standby'}>")
