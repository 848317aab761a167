"""Failover: failure detection, the membership store and promotion (issue 5, first parts).

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
"""

from __future__ import annotations

import enum
import math
import numbers
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["PhiAccrual", "MemoryStore", "StoreEntry", "NodeState", "PartitionState", "Promotion",
           "decide_promotions"]

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
    the current primary (``None`` while unavailable), the in-sync replicas and the epoch."""

    partition: int
    replicas: tuple
    primary: str | None
    in_sync: frozenset
    epoch: int


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
