"""Failover: failure detection for the nodes of a ring (issue 5, first part).

:class:`PhiAccrual` is the φ-accrual failure detector of Hayashibara et al. (SRDS 2004),
in the form Akka uses: the gaps between a node's heartbeats are modelled as a normal
distribution (mean and standard deviation over a sliding window), and

    φ(t) = -log10(P(the next heartbeat comes later than t after the last))

so φ = 1 means a 10% chance that the node is merely late, φ = 8 one in 10**8. A node
is *suspect* once φ reaches the threshold. Time is passed in by the caller (seconds, from
any monotonic clock), so tests are deterministic; the detector never reads a clock.
"""

from __future__ import annotations

import math
import numbers
from collections import deque

__all__ = ["PhiAccrual"]

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
