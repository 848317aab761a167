"""Deterministic simulation of the failover controller driving a replicated data path.

One ``random.Random(seed)`` drives everything; time is simulated (a heap of timed actions),
so a seed replays exactly, whatever ``PYTHONHASHSEED`` is. The world:

* **Nodes** ``n0..n4`` on a ``HashRing``; partitions (default 6) replicated ``rf=3`` along the
  ring's preference lists, ``min_in_sync=2``. Every node ticks every 10-20 ms, reads the
  store every 50 ms (a request/response over the network, so its view can be stale) and
  heartbeats its positions to the controller every 100 ms.
* **The controller** is the real :class:`hashring.FailoverController`, on the simulated clock,
  ticked every 50 ms, on a :class:`hashring.MemoryStore` that outlives it. A crashed
  controller is replaced by a new object on the same store, which stands by until the old
  lease expires. The store is wrapped so that a controller can be killed between two of its
  writes (mid-failover), and so that every record it writes is checked.
* **The data path** (written here, to the controller's contract): per partition, a node keeps
  an epoch-tagged log ``[(epoch, value)]``, a fence (the highest epoch seen; older messages
  are refused and the sender is told), its commit, and the newest record it has read. The
  node named primary by a record of epoch ``e`` (once it has read it) appends client writes
  tagged ``e`` and replicates with Raft's log matching (``prev_seq``/``prev_epoch``; a
  conflicting suffix is truncated, which is how a returning old primary drops what it never
  committed); it commits a seq once every member of the in-sync set of the record it applies
  (``pending`` included) has acknowledged it and that set has ``min_in_sync`` members, and
  reports that record's revision as ``Position.config``. A backup reports the highest seq it
  knows to be consistent with the current primary. A restarted node has lost everything;
  it accepts nothing before it has read the store, and never leads an epoch that was already
  current at that first read (it may have lost entries of that epoch).
* **The client** writes to the primary named by its cached view of the store (refreshed every
  250 ms, so sometimes stale, and sometimes deliberately misrouted) and counts a write
  acknowledged when a primary's commit covers it.
* **Faults**: node crash (memory lost) and restart (sometimes over a congested link); slow
  links into or out of a node (extra delay, not loss); pause (SIGSTOP: no processing,
  messages queue and are handled on resume before anything else); network cuts (a node from
  everything, from the controller/store only, or one direction only); per-message loss,
  duplication, delay spikes and so reordering between nodes (node-to-controller traffic is
  one ordered connection each way, like TCP: lost and delayed, not reordered); controller
  crash (at a random time, or armed to die just before or just after one of its next store
  writes, i.e. mid-failover) and restart on the same store; controller pause.
* **Timing** (SimConfig): ``hard_timeout`` 2 s (also the controller lease), ``hold_down``
  1 s, ``max_lag`` 1 s, controller tick 50 ms, heartbeats 100 ms; 30 s of faults, then quiet.

Modes: ``tolerant`` keeps failures within ``replication_factor - min_in_sync`` = 1: a new
node fault starts only when every node is *healthy* (up, unpaused, uncut, in the in-sync set
of every partition it replicates with the primary applying that record, and holding every
acknowledged write), so "faulty" covers crashed, paused, cut off, and not yet back in sync.
``nocrash`` overlaps any number of pauses and cuts but never crashes a node (nobody loses
memory, so nothing acknowledged may be lost either). ``chaos`` overlaps everything, crashes
included; only the invariants that survive losing a majority's memory are checked.

Invariants, checked at the step where they could break (every store write, every takeover,
every truncation, every commit), so "at every step":

1. At most one node (one incarnation) ever leads a partition in a given epoch, and the store
   never names two primaries for one (partition, epoch); a primary's log only grows while
   it leads.
2. A partition's record epoch never decreases; a node's fence never decreases while it keeps
   its memory.
3. No write under a stale epoch is acknowledged unless it survives: when a primary of epoch
   ``e`` commits after another node has started leading under a later epoch (possible: the
   acknowledgements may have been sent before the backups fenced), every node still leading
   a later epoch must already hold those entries.
4. (tolerant, nocrash) Acknowledged writes are never lost: they form a prefix per partition
   that never changes (a commit at a seq already acknowledged carries the same entry, so the
   commit position a client has seen never goes backwards); a node that holds one never
   truncates it; a node taking over as primary holds all of them; and every primary the
   controller names in a new epoch, if it is alive, already holds all of them (the
   controller's own promise, checked at its store write: a later takeover would lose them).
5. (tolerant, nocrash) Liveness: once faults stop (time T; the network is then quiet), every
   partition has a primary that commits a write submitted after T by
   ``T + availability_bound`` and every node is healthy again by ``T + heal_bound``
   (see :class:`SimConfig`). In ``tolerant`` mode every fault must also heal within
   ``heal_bound`` of its end (a stuck state fails the run, not only the last one).

A violation raises :class:`Violation` with the seed, the mode, the simulated time, what broke
and the last events; ``python tests/failover_sim.py --seed N --mode M`` replays it.

Not modelled: disks (a crash loses everything; no fsync semantics), clock skew (one clock),
the store failing or partitioning away from the controller (the controller and the store
share the host ``ctl``), more than one controller process alive at once, reads served by
backups, client retries and idempotence, membership/ring changes, and byzantine nodes.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from hashring import FailoverController, HashRing, MemoryStore, PhiAccrual, Position

CTL = "ctl"            # the host of the controller and of the store
CLIENT = "client"      # the writers; never cut off (they model many clients everywhere)
PREFIX = "hashring"
_PART_KEY = f"{PREFIX}/partition/"
_INF = float("inf")


class Violation(AssertionError):
    """An invariant failed. ``seed``, ``mode``, ``time`` and ``what`` say which and where."""

    def __init__(self, seed, mode, when, what, trace, kind="safety", code=None):
        self.seed, self.mode, self.time, self.what, self.kind = seed, mode, when, what, kind
        self.code = code or kind                # which rule broke (see CODES)
        lines = "\n  ".join(trace)
        super().__init__(f"{kind} violation [{self.code}], seed={seed} mode={mode} t={when:.4f}: {what}\n"
                         f"replay: python tests/failover_sim.py --seed {seed} --mode {mode}\n"
                         f"last events:\n  {lines}")


#: Violation codes that name a specific failure pattern (others use "safety"/"liveness").
CODES = {
    "failover-lacks-acks": "the controller promoted a live replica that lacks acknowledged writes",
    "fail_back-lacks-acks": "the controller failed back to a live replica that lacks acknowledged writes",
    "restarted-primary-not-replaced": "a primary restarted without its log and was never replaced",
    "unavailable-with-data-elsewhere": "a partition stays unavailable: its in-sync members lost their data, "
                                       "replicas outside the in-sync set hold every acknowledged write",
}


class ControllerCrash(BaseException):
    """Raised inside the controller to kill it where it stands (BaseException: nothing in
    the controller may catch it)."""


@dataclass(frozen=True)
class SimConfig:
    """The simulated world's parameters; ``duration`` is the faulty phase (seconds).

    ``availability_bound`` and ``heal_bound`` are the liveness bounds, measured from the end
    of the last fault:

    * a controller that was restarted just before may stand by until the old lease expires:
      ``lease_ttl`` (= ``hard_timeout``);
    * a node that was convicted is trusted again (may lead, may re-enter in-sync sets) only
      after ``hold_down`` of heartbeats, so a partition left unavailable gets its primary,
      or a primary whose in-sync set fell below ``min_in_sync`` gets its backups back, after
      that;
    * re-entering needs a report that holds the primary's tail of a report less than
      ``max_lag / 2`` old;
    * then heartbeats (0.1 s), store reads (0.05 s), ticks (0.05 s), the pending addition's
      confirmation and catching up on the backlog: 1.5 s margin.

    So ``availability_bound = lease_ttl + hold_down + max_lag + 1.5`` (5.5 s with the
    defaults). Healing may need one more hold-down (a fail-back, whose new primary then
    re-adds the others) and catching up: ``heal_bound = availability_bound + hold_down + 1.0``
    (7.5 s). Measured over 1,400 seeds with the controller fixes proposed alongside this
    simulation: at most 2.5 s to availability and 2.5 s to health after the last fault,
    4.2 s from a fault's end to health during a run.
    """

    mode: str = "tolerant"                 # tolerant | nocrash | chaos
    nodes: int = 5
    partitions: int = 6
    replication_factor: int = 3
    min_in_sync: int = 2
    hard_timeout: float = 2.0
    hold_down: float = 1.0
    max_lag: float = 1.0
    tick_interval: float = 0.05
    fail_back: bool = True
    heartbeat_interval: float = 0.1
    read_interval: float = 0.05
    node_tick: tuple = (0.010, 0.020)
    write_interval: float = 0.02           # one client write every 20 ms, partitions in turn
    batch: int = 32                        # entries per replication message
    resend: float = 0.03                   # resend unacknowledged entries after this
    keepalive: float = 0.05                # an empty append at least this often (carries commit)
    duration: float = 30.0                 # faults start in [warmup, duration)
    warmup: float = 1.0
    random_faults: bool = True             # False: only what a test scripts
    controller_faults: bool = True
    message_chaos: bool = True
    fast_restart: bool = False             # crashed nodes may restart before being convicted
    # A restarted node named primary of an epoch it cannot vouch for: "wait" keeps
    # heartbeating and waits for the controller to move the partition on; "silent" stops
    # heartbeating until the controller has convicted it (a data-path workaround).
    restart_policy: str = "wait"
    # Heartbeats carry the node's incarnation (bumped by every restart), so the controller
    # sees a quick restart at once; False leaves it to silence and reported positions.
    incarnations: bool = True
    # Break the data path on purpose, to show the checker catches it: "commit_without_acks"
    # (asynchronous replication: a primary commits what it appends) or "no_fencing" (nodes
    # accept appends from older epochs).
    mutation: str | None = None
    trace_tail: int = 60

    @property
    def lease_ttl(self) -> float:
        return self.hard_timeout

    @property
    def availability_bound(self) -> float:
        return self.lease_ttl + self.hold_down + self.max_lag + 1.5

    @property
    def heal_bound(self) -> float:
        return self.availability_bound + self.hold_down + 1.0

    @property
    def durable(self) -> bool:
        """Whether acknowledged writes must survive (failures within tolerance, or no memory lost)."""
        return self.mode in ("tolerant", "nocrash")


class Rec(NamedTuple):
    """A partition record as stored by the controller (decoded)."""

    epoch: int
    primary: str | None
    in_sync: frozenset
    pending: frozenset
    replicas: tuple
    members: frozenset          # in_sync | pending: whose acknowledgements a commit needs


def decode_record(value: bytes) -> Rec:
    d = json.loads(value)
    in_sync, pending = frozenset(d["in_sync"]), frozenset(d.get("pending", ()))
    return Rec(int(d["epoch"]), d["primary"], in_sync, pending, tuple(d["replicas"]), in_sync | pending)


class _ObservedStore:
    """The shared MemoryStore as one controller sees it: every successful write of a
    partition record is reported to the simulation (to be checked), and the controller can
    be armed to die just before or after a chosen write."""

    def __init__(self, store: MemoryStore, sim: Sim):
        self._store = store
        self._sim = sim
        self.crash_when = None          # predicate(key, value) -> True to crash at that write
        self.crash_after = False        # crash after the write took effect (else before)

    def get(self, key):
        return self._store.get(key)

    def items(self, prefix=""):
        return self._store.items(prefix)

    @property
    def revision(self):
        return self._store.revision

    def put(self, key, value, *, expect=None, lease=None):
        crash = self.crash_when is not None and self.crash_when(key, value)
        if crash and not self.crash_after:
            raise ControllerCrash(f"killed before writing {key}")
        revision = self._store.put(key, value, expect=expect, lease=lease)
        if revision is not None and key.startswith(_PART_KEY):
            self._sim._observe_record(int(key[len(_PART_KEY):]), revision, value)
        if crash:
            raise ControllerCrash(f"killed after writing {key}")
        return revision

    def delete(self, key, *, expect=None):
        return self._store.delete(key, expect=expect)

    def grant_lease(self, ttl):
        return self._store.grant_lease(ttl)

    def keep_alive(self, lease):
        return self._store.keep_alive(lease)

    def revoke(self, lease):
        return self._store.revoke(lease)


class Replica:
    """One node's state for one partition (all of it lost in a crash)."""

    __slots__ = ("log", "fence", "commit", "boot_epoch", "rev", "rec", "leading", "match", "next",
                 "sent", "peer_inc", "synced", "matched", "refused")

    def __init__(self):
        self.log: list = []         # [(epoch, value)]; seq s is log[s - 1]
        self.fence = 0              # highest epoch seen: anything older is refused
        self.commit = 0             # highest seq known committed
        self.boot_epoch = None      # after a restart: epoch of the first record read (never led)
        self.rev = 0                # store revision of the newest record read
        self.rec: Rec | None = None
        self.leading = 0            # the epoch this node leads in (0: not the primary)
        self.match: dict = {}       # primary: peer -> highest seq it acknowledged (this epoch)
        self.next: dict = {}        # primary: peer -> next seq to send
        self.sent: dict = {}        # primary: peer -> (time, up to seq) of the last send
        self.peer_inc: dict = {}    # primary: peer -> newest incarnation heard from
        self.synced = 0             # backup: epoch of the primary our log last matched
        self.matched = 0            # ... up to this seq
        self.refused = False        # traced the refusal to lead after a restart


class Node:
    __slots__ = ("name", "alive", "paused", "inc", "read_once", "parts", "held", "gen", "next_hb",
                 "next_read", "silent")

    def __init__(self, name: str, partitions):
        self.name = name
        self.alive = True
        self.paused = False
        self.inc = 0                # incarnation: bumped by every restart
        self.read_once = True       # has read the store since (re)start (the first boot needs none)
        self.parts = {p: Replica() for p in partitions}
        self.held: list = []        # messages queued while paused
        self.gen = 0                # timer generation: a crash or pause voids pending ticks
        self.next_hb = 0.0
        self.next_read = 0.0
        self.silent = False         # restart_policy="silent": withholding heartbeats


@dataclass
class SimResult:
    seed: int
    mode: str
    sim_time: float
    steps: int
    acked: int                      # acknowledged writes (all partitions)
    faults: list                    # (time, description) of every injected fault
    controller_events: dict         # kind -> count
    availability_delay: float | None   # after faults stopped: until every partition committed
    heal_delay: float | None           # ... until every node was healthy
    digest: str                     # sha256 of the whole trace (determinism)
    wall: float = 0.0
    counters: dict = field(default_factory=dict)


class Sim:
    """One seeded run. ``run()`` does the whole life (warm-up, faults, quiet period,
    checks); tests can instead script faults with the ``crash_node`` ... methods between
    ``run_until`` calls and end with ``finish()``."""

    def __init__(self, seed: int, config: SimConfig | None = None):
        cfg = config or SimConfig()
        if cfg.mode not in ("tolerant", "nocrash", "chaos"):
            raise ValueError(f"mode must be tolerant, nocrash or chaos, not {cfg.mode!r}")
        self.seed = seed
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.now = 0.0
        self.steps = 0
        self._queue: list = []
        self._seq = 0
        self._digest = hashlib.sha256()
        self._trace = deque(maxlen=cfg.trace_tail)
        self.faults: list = []
        self.counters = {"messages": 0, "lost": 0, "duplicated": 0, "stale_refusals": 0, "truncated": 0,
                         "takeovers": 0, "refused_to_lead": 0, "writes": 0}
        self.event_counts: dict = {}
        self.events: list = []          # every FailoverEvent of every controller
        self.stale_from: dict = {}      # (sender, p, epoch) -> appends refused as stale
        self._hooks: list = []          # (predicate(event), action) run once, after the event

        names = [f"n{i}" for i in range(cfg.nodes)]
        self.ring = HashRing(names)
        self.store = MemoryStore(clock=self._clock)
        # What the checker knows: the newest record per partition (and its revision), the
        # primary each (partition, epoch) was given, who led each (partition, epoch).
        self.records: dict = {}                 # p -> (revision, Rec)
        self.epoch_primary: dict = {}           # (p, epoch) -> node or None
        self.acting: dict = {}                  # (p, epoch) -> (node, incarnation)
        self.top_acting: dict = {}              # p -> highest epoch anyone has led in
        self.acked: dict = {}                   # p -> [(epoch, value)] for seq 1..K
        self.acked_epoch: dict = {}             # p -> [epoch of the primary that committed seq]
        self.submitted: dict = {}               # value -> submit time
        self._decoded: dict = {}                # value bytes -> Rec

        # Network chaos, drawn once per seed.
        rng = self.rng
        self.chaos = cfg.message_chaos
        self.loss = rng.uniform(0.0, 0.03)
        self.dup = rng.uniform(0.0, 0.02)
        self.spike = rng.uniform(0.0, 0.03)
        self.spike_max = rng.uniform(0.05, 0.4)
        self.cut: set = set()                   # blocked (src, dst) pairs
        self._fifo: dict = {}                   # (src, dst) -> last delivery time (ordered channels)
        self.slow: dict = {}                    # (src, dst) -> extra delay (a congested link)

        # Placement: the ring's preference list of "partition-<p>" (as the controller's).
        snap = self.ring.snapshot()
        self.partitions = list(range(cfg.partitions))
        self.replicas = [tuple(snap.get_nodes(f"partition-{p}", cfg.replication_factor)) for p in self.partitions]
        for p in self.partitions:
            self.acked[p] = []
            self.acked_epoch[p] = []
        self.nodes = {}
        for name in names:
            mine = [p for p in self.partitions if name in self.replicas[p]]
            self.nodes[name] = Node(name, mine)

        self.ctl: FailoverController | None = None
        self.ctl_store: _ObservedStore | None = None
        self.ctl_paused = False
        self.ctl_held: list = []
        self.ctl_arm = None                     # (predicate, after, restart delay) for the next controller
        self._start_controller()
        if [self.ctl.partition(p).replicas for p in self.partitions] != self.replicas:
            raise AssertionError("the controller places partitions differently from the ring's preference lists")
        self.routes = {p: None for p in self.partitions}
        self.route_refresh = 0.0
        self.write_turn = 0
        self.next_value = 1

        # Fault bookkeeping.
        self.fault_end = 0.0                    # end of the latest fault (any kind)
        self.active_faults = 0                  # faults started and not yet ended
        self.node_faults = 0                    # ... of them, faults of nodes or links
        self.next_fault_at = cfg.warmup
        self.next_ctl_fault_at = cfg.warmup + rng.uniform(2.0, 8.0)
        self.healthy_since = None               # tolerant: everyone healthy since
        self.quiet_since = None                 # T: when faults stopped
        self.live_at: dict = {}                 # p -> first commit of a write submitted after T
        self.healed_at = None
        self.finished = False

        for i, node in enumerate(self.nodes.values()):
            self._schedule(rng.uniform(0.0, 0.02), self._node_tick, node, node.gen)
        self._schedule(cfg.tick_interval, self._ctl_tick)
        self._schedule(0.05, self._client_tick)
        if cfg.random_faults:
            self._schedule(cfg.warmup, self._fault_loop)

    # --- the event loop ---------------------------------------------------------------------
    def _clock(self) -> float:
        return self.now

    def _schedule(self, delay: float, fn, *args) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, fn, args))

    def run_until(self, t: float) -> None:
        """Run every action due up to simulated time ``t``."""
        q = self._queue
        while q and q[0][0] <= t:
            when, _, fn, args = heapq.heappop(q)
            self.now = when
            self.steps += 1
            fn(*args)
        self.now = max(self.now, t)

    def run(self) -> SimResult:
        """Warm up, inject faults for ``duration``, then run quiet and check liveness."""
        start = time.perf_counter()
        self.run_until(self.cfg.duration)
        result = self.finish()                  # waits for the faults under way to end
        result.wall = time.perf_counter() - start
        return result

    def finish(self) -> SimResult:
        """Stop injecting faults (the network turns quiet; faults under way end as
        scheduled), run the quiet period and check liveness and the final logs."""
        cfg = self.cfg
        self.finished = True
        self.cut.clear()
        self.slow.clear()
        self.chaos = False
        self.ctl_arm = None                     # an armed controller crash is a fault too
        if self.ctl_store is not None:
            self.ctl_store.crash_when = None
        while self.active_faults or self.ctl is None or self.ctl_paused:
            self.run_until(self.now + 0.05)
        t0 = self.now
        self.quiet_since = t0
        self._note("quiet: faults stopped")
        while self.now < t0 + cfg.availability_bound:
            self.run_until(min(self.now + 0.1, t0 + cfg.availability_bound))
            if self.healed_at is None and self._unhealthy() == []:
                self.healed_at = self.now
        live = cfg.mode != "chaos"
        if live:
            missing = [p for p in self.partitions if p not in self.live_at]
            if missing:
                self._liveness_violation(f"partitions {missing} committed no new write within availability_bound="
                                         f"{cfg.availability_bound} s of the end of the faults")
        end = t0 + cfg.heal_bound
        while self.now < end and self.healed_at is None:
            self.run_until(self.now + 0.1)
            if self._unhealthy() == []:
                self.healed_at = self.now
        if live and self.healed_at is None:
            self._liveness_violation(f"not healthy within heal_bound={cfg.heal_bound} s of the end of the faults: "
                                     f"{self._unhealthy()}")
        self.run_until(end + 0.5)
        if cfg.durable:
            for p in self.partitions:               # the final word: each primary holds every ack
                rev, rec = self.records[p]
                node = self.nodes[rec.primary] if rec.primary else None
                if node is None or node.parts[p].log[:len(self.acked[p])] != self.acked[p]:
                    self._violation(f"p{p}: final primary {rec.primary} lacks acknowledged writes")
        avail = max(self.live_at.values()) - t0 if len(self.live_at) == len(self.partitions) else None
        return SimResult(self.seed, cfg.mode, self.now, self.steps, sum(len(a) for a in self.acked.values()),
                         self.faults, dict(sorted(self.event_counts.items())), avail,
                         None if self.healed_at is None else self.healed_at - t0, self._digest.hexdigest(),
                         counters=dict(self.counters))

    # --- tracing and violations ----------------------------------------------------------------
    def _note(self, text: str) -> None:
        line = f"t={self.now:.4f} {text}"
        self._trace.append(line)
        self._digest.update(line.encode())
        self._digest.update(b"\n")

    def _violation(self, what: str, kind: str = "safety", code: str | None = None):
        self._note(f"VIOLATION: {what}")
        raise Violation(self.seed, self.cfg.mode, self.now, what, list(self._trace), kind, code)

    def _liveness_violation(self, what: str):
        """A liveness failure, with the code of the first stuck pattern recognised."""
        code = None
        for p in self.partitions:
            rev, rec = self.records[p]
            acked = self.acked[p]
            if rec.primary is not None:
                r = self.nodes[rec.primary].parts[p]
                if self.nodes[rec.primary].alive and r.refused and r.leading != rec.epoch:
                    code = "restarted-primary-not-replaced"
                    break
            else:
                holders = [n for n in rec.replicas if self.nodes[n].parts[p].log[:len(acked)] == acked]
                if holders and not set(holders) & rec.in_sync:
                    code = "unavailable-with-data-elsewhere"
                    break
        self._violation(what, kind="liveness", code=code)

    @property
    def trace(self) -> list:
        """The last ``trace_tail`` trace lines."""
        return list(self._trace)

    @property
    def digest(self) -> str:
        """sha256 of every trace line so far (two runs of a seed must agree)."""
        return self._digest.hexdigest()

    # --- the network ------------------------------------------------------------------------------
    def _delay(self) -> float:
        rng = self.rng
        d = rng.uniform(0.0005, 0.003)
        if self.chaos and rng.random() < self.spike:
            d += rng.uniform(0.005, self.spike_max)         # a delay spike: reorders too
        return d

    def send(self, src: str, dst: str, msg: tuple) -> None:
        self.counters["messages"] += 1
        if (src, dst) in self.cut:
            return
        if self.chaos and self.rng.random() < self.loss:
            self.counters["lost"] += 1
            return
        delay = self._delay()
        if self.slow:
            delay += self.slow.get((src, dst), 0.0)
        if src == CTL or dst == CTL:
            # Node <-> controller/store traffic runs over one connection each way (TCP,
            # gRPC, etcd's client): in order. Replication between nodes is not.
            at = max(self.now + delay, self._fifo.get((src, dst), 0.0))
            self._fifo[src, dst] = at
            delay = at - self.now
        self._schedule(delay, self._deliver, src, dst, msg)
        if self.chaos and self.rng.random() < self.dup and src != CTL and dst != CTL:
            self.counters["duplicated"] += 1
            self._schedule(self._delay(), self._deliver, src, dst, msg)

    def _deliver(self, src: str, dst: str, msg: tuple) -> None:
        if (src, dst) in self.cut:
            return                                          # cut while in flight
        if dst == CTL:
            self._ctl_receive(src, msg)
            return
        node = self.nodes[dst]
        if not node.alive:
            return
        if node.paused:
            node.held.append((src, msg))
            return
        self._handle(node, src, msg)

    def _handle(self, node: Node, src: str, msg: tuple) -> None:
        kind = msg[0]
        if kind == "A":
            self._on_append(node, *msg[1:])
        elif kind == "R":
            self._on_reply(node, *msg[1:])
        elif kind == "S":
            self._on_snapshot(node, msg[1], msg[2])
        elif kind == "W":
            self._on_write(node, msg[1], msg[2])

    # --- the controller host ----------------------------------------------------------------------
    def _start_controller(self) -> None:
        cfg = self.cfg
        self.ctl_store = _ObservedStore(self.store, self)
        ctl = FailoverController(self.ring, cfg.replication_factor, cfg.min_in_sync, partitions=cfg.partitions,
                                 detector=PhiAccrual(threshold=8), clock=self._clock, store=self.ctl_store,
                                 hard_timeout=cfg.hard_timeout, hold_down=cfg.hold_down, max_lag=cfg.max_lag,
                                 tick_interval=cfg.tick_interval, fail_back=cfg.fail_back,
                                 require_config=True, prefix=PREFIX)   # this data path reports configs
        ctl.on_event(self._on_ctl_event)
        self.ctl = ctl
        self.ctl_paused = False
        self._note(f"controller started ({'active' if ctl.status(self.now).active else 'standby'})")
        if self.ctl_arm is not None:
            self.ctl_store.crash_when, self.ctl_store.crash_after, _ = self.ctl_arm

    def _on_ctl_event(self, event) -> None:
        self.events.append(event)
        self.event_counts[event.kind] = self.event_counts.get(event.kind, 0) + 1
        for hook in list(self._hooks):
            if hook[0](event):
                self._hooks.remove(hook)
                self._schedule(0.0, hook[1])                # right after the controller's call
        if event.kind in ("node_suspect", "node_up", "node_trusted"):
            return
        where = "" if event.partition is None else f" p{event.partition} e{event.epoch}"
        who = "" if event.node is None else f" {event.node}"
        self._note(f"ctl {event.kind}{who}{where}: {event.reason}")

    def _ctl_heartbeat(self, ctl, src: str, msg: tuple) -> None:
        incarnation = msg[3] if self.cfg.incarnations else None
        self._ctl_call(lambda: ctl.heartbeat(src, msg[2], self.now, incarnation=incarnation))

    def _ctl_call(self, fn, *args) -> None:
        try:
            fn(*args)
        except ControllerCrash as exc:
            delay = self.ctl_arm[2] if self.ctl_arm is not None else 1.0
            self.ctl_arm = None
            self._kill_controller(f"mid-write ({exc})", delay)

    def _kill_controller(self, why: str, restart_after: float) -> None:
        self.ctl = None
        self.ctl_store = None
        self.ctl_paused = False
        self.ctl_held = []
        self.active_faults += 1
        self._note(f"FAULT controller crashed {why}; restarts in {restart_after:.3f} s")
        self._schedule(restart_after, self._restart_controller)

    def _restart_controller(self) -> None:
        self._start_controller()
        self._end_fault()

    def _ctl_tick(self) -> None:
        self._schedule(self.cfg.tick_interval, self._ctl_tick)
        if self.ctl is not None and not self.ctl_paused:
            self._ctl_call(self.ctl.tick, self.now)

    def _ctl_receive(self, src: str, msg: tuple) -> None:
        kind = msg[0]
        if kind == "Q":                                     # a store read: the store answers
            self.send(CTL, src, ("S", self._snapshot(), msg[2]))
        elif kind == "H":
            if self.ctl is None:
                return
            if self.ctl_paused:
                self.ctl_held.append((src, msg))
                return
            self._ctl_heartbeat(self.ctl, src, msg)

    def _snapshot(self) -> tuple:
        """Every partition record as (p, revision, Rec), read from the store now."""
        out = []
        for key, entry in self.store.items(_PART_KEY):
            rec = self._decoded.get(entry.value)
            if rec is None:
                rec = self._decoded[entry.value] = decode_record(entry.value)
            out.append((int(key[len(_PART_KEY):]), entry.revision, rec))
        return tuple(out)

    def _observe_record(self, p: int, revision: int, value: bytes) -> None:
        """Check every record the controller writes (invariants 1 and 2)."""
        rec = self._decoded.get(value)
        if rec is None:
            rec = self._decoded[value] = decode_record(value)
        old = self.records.get(p)
        self.records[p] = (revision, rec)
        self._note(f"store p{p} rev {revision}: epoch {rec.epoch} primary {rec.primary} "
                   f"in_sync {sorted(rec.in_sync)} pending {sorted(rec.pending)}")
        if old is not None and rec.epoch < old[1].epoch:
            self._violation(f"p{p}: record epoch went back from {old[1].epoch} to {rec.epoch}")
        named = self.epoch_primary.setdefault((p, rec.epoch), rec.primary)
        if named != rec.primary:
            self._violation(f"p{p}: the store names {named} and then {rec.primary} primary of epoch {rec.epoch}")
        if rec.primary is not None and rec.primary not in rec.in_sync:
            self._violation(f"p{p}: primary {rec.primary} is not in its own in-sync set {sorted(rec.in_sync)}")
        if not rec.pending <= rec.in_sync or not rec.in_sync <= set(rec.replicas):
            self._violation(f"p{p}: malformed record {rec}")
        if self.cfg.durable and rec.primary is not None and (old is None or rec.epoch > old[1].epoch):
            # A new primary is named: if it is alive (it kept, or has rebuilt, its log), it
            # must already hold every acknowledged write; anything it lacks would be lost.
            node = self.nodes[rec.primary]
            acked = self.acked[p]
            log = node.parts[p].log
            if node.alive and log[:len(acked)] != acked:
                seq = next(i + 1 for i, e in enumerate(acked) if i >= len(log) or log[i] != e)
                # A fail-back keeps the old primary in the in-sync set; a failover drops it.
                kind = "fail_back" if old is not None and old[1].primary in rec.in_sync else "failover"
                self._violation(f"p{p} e{rec.epoch}: {kind} names {rec.primary} primary, which lacks "
                                f"acknowledged seq {seq} {acked[seq - 1]} (its log has {len(log)} entries)",
                                code=f"{kind}-lacks-acks")

    # --- nodes: timers ------------------------------------------------------------------------------
    def _node_tick(self, node: Node, gen: int) -> None:
        if gen != node.gen:
            return                                          # voided by a crash or a pause
        cfg = self.cfg
        now = self.now
        if now >= node.next_read:
            node.next_read = now + cfg.read_interval
            self.send(node.name, CTL, ("Q", node.name, node.inc))
        if now >= node.next_hb and not node.silent:
            node.next_hb = now + cfg.heartbeat_interval
            self.send(node.name, CTL, ("H", node.name, self._positions(node), node.inc))
        for p, r in node.parts.items():
            if r.leading:
                self._replicate(node, p, r)
        self._schedule(self.rng.uniform(*cfg.node_tick), self._node_tick, node, gen)

    def _positions(self, node: Node) -> dict:
        """What ``node`` reports: a primary its tail, commit and the record revision it
        applies; a backup the highest seq it knows to match the current primary's log."""
        out = {}
        for p, r in node.parts.items():
            if r.fence == 0:
                continue                                    # knows nothing yet
            if r.leading:
                out[p] = Position(r.leading, len(r.log), r.commit, r.rev)
                continue
            if r.synced == r.fence:
                seq = max(r.matched, r.commit)              # synced by this epoch's primary
            elif r.rec is not None and r.rec.epoch == r.fence and r.rec.primary is None:
                seq = r.matched                             # no primary: as of the last one we followed
            else:
                seq = r.commit                              # a new primary has not synced us yet
            out[p] = Position(r.fence, min(seq, len(r.log)))
        return out

    def _replicate(self, node: Node, p: int, r: Replica) -> None:
        cfg = self.cfg
        now = self.now
        log = r.log
        n = len(log)
        for peer in self.replicas[p]:
            if peer == node.name:
                continue
            nxt = r.next[peer]
            last, upto = r.sent[peer]
            behind = nxt <= n
            if behind and (upto < n or now - last >= cfg.resend) or now - last >= cfg.keepalive:
                prev = nxt - 1
                entries = tuple(log[prev:prev + cfg.batch])
                r.sent[peer] = (now, prev + len(entries))
                self.send(node.name, peer, ("A", p, r.leading, prev, log[prev - 1][0] if prev else 0, entries,
                                            r.commit, node.name, node.inc))

    # --- nodes: records ---------------------------------------------------------------------------------
    def _on_snapshot(self, node: Node, records: tuple, inc: int) -> None:
        if inc != node.inc:
            return                                          # answers a previous incarnation
        first = not node.read_once
        node.read_once = True
        for p, rev, rec in records:
            r = node.parts.get(p)
            if r is None:
                continue
            if first and r.boot_epoch is None:
                r.boot_epoch = rec.epoch
            if rev > r.rev:
                self._apply_record(node, p, r, rev, rec)
        if node.silent and not any(r.rec is not None and r.rec.primary == node.name and r.boot_epoch is not None
                                   and r.rec.epoch <= r.boot_epoch for r in node.parts.values()):
            node.silent = False                             # replaced everywhere: speak again
            self._note(f"{node.name} heartbeats again")

    def _apply_record(self, node: Node, p: int, r: Replica, rev: int, rec: Rec) -> None:
        r.rev = rev
        r.rec = rec
        if rec.epoch > r.fence:
            self._raise_fence(node, p, r, rec.epoch)
        if rec.epoch < r.fence:
            return
        if r.leading == rec.epoch:
            self._advance_commit(node, p, r)                # a new in-sync set to apply
        elif rec.primary == node.name and not r.leading:
            if r.boot_epoch is not None and rec.epoch <= r.boot_epoch:
                # Restarted: this epoch may hold entries we lost. Lead only a later one.
                if not r.refused:
                    r.refused = True
                    self.counters["refused_to_lead"] += 1
                    self._note(f"{node.name} (restarted) refuses to lead p{p} e{rec.epoch}")
                    if self.cfg.restart_policy == "silent" and not node.silent:
                        node.silent = True
                        self._note(f"{node.name} stops heartbeating until replaced")
                return
            self._take_over(node, p, r, rec.epoch)

    def _raise_fence(self, node: Node, p: int, r: Replica, epoch: int) -> None:
        if epoch < r.fence:
            self._violation(f"{node.name} p{p}: fence would go back from {r.fence} to {epoch}")
        r.fence = epoch
        if r.leading and r.leading < epoch:
            self._note(f"{node.name} steps down from p{p} e{r.leading} (saw epoch {epoch})")
            r.synced, r.matched = r.leading, len(r.log)     # its own log was the reference
            r.leading = 0
            r.match, r.next, r.sent, r.peer_inc = {}, {}, {}, {}

    def _take_over(self, node: Node, p: int, r: Replica, epoch: int) -> None:
        me = (node.name, node.inc)
        other = self.acting.setdefault((p, epoch), me)
        if other != me:
            self._violation(f"p{p} e{epoch}: {node.name}#{node.inc} leads, but {other[0]}#{other[1]} already did")
        self.top_acting[p] = max(self.top_acting.get(p, 0), epoch)
        acked = self.acked[p]
        if self.cfg.durable and r.log[:len(acked)] != acked:
            seq = next((i + 1 for i, e in enumerate(acked) if i >= len(r.log) or r.log[i] != e), None)
            self._violation(f"{node.name} takes over p{p} e{epoch} without acknowledged seq {seq} "
                            f"{acked[seq - 1]} (its log has {len(r.log)} entries)")
        r.leading = epoch
        n = len(r.log)
        peers = [x for x in self.replicas[p] if x != node.name]
        r.match = {x: 0 for x in peers}
        r.next = {x: n + 1 for x in peers}
        r.sent = {x: (-_INF, 0) for x in peers}
        r.peer_inc = {}
        self.counters["takeovers"] += 1
        self._note(f"{node.name}#{node.inc} leads p{p} e{epoch} (log {n}, commit {r.commit})")
        self._advance_commit(node, p, r)

    # --- nodes: replication --------------------------------------------------------------------------------
    def _on_write(self, node: Node, p: int, value: int) -> None:
        r = node.parts.get(p)
        if r is None or not r.leading:
            return                          # not the primary (a real node would redirect)
        r.log.append((r.leading, value))

    def _on_append(self, node, p, epoch, prev, prev_epoch, entries, leader_commit, src, src_inc) -> None:
        r = node.parts.get(p)
        if r is None or not node.read_once:
            return                          # restarted and not yet told the epoch: accept nothing
        if epoch < r.fence and self.cfg.mutation != "no_fencing":
            self.counters["stale_refusals"] += 1
            key = (src, p, epoch)
            self.stale_from[key] = self.stale_from.get(key, 0) + 1
            self.send(node.name, src, ("R", p, epoch, "stale", r.fence, node.name, node.inc))
            return
        if epoch > r.fence:
            self._raise_fence(node, p, r, epoch)
        if r.leading and r.leading == epoch:
            self._violation(f"p{p} e{epoch}: {node.name} leads and receives appends from {src}")
        log = r.log
        if prev > len(log):
            self.send(node.name, src, ("R", p, epoch, "mismatch", len(log), node.name, node.inc))
            return
        if prev and log[prev - 1][0] != prev_epoch:
            # Conflict: back up past every entry of the conflicting epoch (Raft's hint).
            bad = log[prev - 1][0]
            i = prev - 1
            while i > 0 and log[i - 1][0] == bad:
                i -= 1
            self.send(node.name, src, ("R", p, epoch, "mismatch", i, node.name, node.inc))
            return
        seq = prev
        for entry in entries:
            seq += 1
            if seq <= len(log):
                old = log[seq - 1]
                if old[0] == entry[0]:
                    if old != entry:
                        self._violation(f"p{p} seq {seq}: two entries of epoch {entry[0]}: {old} and {entry}")
                    continue
                self._truncate(node, p, r, seq - 1, f"conflict with {src}'s e{epoch}")
            log.append(entry)
        end = prev + len(entries)
        if r.synced != epoch:
            r.synced, r.matched = epoch, end
        elif end > r.matched:
            r.matched = end
        commit = min(leader_commit, end)
        if commit > r.commit:
            r.commit = commit
        self.send(node.name, src, ("R", p, epoch, "ok", end, node.name, node.inc))

    def _truncate(self, node: Node, p: int, r: Replica, keep: int, why: str) -> None:
        log = r.log
        if r.leading:
            self._violation(f"{node.name}, leading p{p} e{r.leading}, would truncate its own log ({why})")
        if self.cfg.durable:
            acked = self.acked[p]
            for seq in range(keep + 1, min(len(log), len(acked)) + 1):
                if log[seq - 1] == acked[seq - 1]:
                    self._violation(f"{node.name} drops acknowledged p{p} seq {seq} {acked[seq - 1]} ({why})")
        self.counters["truncated"] += len(log) - keep
        self._note(f"{node.name} truncates p{p} to {keep} (drops {len(log) - keep}; {why})")
        del log[keep:]
        r.commit = min(r.commit, keep)
        r.matched = min(r.matched, keep)

    def _on_reply(self, node, p, epoch, kind, value, src, src_inc) -> None:
        r = node.parts.get(p)
        if r is None:
            return
        if kind == "stale":
            if value > r.fence:
                self._raise_fence(node, p, r, value)        # a newer epoch exists: step down
            return
        if r.leading != epoch:
            return
        known = r.peer_inc.get(src, -1)
        if src_inc < known:
            return                                          # from before the peer restarted
        if src_inc > known:
            r.peer_inc[src] = src_inc
            r.match[src] = 0                                # a new incarnation holds nothing we know of
        if kind == "ok":
            if value > r.match[src]:
                r.match[src] = value
            if value + 1 > r.next[src]:
                r.next[src] = value + 1
            self._advance_commit(node, p, r)
        else:                                               # mismatch: back up and resend now
            r.next[src] = max(1, min(r.next[src], value + 1))
            r.sent[src] = (-_INF, 0)

    def _advance_commit(self, node: Node, p: int, r: Replica) -> None:
        """The contract's commit rule: every member of the applied record's in-sync set
        (pending included) has acknowledged, and there are at least min_in_sync of them."""
        rec = r.rec
        members = rec.members
        if node.name not in members or len(members) < self.cfg.min_in_sync:
            return
        c = len(r.log)
        if self.cfg.mutation != "commit_without_acks":
            for m in members:
                if m != node.name:
                    c = min(c, r.match.get(m, 0))
        if c > r.commit:
            self._on_commit(node, p, r, c)

    def _on_commit(self, node: Node, p: int, r: Replica, c: int) -> None:
        """A primary commits up to ``c``: its writes are acknowledged (invariants 3 and 4)."""
        if self.top_acting.get(p, 0) > r.leading:
            # A late commit under an old epoch is fine only if the acknowledgements came
            # before the newer primaries fenced, i.e. each of them already holds the entries.
            for (q, e), (name, inc) in self.acting.items():
                later = self.nodes[name]
                lr = later.parts[p] if q == p and e > r.leading and later.inc == inc else None
                if lr is not None and lr.leading == e and lr.log[r.commit:c] != r.log[r.commit:c]:
                    self._violation(f"{node.name} commits p{p} seq {r.commit + 1}..{c} under stale epoch "
                                    f"{r.leading} that {name}, leading epoch {e}, does not hold")
        acked = self.acked[p]
        by = self.acked_epoch[p]
        log = r.log
        if r.commit > len(acked):
            self._violation(f"{node.name} p{p}: commit {r.commit} is beyond the acknowledged {len(acked)}")
        for seq in range(r.commit + 1, c + 1):
            entry = log[seq - 1]
            if seq <= len(acked):
                if acked[seq - 1] != entry:
                    if self.cfg.durable:
                        self._violation(f"{node.name} commits p{p} seq {seq} = {entry} under e{r.leading}, but "
                                        f"{acked[seq - 1]} was acknowledged there (under e{by[seq - 1]})")
                    acked[seq - 1] = entry          # chaos: data was lost; follow the new history
                    by[seq - 1] = r.leading
            else:
                acked.append(entry)
                by.append(r.leading)
                if self.quiet_since is not None and p not in self.live_at \
                        and self.submitted.get(entry[1], -1.0) >= self.quiet_since:
                    self.live_at[p] = self.now
        r.commit = c

    # --- the client -------------------------------------------------------------------------------------------
    def _client_tick(self) -> None:
        self._schedule(self.cfg.write_interval, self._client_tick)
        rng = self.rng
        if self.now >= self.route_refresh:
            self.route_refresh = self.now + 0.25
            for p, _, rec in self._snapshot():
                self.routes[p] = rec.primary
        p = self.partitions[self.write_turn % len(self.partitions)]
        self.write_turn += 1
        target = self.routes[p]
        if self.chaos and rng.random() < 0.03:
            target = rng.choice(self.replicas[p])           # misrouted (a very stale client)
        if target is not None:
            self.client_write(p, target)

    def client_write(self, p: int, target: str) -> int:
        """Send a new write for partition ``p`` to ``target``; returns its value."""
        value = self.next_value
        self.next_value += 1
        self.submitted[value] = self.now
        self.counters["writes"] += 1
        self.send(CLIENT, target, ("W", p, value))
        return value

    # --- for scripted scenarios ---------------------------------------------------------------------------------
    def record(self, p: int) -> Rec:
        """The newest record of partition ``p`` in the store."""
        return self.records[p][1]

    def led_by(self, name: str) -> list:
        """Partitions whose record names ``name`` primary."""
        return [p for p in self.partitions if self.records[p][1].primary == name]

    def on_event(self, predicate, action) -> None:
        """Run ``action()`` once, right after the first controller event ``predicate`` accepts."""
        self._hooks.append((predicate, action))

    def events_of(self, kind: str, partition=None) -> list:
        return [e for e in self.events if e.kind == kind and (partition is None or e.partition == partition)]

    # --- faults ---------------------------------------------------------------------------------------------------
    def crash_node(self, name: str, restart_after: float) -> None:
        """Kill ``name`` (it loses everything) and restart it after ``restart_after`` s."""
        node = self.nodes[name]
        node.alive = False
        node.gen += 1
        node.held = []
        self.active_faults += 1
        self.node_faults += 1
        self._fault(f"crash {name}, restart in {restart_after:.3f} s")
        self._schedule(restart_after, self._restart_node, node)

    def _restart_node(self, node: Node) -> None:
        node.alive = True
        node.paused = False
        node.silent = False
        node.inc += 1
        node.read_once = False
        node.parts = {p: Replica() for p in node.parts}
        node.gen += 1
        node.next_hb = node.next_read = self.now
        self._note(f"{node.name} restarts as incarnation {node.inc}")
        self._schedule(0.0, self._node_tick, node, node.gen)
        self._end_fault(True)

    def pause_node(self, name: str, duration: float) -> None:
        """Stop ``name`` for ``duration`` s: no timers, messages to it queue."""
        node = self.nodes[name]
        node.paused = True
        node.gen += 1
        self.active_faults += 1
        self.node_faults += 1
        self._fault(f"pause {name} for {duration:.3f} s")
        self._schedule(duration, self._resume_node, node)

    def _resume_node(self, node: Node) -> None:
        node.paused = False
        self._note(f"{node.name} resumes ({len(node.held)} queued messages)")
        held, node.held = node.held, []
        for src, msg in held:                               # what queued, before anything else
            if node.alive and not node.paused:
                self._handle(node, src, msg)
        node.gen += 1
        self._schedule(0.0, self._node_tick, node, node.gen)
        self._end_fault(True)

    def cut_link(self, pairs, duration: float, what: str) -> None:
        """Drop every message on the directed ``pairs`` for ``duration`` s."""
        pairs = [pair for pair in pairs if pair not in self.cut]
        self.cut.update(pairs)
        self.active_faults += 1
        self.node_faults += 1
        self._fault(f"cut {what} for {duration:.3f} s")
        self._schedule(duration, self._heal_cut, pairs, what)

    def _heal_cut(self, pairs, what) -> None:
        self.cut.difference_update(pairs)
        self._note(f"healed cut {what}")
        self._end_fault(True)

    def slow_node(self, name: str, extra: float, duration: float, inbound: bool = True) -> None:
        """Add ``extra`` seconds to every message from the other nodes to ``name`` (or from
        ``name`` to them) for ``duration`` s: a congested link, not a cut."""
        peers = [n for n in self.nodes if n != name]
        pairs = [(x, name) if inbound else (name, x) for x in peers]
        for pair in pairs:
            self.slow[pair] = extra
        self.active_faults += 1
        self.node_faults += 1
        self._fault(f"slow {'into' if inbound else 'out of'} {name} by {extra:.3f} s for {duration:.3f} s")
        self._schedule(duration, self._heal_slow, pairs, name)

    def _heal_slow(self, pairs, name) -> None:
        for pair in pairs:
            self.slow.pop(pair, None)
        self._note(f"healed slow links of {name}")
        self._end_fault(True)

    def cut_node(self, name: str, duration: float, how: str = "all") -> None:
        """Cut ``name`` off: ``all`` (from everyone), ``ctl`` (from the controller and store
        only), ``to_ctl`` / ``from_ctl`` / ``to_peers`` / ``from_peers`` (one direction)."""
        peers = [n for n in self.nodes if n != name]
        pairs = {
            "all": [(name, x) for x in peers + [CTL]] + [(x, name) for x in peers + [CTL]],
            "ctl": [(name, CTL), (CTL, name)],
            "to_ctl": [(name, CTL)],
            "from_ctl": [(CTL, name)],
            "to_peers": [(name, x) for x in peers],
            "from_peers": [(x, name) for x in peers],
        }[how]
        self.cut_link(pairs, duration, f"{name} {how}")

    def split(self, group, duration: float) -> None:
        """Partition the nodes in ``group`` from the rest and from the controller."""
        group = sorted(group)
        rest = [n for n in self.nodes if n not in group] + [CTL]
        pairs = [(a, b) for a in group for b in rest] + [(b, a) for a in group for b in rest]
        self.cut_link(pairs, duration, f"split {group}")

    def crash_controller(self, restart_after: float) -> None:
        """Kill the controller now; a new one starts on the same store ``restart_after`` s later."""
        if self.ctl is None:
            return
        self._kill_controller("now", restart_after)

    def arm_controller_crash(self, restart_after: float, *, after: bool, nth: int = 1, partition=None,
                             epoch_change: bool = False) -> None:
        """Kill the controller at its ``nth`` next write of a partition record (of
        ``partition`` only, if given; one that changes the epoch only, if ``epoch_change``),
        just before it or just after it took effect."""
        count = [0]

        def predicate(key, value):
            if not key.startswith(_PART_KEY):
                return False
            p = int(key[len(_PART_KEY):])
            if partition is not None and p != partition:
                return False
            if epoch_change and p in self.records and decode_record(value).epoch == self.records[p][1].epoch:
                return False
            count[0] += 1
            return count[0] == nth

        self.ctl_arm = (predicate, after, restart_after)
        if self.ctl_store is not None:
            self.ctl_store.crash_when, self.ctl_store.crash_after = predicate, after
        self._note(f"armed: controller dies {'after' if after else 'before'} write #{nth}"
                   f"{'' if partition is None else f' of p{partition}'}{' (epoch change)' if epoch_change else ''}")

    def pause_controller(self, duration: float) -> None:
        """Stop the controller for ``duration`` s (its heartbeats queue)."""
        if self.ctl is None or self.ctl_paused:
            return
        self.ctl_paused = True
        self.active_faults += 1
        self._fault(f"pause controller for {duration:.3f} s")
        self._schedule(duration, self._resume_controller, self.ctl)

    def _resume_controller(self, ctl) -> None:
        if ctl is not self.ctl:
            self._end_fault()
            return
        self.ctl_paused = False
        self._note(f"controller resumes ({len(self.ctl_held)} queued heartbeats)")
        held, self.ctl_held = self.ctl_held, []
        for src, msg in held:
            if self.ctl is ctl:
                self._ctl_heartbeat(ctl, src, msg)
        if self.ctl is ctl:
            self._ctl_call(ctl.tick, self.now)
        self._end_fault()

    def _fault(self, text: str) -> None:
        self.faults.append((round(self.now, 6), text))
        self._note(f"FAULT {text}")

    def _end_fault(self, node_fault: bool = False) -> None:
        self.active_faults -= 1
        self.node_faults -= node_fault
        self.fault_end = self.now

    def _unhealthy(self) -> list:
        """Nodes that are not healthy, with why (empty: everyone is)."""
        bad = []
        cut_nodes = {a for a, _ in self.cut} | {b for _, b in self.cut}
        for name, node in self.nodes.items():
            if not node.alive or node.paused or name in cut_nodes or not node.read_once:
                bad.append((name, "down, paused or cut off"))
                continue
            for p, r in node.parts.items():
                rev, rec = self.records[p]
                if rec.primary is None:
                    bad.append((name, f"p{p} has no primary"))
                    break
                if name not in rec.in_sync:
                    bad.append((name, f"not in p{p}'s in-sync set"))
                    break
                lead = self.nodes[rec.primary].parts[p]
                if lead.leading != rec.epoch or lead.rev < rev:
                    bad.append((name, f"p{p}'s primary {rec.primary} does not apply revision {rev} yet"))
                    break
                acked = self.acked[p]
                if r.log[:len(acked)] != acked:
                    bad.append((name, f"lacks acknowledged writes of p{p}"))
                    break
        return bad

    def _fault_loop(self) -> None:
        """Inject the seeded fault schedule until ``duration``."""
        cfg = self.cfg
        rng = self.rng
        if self.finished or self.now >= cfg.duration:
            return
        self._schedule(0.05, self._fault_loop)
        if cfg.controller_faults and self.now >= self.next_ctl_fault_at and self.ctl is not None \
                and not self.ctl_paused:
            self.next_ctl_fault_at = self.now + rng.uniform(3.0, 10.0)
            if rng.random() < 0.6:
                self.crash_controller(rng.uniform(0.05, 2.5 * cfg.lease_ttl))
            else:
                self.pause_controller(rng.uniform(0.3, 3.0))
        if cfg.mode == "tolerant":
            # One faulty node at a time: the next fault waits for everyone to be healthy.
            if self.node_faults:
                return
            if self._unhealthy():
                self.healthy_since = None
                if self.now - self.fault_end > cfg.heal_bound and self.active_faults == 0:
                    self._liveness_violation(f"not healthy {cfg.heal_bound} s after the last fault ended: "
                                             f"{self._unhealthy()}")
                return
            if self.healthy_since is None:
                self.healthy_since = self.now
                if self.active_faults == 0:
                    took = self.now - self.fault_end
                    self.counters["max_heal_s"] = max(self.counters.get("max_heal_s", 0.0), round(took, 3))
            # Healthy for a few heartbeats, so that the controller has heard the primary
            # confirm the records that re-added the others.
            if self.now < self.next_fault_at or self.now - self.healthy_since < 3 * cfg.heartbeat_interval:
                return
            self.next_fault_at = self.now + rng.uniform(0.2, 1.5)
        elif self.now < self.next_fault_at:
            return
        else:
            self.next_fault_at = self.now + rng.uniform(0.3, 2.5)
        self._random_node_fault()

    def _random_node_fault(self) -> None:
        cfg = self.cfg
        rng = self.rng
        leaders = sorted({rec.primary for _, rec in self.records.values() if rec.primary})
        name = rng.choice(leaders) if leaders and rng.random() < 0.6 else rng.choice(sorted(self.nodes))
        node = self.nodes[name]
        if not node.alive or node.paused:
            return
        kinds = ["crash", "pause", "cut", "slow"] if cfg.mode != "nocrash" else ["pause", "cut", "slow"]
        kind = rng.choice(kinds)
        if cfg.mode == "chaos" and rng.random() < 0.2:
            group = rng.sample(sorted(self.nodes), rng.choice([2, 2, 3]))
            self.split(group, rng.uniform(0.5, 4.0))
            return
        if kind == "crash":
            if cfg.fast_restart and rng.random() < 0.5:
                delay = rng.uniform(0.1, cfg.hard_timeout)  # may beat the conviction
            else:
                delay = cfg.hard_timeout + rng.uniform(0.5, 3.0)
            self.crash_node(name, delay)
            if rng.random() < 0.3:                          # and comes back over a congested link
                self._schedule(delay, self.slow_node, name, rng.uniform(0.05, 0.6), rng.uniform(1.0, 4.0))
        elif kind == "slow":
            self.slow_node(name, rng.uniform(0.05, 0.8), rng.uniform(1.0, 4.0), inbound=rng.random() < 0.7)
        elif kind == "pause":
            long = rng.random() < 0.7
            self.pause_node(name, cfg.hard_timeout + rng.uniform(0.2, 2.0) if long else rng.uniform(0.2, 1.5))
        else:
            how = rng.choice(["all", "all", "ctl", "to_ctl", "from_ctl", "to_peers", "from_peers"])
            self.cut_node(name, rng.uniform(0.5, 4.0), how)
        if cfg.controller_faults and self.ctl is not None and self.ctl_arm is None and rng.random() < 0.25:
            # Mid-failover: the controller dies at one of its next record writes.
            self.arm_controller_crash(rng.uniform(0.05, 2.5 * cfg.lease_ttl), after=rng.random() < 0.5,
                                      nth=rng.choice([1, 1, 2, 3]), epoch_change=rng.random() < 0.5)


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    """Run one seed to the end (raises :class:`Violation` on a broken invariant)."""
    return Sim(seed, config).run()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Replay or soak the failover simulation.")
    parser.add_argument("--seed", type=int, help="one seed (replay)")
    parser.add_argument("--seeds", default="0:20", help="a range a:b of seeds (default 0:20)")
    parser.add_argument("--mode", default="tolerant", choices=["tolerant", "nocrash", "chaos"])
    parser.add_argument("--duration", type=float, default=SimConfig.duration)
    parser.add_argument("--fast-restart", action="store_true")
    parser.add_argument("--restart-policy", default="wait", choices=["wait", "silent"])
    parser.add_argument("--no-fail-back", action="store_true")
    parser.add_argument("--trace", action="store_true", help="print the last events of every run")
    args = parser.parse_args(argv)
    cfg = SimConfig(mode=args.mode, duration=args.duration, fast_restart=args.fast_restart,
                    restart_policy=args.restart_policy, fail_back=not args.no_fail_back)
    if args.seed is not None:
        seeds = [args.seed]
    else:
        a, b = (int(x) for x in args.seeds.split(":"))
        seeds = range(a, b)
    failed = 0
    for seed in seeds:
        sim = Sim(seed, cfg)
        try:
            res = sim.run()
        except Violation as exc:
            failed += 1
            print(f"seed {seed}: FAIL\n{exc}\n", flush=True)
            continue
        print(f"seed {seed}: ok  {res.wall:5.2f} s wall, {res.steps} steps, {res.acked} acked, "
              f"{len(res.faults)} faults, failovers {res.controller_events.get('failover', 0)}, "
              f"fail-backs {res.controller_events.get('fail_back', 0)}, available after {res.availability_delay}, "
              f"healthy after {res.heal_delay}", flush=True)
        if args.trace:
            print("  " + "\n  ".join(sim.trace))
    print(f"{failed} of {len(seeds)} seeds failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
