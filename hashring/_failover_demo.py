"""``python -m hashring failover-demo``: failover of real processes over the shared log.

Each run starts three node processes for one partition: the primary creates a
:class:`~hashring.LogBuffer` in shared memory and appends entries, the two backups read
and acknowledge them, and every node heartbeats to the driver (this process) every 100 ms.
The driver runs a :class:`~hashring.FailoverController` with its default thresholds,
ticking it itself. After a warm-up it SIGKILLs the primary; the controller convicts it and
promotes a backup under a new epoch, and that backup takes the buffer over as its writer.
A run reports detection, promotion, the time from the kill to the first committed write
on the new primary, and how many acknowledged entries were lost (must be 0).

With recovery (by default in the last run) the killed node comes back as a backup,
catches up from a snapshot of the primary plus the log, re-enters the in-sync set once
caught up, and takes its partition back by a graceful handover (fail-back). Instead of
a kill, ``--kill backup`` kills a backup, and ``--kill pause`` stops the primary
(SIGSTOP) and resumes it after the failover: convicted while alive, it must let go of the
log before its successor may write.

Protocol (tuples over one ``multiprocessing`` pipe per node). Driver to node: ``write``,
``pause``, ``promote(epoch, revision, in_sync)``, ``step_down(epoch)``,
``follow(epoch)``, ``config(revision, in_sync)``, ``snapshot_request(node)``,
``snapshot(entries)``, ``report(thresholds)``, ``stop``. Node to driver: ``ready``,
``hb(position)``, ``acked(seq, ...)``, ``promoted``, ``first_commit``, ``stepped_down``,
``need_snapshot``, ``snapshot``, ``synced``, ``lagged``, ``fenced``, ``paused``,
``report``, ``error``, ``bye``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import os
import random
import signal
import statistics
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_connections

from . import (BufferFull, FailoverController, HashRing, LogBuffer, NotEnoughInSync,
               Position, ReaderLagged, StaleEpoch, WriterAlive)
from .log import PREFIX, SHM_DIR

NODES = ("node-a", "node-b", "node-c")
CAPACITY = 1 << 20              # bytes of log: 16,384 demo entries (64-byte frames)
TICK = 0.02                     # seconds between controller ticks
STEP = 0.005                    # longest a node waits in one call, so it heartbeats on time
PROMOTE_WAIT = 10.0             # longest a new primary waits for a live old writer to let go
PAUSE_AFTER_FAILOVER = 0.3      # kill="pause": the stopped primary resumes this long after the failover


class DemoError(RuntimeError):
    """A run went wrong: a node failed, a step timed out, or a check did not hold."""


def _payload(epoch: int, seq: int, writer: str) -> bytes:
    return b"%d:%d:%s" % (epoch, seq, writer.encode())


def _payload_seq(data: bytes) -> int:
    try:
        return int(data.split(b":", 2)[1])
    except (IndexError, ValueError):
        return -1


def segment_path(segment: str) -> str:
    """Where a demo segment lives in shared memory."""
    return os.path.join(SHM_DIR, PREFIX + segment)


# ---------------------------------------------------------------------------------------
# A node (runs in its own process)

class _Node:
    """One replica: the primary (the log's writer) or a backup (one of its readers).

    ``state`` is the replica's data: entry ``seq`` is ``state[seq - 1]``. A backup
    applies entries in order and acknowledges them after applying; the primary appends,
    waits for the commit and reports committed seqs to the driver ("acknowledged to the
    client")."""

    def __init__(self, conn, name, segment, heartbeat, batch, pace, epoch):
        self.conn, self.name, self.segment = conn, name, segment
        self.heartbeat, self.batch, self.pace = heartbeat, batch, pace
        self.epoch = epoch
        self.state: list = []
        self.wbuf = None            # writer handle (primary)
        self.buf = self.reader = None   # reader handle and cursor (backup)
        self.writing = False
        self.synced = True          # False while waiting for a snapshot
        self.held: list = []        # entries read while waiting for it
        self.want = None            # newest partition record from the driver: (revision, in_sync)
        self.config = 0             # newest revision whose in-sync set gates our commits
        self.inflight = 0           # last appended seq not yet seen committed
        self.inflight_t = 0.0       # when it was appended
        self.reported = 0           # last commit reported to the driver
        self.first_seq = 0          # after a promotion: our first seq, until it commits
        self.promoting = None       # (epoch, revision, in_sync, t0): waiting for the writer lock
        self.next_try = 0.0
        self.rest_until = 0.0
        self.next_hb = time.monotonic()
        self.parent = os.getppid()
        self.running = True

    def send(self, *msg) -> None:
        self.conn.send(msg)

    # --- roles -----------------------------------------------------------------------
    def start(self, role: str) -> None:
        if role == "create":
            # Commit = every in-sync backup acknowledged, and at least one in sync (the
            # controller's min_in_sync=2 counts the primary).
            self.wbuf = LogBuffer(CAPACITY, max_readers=8, name=self.segment, commit="all", min_in_sync=1)
        elif role == "backup":
            self.buf = LogBuffer.attach(self.segment)
            self.reader = self.buf.reader(self.name, start="earliest")   # the log is new: all of it
        elif role == "rejoin":
            # Join first, then ask for a snapshot: the snapshot is taken after the join, so it
            # reaches at least the seq before our first delivered entry, and nothing falls
            # between the two.
            self.buf = LogBuffer.attach(self.segment)
            self.reader = self.buf.reader(self.name, start="committed")
            self.synced = False
        else:
            raise ValueError(f"role must be 'create', 'backup' or 'rejoin', not {role!r}")
        self.send("ready", os.getpid())
        if not self.synced:
            self.send("need_snapshot")

    def run(self) -> None:
        while self.running:
            now = time.monotonic()
            self._heartbeat_if_due(now)
            if self.promoting is not None and now >= self.next_try:
                self._try_promote()
            if self.wbuf is not None:
                self._primary_step(now)
            elif self.reader is not None:
                self._backup_step()
            else:
                self.conn.poll(STEP)
            n = 0
            while self.running and n < 64 and self.conn.poll():
                self._command(self.conn.recv())
                n += 1

    def close(self) -> None:
        for obj in (self.reader, self.buf, self.wbuf):
            if obj is not None:
                obj.close()
        self.reader = self.buf = self.wbuf = None

    # --- heartbeats ------------------------------------------------------------------
    def _heartbeat_if_due(self, now: float) -> None:
        if now >= self.next_hb:
            self._heartbeat()
            self.next_hb = max(self.next_hb + self.heartbeat, now)
            if os.getppid() != self.parent:
                raise EOFError("the driver is gone")

    def _heartbeat(self) -> None:
        if self.promoting is not None:
            pos = None                  # between roles: alive, nothing to report
        elif self.wbuf is not None:
            self._confirm_config()
            last = self.wbuf.last_seq
            pos = (self.epoch, last, min(self.wbuf.commit_seq, last), self.config)
        elif self.reader is not None and self.synced:
            pos = (self.epoch, len(self.state), 0, 0)
        else:
            pos = None                  # alive, but holding nothing reportable yet
        self.send("hb", pos)

    def _confirm_config(self) -> None:
        """Report the newest partition record once every backup in its in-sync set gates
        our commits (its reader is in sync in the buffer): from then on nothing commits
        without it, which is what the controller waits for before it may be promoted."""
        if self.want is None or self.want[0] <= self.config:
            return
        revision, in_sync = self.want
        gating = {r.name for r in self.wbuf.readers() if r.in_sync}
        if set(in_sync) - {self.name} <= gating:
            self.config = revision

    # --- the primary -----------------------------------------------------------------
    def _primary_step(self, now: float) -> None:
        buf = self.wbuf
        if self.inflight:
            done = buf.wait_committed(self.inflight, timeout=STEP)
            self._report_commit()
            if done:
                self.inflight = 0
                self.rest_until = time.monotonic() + self.pace
            return
        if not self.writing or now < self.rest_until:
            self.conn.poll(min(STEP, max(0.0, self.rest_until - now)) if self.writing else STEP)
            return
        seq = buf.last_seq
        if seq != len(self.state):
            raise DemoError(f"{self.name}: the log is at seq {seq} but the state holds {len(self.state)} entries")
        for _ in range(self.batch):
            data = _payload(self.epoch, seq + 1, self.name)
            try:
                seq = buf.append(data, timeout=STEP)
            except (BufferFull, NotEnoughInSync):
                self.rest_until = time.monotonic() + STEP    # backups will catch up or rejoin
                break
            except StaleEpoch:
                self.writing = False                         # fenced: a new primary took over
                self.send("fenced", self.epoch)
                break
            self.state.append(data)
            self.inflight, self.inflight_t = seq, time.monotonic()

    def _report_commit(self) -> None:
        commit = self.wbuf.commit_seq
        if commit > self.reported:
            t = time.monotonic()
            self.reported = commit
            # With the commit time, when its last entry was appended (if it is ours).
            self.send("acked", commit, t, self.inflight_t if self.inflight and commit >= self.inflight else None)
            if self.first_seq and commit >= self.first_seq:
                self.send("first_commit", self.epoch, commit, t)
                self.first_seq = 0

    def _promote(self, epoch: int, revision: int, in_sync) -> None:
        """Become the writer under ``epoch`` (done in the main loop, which keeps
        heartbeating and following the old writer while it still holds the log)."""
        if self.reader is None or not self.synced:
            raise DemoError(f"{self.name}: asked to lead before it holds the log")
        self.promoting = (epoch, revision, tuple(in_sync), time.monotonic())
        self.next_try = 0.0

    def _try_promote(self) -> None:
        """Take the log over, then drain what the old writer published: attaching fences
        it first (it can publish nothing more), so the drain has a fixed end."""
        epoch, revision, in_sync, t0 = self.promoting
        try:
            wbuf = LogBuffer.attach(self.segment, writer=True, epoch=epoch)
        except WriterAlive:
            # The old writer is alive and holds the writer lock: it was convicted falsely
            # (paused, not dead) and lets go once it hears it must step down.
            if time.monotonic() - t0 > PROMOTE_WAIT:
                raise DemoError(f"{self.name}: the old writer kept the log for {PROMOTE_WAIT:g} s") from None
            self.next_try = time.monotonic() + 0.01
            return
        try:
            target = wbuf.last_seq
            deadline = time.monotonic() + 3.0
            while len(self.state) < target:
                now = time.monotonic()
                if now > deadline:
                    raise DemoError(f"{self.name}: drained to seq {len(self.state)}, the log is at {target}")
                self._heartbeat_if_due(now)
                entries = self.reader.read(1024, timeout=STEP)
                if entries:
                    self._apply(entries)
                    self.reader.ack(entries[-1][0])
            if len(self.state) != target:
                raise DemoError(f"{self.name}: holds {len(self.state)} entries, the log only {target}")
        except BaseException:
            wbuf.close()
            raise
        self.reader.close()
        self.buf.close()
        self.reader = self.buf = self.promoting = None
        self.wbuf, self.epoch = wbuf, epoch
        self.want = (revision, in_sync)
        self._confirm_config()
        self.writing, self.inflight, self.first_seq = True, 0, target + 1
        self.reported = wbuf.commit_seq
        self.send("promoted", epoch, target, t0, time.monotonic())

    def _step_down(self, epoch: int) -> None:
        """Hand the log over: stop appending, become a reader from our own last entry,
        then leave the writer role (and its lock) to the next primary."""
        if self.wbuf is None:                   # not the writer (any more): nothing to hand over
            self.epoch = epoch
            self.send("stepped_down", len(self.state), time.monotonic())
            return
        self.writing = False
        self._report_commit()
        buf = LogBuffer.attach(self.segment)
        try:
            reader = buf.reader(self.name, start="tail")
        except BaseException:
            buf.close()
            raise
        last = self.wbuf.last_seq
        if reader.acked != last or last != len(self.state):
            raise DemoError(f"{self.name}: stepping down at seq {last}, the new reader starts after "
                            f"{reader.acked}, the state holds {len(self.state)}")
        t = time.monotonic()                    # before letting go: the successor comes after
        self.wbuf.close()
        self.wbuf, self.buf, self.reader = None, buf, reader
        self.epoch, self.inflight, self.first_seq = epoch, 0, 0
        self.send("stepped_down", last, t)

    # --- a backup --------------------------------------------------------------------
    def _backup_step(self) -> None:
        try:
            entries = self.reader.read(1024, timeout=STEP)
        except ReaderLagged:
            # Evicted: the writer went on without us. Rejoin and resync from a snapshot.
            self.send("lagged", len(self.state))
            self.reader.rejoin("committed")
            self.synced, self.held = False, []
            self.send("need_snapshot")
            return
        if entries:
            if self.synced:
                self._apply(entries)
            else:
                self.held.extend(entries)
            self.reader.ack(entries[-1][0])

    def _apply(self, entries) -> None:
        state = self.state
        for seq, data in entries:
            n = len(state)
            if seq == n + 1:
                state.append(data)
            elif seq > n + 1:
                raise DemoError(f"{self.name}: entry {seq} arrived after {n}: a gap")
            elif state[seq - 1] != data:
                raise DemoError(f"{self.name}: entry {seq} differs from the one held")

    def _install_snapshot(self, entries) -> None:
        self.state = list(entries)
        n = len(self.state)
        later = [(s, d) for s, d in self.held if s > n]
        if later and later[0][0] != n + 1:
            raise DemoError(f"{self.name}: the snapshot ends at seq {n} but the log resumes at {later[0][0]}")
        self._apply(later)
        self.held, self.synced = [], True
        self.send("synced", n, len(later), time.monotonic())

    # --- commands --------------------------------------------------------------------
    def _command(self, msg) -> None:
        kind = msg[0]
        if kind == "write":
            self.writing = True
        elif kind == "pause":
            self.writing = False
            deadline = time.monotonic() + 1.0
            while self.wbuf is not None and self.inflight and time.monotonic() < deadline:
                self._heartbeat_if_due(time.monotonic())
                done = self.wbuf.wait_committed(self.inflight, timeout=STEP)
                self._report_commit()
                if done:
                    self.inflight = 0
            self.send("paused", len(self.state))
        elif kind == "promote":
            self._promote(*msg[1:])
        elif kind == "step_down":
            self._step_down(msg[1])
        elif kind == "follow":
            self.epoch = msg[1]
        elif kind == "config":
            if self.want is None or msg[1] > self.want[0]:
                self.want = (msg[1], tuple(msg[2]))
        elif kind == "snapshot_request":
            self.send("snapshot", msg[1], self.state)
        elif kind == "snapshot":
            self._install_snapshot(msg[1])
        elif kind == "report":
            self.send("report", *self._report(msg[1]))
        elif kind == "stop":
            self.close()
            self.send("bye")
            self.running = False
        else:
            raise DemoError(f"{self.name}: unknown command {kind!r}")

    def _report(self, thresholds):
        """Per threshold t: how many of seqs 1..t are missing (or wrong); a digest of them all."""
        state = self.state
        bad = [s for s in range(1, min(len(state), max(thresholds)) + 1) if _payload_seq(state[s - 1]) != s]
        missing = [sum(1 for s in bad if s <= t) + max(0, t - len(state)) for t in thresholds]
        digest = hashlib.blake2b(b"\n".join(state[:max(thresholds)]), digest_size=8).hexdigest()
        return missing, digest, len(state)


def _node_main(conn, inherited, name, role, segment, heartbeat, batch, pace, epoch) -> None:
    """A node process's entry point (forked): run until told to stop; report any failure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the driver's to handle
    for c in inherited:                               # the driver's ends of other nodes' pipes
        c.close()
    node = _Node(conn, name, segment, heartbeat, batch, pace, epoch)
    code = 0
    try:
        node.start(role)
        node.run()
    except (EOFError, BrokenPipeError):
        code = 1                                      # the driver is gone
    except BaseException as exc:
        code = 1
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except OSError:
            pass
    finally:
        try:
            node.close()
        finally:
            conn.close()
    os._exit(code)


# ---------------------------------------------------------------------------------------
# The driver

@dataclass
class Recovery:
    """The failed node's return: catch-up, re-entry into the in-sync set, fail-back.
    Times are seconds from its restart (or from SIGCONT)."""

    node: str
    restarted: bool = True          # False: it was paused, and resumed holding the log
    snapshot_seq: int = 0           # entries taken from the primary's snapshot
    from_log: int = 0               # entries after it, read from the log while waiting
    synced_s: float | None = None   # until it holds the log (resumed: until it stepped down)
    isr_expand_s: float | None = None
    fail_back_s: float | None = None
    handover_s: float | None = None  # fail_back event to the first committed write of the preferred
    epoch: int | None = None         # epoch after the fail-back
    new_primary: str | None = None


@dataclass
class RunResult:
    """One run: what was killed, what the controller did and what the data shows."""

    run: int
    segment: str
    kill: str                       # "primary", "backup" or "pause" (the primary, SIGSTOP)
    victim: str
    old_primary: str
    new_primary: str | None = None
    epoch: int = 1
    detect_s: float | None = None   # kill -> node_down (times are seconds from the kill / SIGSTOP)
    failover_s: float | None = None  # kill -> failover event
    write_s: float | None = None    # kill -> first commit of an entry appended after the kill: on
    #                                 the new primary (primary kill), on the same one (backup kill)
    acked_at_kill: int = 0          # acknowledged entries (seqs 1..this) before the kill
    acked: int = 0                  # acknowledged entries by the end of the run
    lost_at_kill: int = 0           # of those acknowledged before the kill, missing on the primary
    lost: int = 0                   # of all acknowledged, missing on the primary at the end
    in_sync_after: tuple = ()       # the in-sync set once the controller has acted on the kill
    final_primary: str | None = None
    final_in_sync: tuple = ()
    victim_state: str | None = None  # the controller's view of the victim once it acted on the kill
    recovery: Recovery | None = None
    timeline: list = field(default_factory=list)    # (seconds from the kill, text)
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.lost == 0 and self.lost_at_kill == 0


def _fmt_event(ev) -> str:
    what = ev.kind
    if ev.kind in ("failover", "fail_back"):
        what += f" {ev.old_primary} -> {ev.new_primary}, epoch {ev.epoch}"
    elif ev.node is not None:
        what += f" {ev.node}"
    if ev.kind in ("unavailable", "stale_epoch") and ev.epoch is not None:
        what += f" (epoch {ev.epoch})"
    return f"{what}: {ev.reason}" if ev.reason else what


class _Cluster:
    """The driver's side: node processes, their pipes, the controller and its reactions."""

    def __init__(self, run: int, heartbeat: float, hold_down: float, batch: int, pace: float):
        self.segment = f"failover-demo-{os.getpid()}-{run}-{uuid.uuid4().hex[:6]}"
        self.heartbeat, self.batch, self.pace = heartbeat, batch, pace
        self.ctx = multiprocessing.get_context("fork")   # fast starts (no re-import); no threads here
        self.ctl = FailoverController(HashRing(list(NODES)), replication_factor=3, min_in_sync=2,
                                      partitions=1, hold_down=hold_down)
        self.procs: dict = {}       # name -> Process (the current incarnation)
        self.conns: dict = {}       # Connection -> name
        self.killed: set = set()
        self.replies: dict = {}     # (name, kind) -> last message of that kind
        self.errors: list = []
        self.timeline: list = []    # (monotonic time, text)
        self.acked = 0
        self.acked_times: list = []  # (commit time, seq, append time or None) of every acknowledgement
        self.writer = NODES[0]
        self.handover = None        # (old, new, epoch, revision) of a fail-back in progress
        self.sent_revision = self.ctl.revision(0)
        self.first_commits: list = []   # (node, epoch, seq, time)
        self.events: list = []
        self.unhandled: list = []
        # Events come from heartbeat() (node_up, stale_epoch) as well as tick(): take them all.
        self.ctl.on_event(self.unhandled.append)
        self.next_tick = time.monotonic()

    # --- processes -------------------------------------------------------------------
    def start(self, name: str, role: str) -> float:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=_node_main, name=f"hashring-{name}", daemon=True,
            args=(child, list(self.conns), name, role, self.segment, self.heartbeat, self.batch, self.pace,
                  self.ctl.partition(0).epoch))
        t = time.monotonic()
        proc.start()
        child.close()
        self.procs[name] = proc
        self.conns[parent] = name
        self.killed.discard(name)
        for key in [k for k in self.replies if k[0] == name]:
            del self.replies[key]
        return t

    def alive(self, name: str) -> bool:
        return name in self.procs and name not in self.killed and name in self.conns.values()

    def kill(self, name: str, sig=signal.SIGKILL) -> float:
        """Send ``sig`` to a node; SIGKILL marks it dead (SIGSTOP and SIGCONT do not)."""
        t = time.monotonic()
        os.kill(self.procs[name].pid, sig)
        if sig == signal.SIGKILL:
            self.killed.add(name)
        self.note(t, f"{signal.Signals(sig).name} {name} (pid {self.procs[name].pid})")
        return t

    def send(self, name: str, *msg) -> None:
        for conn, who in self.conns.items():
            if who == name:
                try:
                    conn.send(msg)
                except OSError:
                    if name not in self.killed:
                        raise
                return

    def shutdown(self) -> None:
        """Stop every node (gracefully if it answers), reap it, remove the segment."""
        for name, proc in self.procs.items():
            if self.alive(name):
                try:
                    os.kill(proc.pid, signal.SIGCONT)     # a failed run may leave one stopped
                    self.send(name, "stop")
                except OSError:
                    pass
        deadline = time.monotonic() + 3.0
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for conn in self.conns:
            conn.close()
        self.conns.clear()
        try:
            os.unlink(segment_path(self.segment))    # gone already unless a node was killed last
        except FileNotFoundError:
            pass

    # --- the loop --------------------------------------------------------------------
    def note(self, t: float, text: str) -> None:
        self.timeline.append((t, text))

    def pump(self, timeout: float) -> None:
        """Handle node messages for up to ``timeout`` seconds, ticking the controller on time."""
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= self.next_tick:
                self._tick(now)
                self.next_tick = max(self.next_tick + TICK, now)
            wait_until = min(end, self.next_tick)
            ready = wait_connections(list(self.conns), timeout=max(0.0, wait_until - time.monotonic()))
            for conn in ready:
                self._drain(conn)
            if time.monotonic() >= end:
                return

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.errors:
                raise DemoError("; ".join(self.errors))
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
            self.pump(min(left, TICK))
        if self.errors:
            raise DemoError("; ".join(self.errors))

    def _drain(self, conn) -> None:
        name = self.conns[conn]
        for _ in range(256):
            try:
                if not conn.poll():
                    return
                msg = conn.recv()
            except (EOFError, OSError):
                del self.conns[conn]
                conn.close()
                if name not in self.killed and (name, "bye") not in self.replies:
                    self.errors.append(f"{name} exited unexpectedly")
                return
            self._handle(name, msg)

    def _handle(self, name: str, msg) -> None:
        kind, now = msg[0], time.monotonic()
        if kind == "hb":
            # The process id stands for the incarnation: a restarted node is a new process.
            self.ctl.heartbeat(name, None if msg[1] is None else {0: Position(*msg[1])}, now=now,
                               incarnation=self.procs[name].pid)
            self._react()
            return
        self.replies[(name, kind)] = msg
        if kind == "acked":
            if msg[1] > self.acked:
                self.acked = msg[1]
                self.acked_times.append((msg[2], msg[1], msg[3]))
        elif kind == "error":
            self.errors.append(f"{name}: {msg[1]}\n{msg[2]}")
        elif kind == "promoted":
            self.note(msg[4], f"{name} is the writer under epoch {msg[1]} (drained the log to seq {msg[2]})")
        elif kind == "first_commit":
            self.first_commits.append((name, msg[1], msg[2], msg[3]))
            self.note(msg[3], f"first committed write on {name}: seq {msg[2]} (epoch {msg[1]})")
        elif kind == "need_snapshot":
            self.send(self.writer, "snapshot_request", name)
        elif kind == "snapshot":
            self.send(msg[1], "snapshot", msg[2])
        elif kind == "synced":
            self.note(msg[3], f"{name} holds the log: {msg[1]} entries from a snapshot of {self.writer}, "
                           f"{msg[2]} from the log")
        elif kind == "stepped_down":
            self.note(msg[2], f"{name} stopped writing at seq {msg[1]} and reads the log as a backup")
            if self.handover is not None and self.handover[0] == name:
                _, new, epoch, revision = self.handover
                self.send(new, "promote", epoch, revision, tuple(sorted(self.ctl.partition(0).in_sync)))
                self.writer, self.handover = new, None
        elif kind == "lagged":
            self.note(now, f"{name} was evicted from the log at seq {msg[1]}: resyncing")
            if name != self.ctl.partition(0).primary:       # commits no longer wait for it
                self.ctl.leave_in_sync(name, 0, "its log reader was evicted")
        elif kind == "fenced":
            self.note(now, f"{name}: appends refused, epoch {msg[1]} superseded")

    def _tick(self, now: float) -> None:
        self.ctl.tick(now)
        self._react()

    def _react(self) -> None:
        """Act on the controller's new events: promotions, hand-overs, in-sync changes."""
        events = self.unhandled[:]
        del self.unhandled[:]
        for ev in events:
            self.events.append(ev)
            self.note(ev.time, _fmt_event(ev))
            if ev.kind == "failover":
                others = [n for n in NODES if n not in (ev.old_primary, ev.new_primary) and self.alive(n)]
                if self.alive(ev.old_primary):
                    # Falsely convicted but alive: it must let go of the log first.
                    self.send(ev.old_primary, "step_down", ev.epoch)
                self.send(ev.new_primary, "promote", ev.epoch, ev.revision,
                          tuple(sorted(self.ctl.partition(0).in_sync)))
                for n in others:
                    self.send(n, "follow", ev.epoch)
                self.writer, self.handover = ev.new_primary, None
            elif ev.kind == "fail_back":
                # Graceful: the old primary stops and lets go of the log, then the preferred
                # one drains it and takes over (on "stepped_down").
                self.handover = (ev.old_primary, ev.new_primary, ev.epoch, ev.revision)
                self.send(ev.old_primary, "step_down", ev.epoch)
                for n in NODES:
                    if n not in (ev.old_primary, ev.new_primary) and self.alive(n):
                        self.send(n, "follow", ev.epoch)
            elif ev.kind == "unavailable":
                self.errors.append(f"partition unavailable: {ev.reason}")
        part = self.ctl.partition(0)            # one read: the in-sync set and its revision
        if part.revision != self.sent_revision:
            # In-sync changes: the primary confirms the record once its commits obey it.
            self.sent_revision = part.revision
            if part.primary is not None and self.alive(part.primary):
                self.send(part.primary, "config", part.revision, tuple(sorted(part.in_sync)))


def run_once(run: int = 1, *, kill: str = "primary", recover: bool = False, heartbeat: float = 0.1,
             hold_down: float = 1.0, warmup: float = 1.0, after: float = 0.3, batch: int = 4,
             pace: float = 0.002, seed: int = 0, timeout: float = 10.0) -> RunResult:
    """One run: start three nodes, fail one, watch the takeover, optionally bring the
    failed node back, then check that every live node holds every acknowledged entry.

    ``kill``: ``"primary"`` or ``"backup"`` (SIGKILL), or ``"pause"``: SIGSTOP the primary,
    and SIGCONT it once a backup was promoted (a false conviction: the old primary must
    let go of the log before the new one may write; it then rejoins as a backup and, as
    the preferred primary, gets the partition back). ``recover``: restart a killed node as
    a backup (catch-up, in sync again, fail-back if it is the preferred primary).
    ``warmup``: seconds of heartbeats before the kill (plus up to one heartbeat interval,
    drawn from ``seed``, so kills fall anywhere between two heartbeats). ``after``:
    seconds of writing after each takeover. ``hold_down``: the controller's. ``batch``
    entries are appended per commit, ``pace`` seconds apart. ``timeout``: bound on every
    step. A failed run does not raise: its errors are in the result."""
    if kill not in ("primary", "backup", "pause"):
        raise ValueError(f"kill must be 'primary', 'backup' or 'pause', not {kill!r}")
    for what, value in (("heartbeat", heartbeat), ("warmup", warmup), ("after", after), ("timeout", timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
            raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    for what, value in (("hold_down", hold_down), ("pace", pace)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
            raise ValueError(f"{what} must be a number of seconds >= 0, not {value!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1000:
        raise ValueError(f"batch must be an int from 1 to 1000, not {batch!r}")
    cl = _Cluster(run, heartbeat, hold_down, batch, pace)
    part = cl.ctl.partition(0)
    primary = part.primary
    backups = [n for n in part.replicas if n != primary]
    victim = backups[0] if kill == "backup" else primary
    res = RunResult(run, cl.segment, kill, victim, primary)
    t_kill = None
    try:
        cl.writer = primary
        cl.start(primary, "create")
        cl.wait_for(lambda: (primary, "ready") in cl.replies, timeout, f"{primary} to create the log")
        for b in backups:
            cl.start(b, "backup")
        cl.wait_for(lambda: all((b, "ready") in cl.replies for b in backups), timeout, "the backups to join")
        cl.send(primary, "write")
        cl.pump(warmup + random.Random(seed * 1000 + run).uniform(0, heartbeat))
        if any(ev.kind in ("failover", "unavailable", "node_down") for ev in cl.events):
            raise DemoError("a node was convicted during the warm-up (the machine is overloaded?)")
        if cl.acked == 0:
            raise DemoError("nothing was committed during the warm-up")

        for conn in list(cl.conns):       # what was acknowledged before the kill is known now
            cl._drain(conn)
        t_kill = cl.kill(victim, signal.SIGSTOP if kill == "pause" else signal.SIGKILL)
        if kill == "primary":
            # Acknowledgements it sent before dying still count: read its pipe to the end.
            cl.wait_for(lambda: victim not in cl.conns.values(), timeout, f"{victim}'s pipe to close")
        if kill == "backup":
            res.acked_at_kill = cl.acked

            def commit_after_kill():
                return next((t for t, _, appended in cl.acked_times
                             if appended is not None and appended > t_kill), None)
            cl.wait_for(commit_after_kill, timeout, "the commit of an entry appended after the kill")
            res.write_s = commit_after_kill() - t_kill
            cl.wait_for(lambda: victim not in cl.ctl.partition(0).in_sync, timeout,
                        f"{victim} to leave the in-sync set")
            res.victim_state = cl.ctl.status().nodes[victim].state.value
            res.in_sync_after = tuple(sorted(cl.ctl.partition(0).in_sync))
        else:
            cl.wait_for(lambda: any(ev.kind == "failover" for ev in cl.events), timeout, "a failover")
            res.acked_at_kill = cl.acked          # its pipe was read up to the stop meanwhile
            res.victim_state = cl.ctl.status().nodes[victim].state.value
            res.in_sync_after = tuple(sorted(cl.ctl.partition(0).in_sync))
            if kill == "pause":
                cl.pump(PAUSE_AFTER_FAILOVER)
                cl.kill(victim, signal.SIGCONT)
            cl.wait_for(lambda: cl.first_commits, timeout, "the first committed write on a new primary")
            name, epoch, _, t = cl.first_commits[0]
            res.new_primary, res.epoch, res.write_s = name, epoch, t - t_kill
        for ev in cl.events:
            if ev.kind == "node_down" and ev.node == victim and res.detect_s is None:
                res.detect_s = ev.time - t_kill
            if ev.kind == "failover" and res.failover_s is None:
                res.failover_s = ev.time - t_kill
        cl.pump(after)

        if kill == "pause" or recover:
            res.recovery = _recover(cl, victim, restart=kill != "pause", hold_down=hold_down, timeout=timeout)
            cl.pump(after)

        # Stop the writer, then every live node must hold every acknowledged entry.
        writer = cl.writer
        cl.send(writer, "pause")
        cl.wait_for(lambda: (writer, "paused") in cl.replies, timeout, f"{writer} to pause")
        res.acked = cl.acked
        live = [n for n in NODES if cl.alive(n)]
        for n in live:
            cl.replies.pop((n, "report"), None)
            cl.send(n, "report", (res.acked_at_kill, res.acked))
        cl.wait_for(lambda: all((n, "report") in cl.replies for n in live), timeout, "the nodes' reports")
        reports = {n: cl.replies[(n, "report")] for n in live}
        res.lost_at_kill, res.lost = reports[writer][1]
        for n, (_, missing, digest, _) in reports.items():
            if n != writer and missing[1]:
                res.errors.append(f"backup {n} lacks {missing[1]} of the {res.acked} acknowledged entries")
            elif digest != reports[writer][2]:
                res.errors.append(f"{n}'s first {res.acked} entries differ from the primary's")
        state = cl.ctl.partition(0)
        res.final_primary, res.final_in_sync = state.primary, tuple(sorted(state.in_sync))
        if res.lost or res.lost_at_kill:
            res.errors.append(f"{max(res.lost, res.lost_at_kill)} acknowledged entries lost")
    except DemoError as exc:
        res.errors.append(str(exc))
    finally:
        cl.shutdown()
        t0 = t_kill if t_kill is not None else (cl.timeline[0][0] if cl.timeline else 0.0)
        res.timeline = [(t - t0, text) for t, text in sorted(cl.timeline, key=lambda item: item[0])]
    return res


def _recover(cl: _Cluster, victim: str, *, restart: bool, hold_down: float, timeout: float) -> Recovery:
    """Follow the victim back into the in-sync set (restarted as a backup that catches up,
    or resumed: it stepped down and held the log) and, if it is the preferred primary,
    through the fail-back."""
    rec = Recovery(victim, restarted=restart)
    if restart:
        t0 = cl.start(victim, "rejoin")
        cl.note(t0, f"restart {victim} as a backup")
        cl.wait_for(lambda: (victim, "synced") in cl.replies, timeout, f"{victim} to catch up")
        _, rec.snapshot_seq, rec.from_log, t = cl.replies[(victim, "synced")]
        rec.synced_s = t - t0
    else:
        t0 = next(t for t, text in cl.timeline if text.startswith(f"SIGCONT {victim}"))
        cl.wait_for(lambda: (victim, "stepped_down") in cl.replies, timeout, f"{victim} to step down")
        rec.synced_s = cl.replies[(victim, "stepped_down")][2] - t0
    preferred = cl.ctl.partition(0).replicas[0]

    def seen(kind, node=None):
        return next((ev for ev in cl.events if ev.kind == kind and ev.time >= t0
                     and (node is None or ev.node == node)), None)

    cl.wait_for(lambda: seen("isr_expand", victim), timeout + hold_down, f"{victim} to re-enter the in-sync set")
    rec.isr_expand_s = seen("isr_expand", victim).time - t0
    if victim == preferred and cl.ctl.fail_back:
        cl.wait_for(lambda: seen("fail_back"), timeout + hold_down, "the fail-back")
        ev = seen("fail_back")
        rec.fail_back_s, rec.epoch, rec.new_primary = ev.time - t0, ev.epoch, ev.new_primary
        cl.wait_for(lambda: any(n == victim and t > ev.time for n, _, _, t in cl.first_commits), timeout,
                    f"the first committed write on {victim} after the fail-back")
        t = next(t for n, _, _, t in cl.first_commits if n == victim and t > ev.time)
        rec.handover_s = t - ev.time
    return rec


# ---------------------------------------------------------------------------------------
# The command line

def _quantile(values, q: float) -> float:
    """Nearest-rank quantile (q in (0, 1])."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _dist(values) -> str:
    if not values:
        return "none"
    return (f"min {min(values):.3f} / median {statistics.median(values):.3f} / p90 {_quantile(values, 0.9):.3f}"
            f" / max {max(values):.3f} s")


def _describe(res: RunResult) -> str:
    head = f"run {res.run:2d}: " + (f"SIGSTOP primary {res.victim}" if res.kill == "pause"
                                    else f"SIGKILL {res.kill} {res.victim}")
    if res.errors:
        return f"{head}: FAILED: {res.errors[0].splitlines()[0]}"
    if res.kill != "backup":
        body = (f"node_down +{res.detect_s:.3f} s, failover to {res.new_primary} (epoch {res.epoch}) "
                f"+{res.failover_s:.3f} s, ")
        if res.kill == "pause":
            body += f"SIGCONT +{res.failover_s + PAUSE_AFTER_FAILOVER:.3f} s, {res.victim} stepped down, "
        body += f"first committed write +{res.write_s:.3f} s"
    else:
        body = (f"node_down +{res.detect_s:.3f} s, primary {res.old_primary} kept committing "
                f"(an entry appended after the kill committed +{res.write_s * 1e3:.1f} ms), in sync: "
                f"{', '.join(res.in_sync_after)}")
    return (f"{head}: {body}; lost {res.lost_at_kill} of {res.acked_at_kill:,} acknowledged before the kill, "
            f"{res.lost} of {res.acked:,} by the end")


def _print_timeline(res: RunResult, label: str, since: float = -math.inf) -> None:
    print(f"{label} (seconds from the kill):")
    for t, text in res.timeline:
        if t >= since:
            print(f"  {t:+8.3f}  {text}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="hashring failover-demo",
        description="Kill the primary of a partition replicated on three local processes over a shared-memory "
                    "log; show detection, promotion, the new epoch, acknowledged entries lost (must be 0) and "
                    "the time from the kill to the first committed write on the new primary.")
    parser.add_argument("--runs", type=int, default=20, help="runs (default 20)")
    parser.add_argument("--heartbeat", type=float, default=0.1, help="seconds between heartbeats (default 0.1)")
    parser.add_argument("--kill", choices=["primary", "backup", "pause"], default="primary",
                        help="SIGKILL the primary (default) or a backup; or 'pause': SIGSTOP the primary and "
                             f"SIGCONT it {PAUSE_AFTER_FAILOVER:g} s after the failover (a false conviction)")
    parser.add_argument("--recovery", choices=["last", "all", "none"], default="last",
                        help="bring the killed node back (catch-up, in-sync again, fail-back) in the last "
                             "run (default), every run, or none; a paused primary always comes back")
    parser.add_argument("--hold-down", type=float, default=1.0,
                        help="controller hold_down in seconds (default 1.0, so fail-back shows quickly; "
                             "it does not delay the failover)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of heartbeats before the kill (default 1.0)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill times within a heartbeat interval")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, not {args.runs}")
    if not 0.01 <= args.heartbeat <= 1.0:
        parser.error(f"--heartbeat must be between 0.01 and 1 second, not {args.heartbeat}")
    if not 0 <= args.hold_down <= 60:
        parser.error(f"--hold-down must be between 0 and 60 seconds, not {args.hold_down}")
    if not 5 * args.heartbeat <= args.warmup <= 60:
        parser.error(f"--warmup must be between 5 heartbeats ({5 * args.heartbeat:g} s) and 60 s, not {args.warmup}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, not {args.seed}")
    if not os.path.isdir(SHM_DIR):
        parser.error(f"{SHM_DIR} is missing: the shared log needs POSIX shared memory (Linux)")

    t_start = time.monotonic()
    what = "SIGSTOP of the primary" if args.kill == "pause" else f"SIGKILL of the {args.kill}"
    print(f"failover demo: {args.runs} runs; each starts {len(NODES)} node processes (a primary and 2 backups of "
          f"one partition) over a shared-memory LogBuffer, heartbeats every {args.heartbeat * 1e3:g} ms, "
          f"FailoverController defaults (PhiAccrual(threshold=8), min_in_sync=2) with hold_down="
          f"{args.hold_down:g} s; {what} after {args.warmup:g} s", flush=True)
    results = []
    for run in range(1, args.runs + 1):
        recover = args.recovery == "all" or (args.recovery == "last" and run == args.runs)
        try:
            res = run_once(run, kill=args.kill, recover=recover, heartbeat=args.heartbeat,
                           hold_down=args.hold_down, warmup=args.warmup, seed=args.seed)
        except KeyboardInterrupt:        # run_once has stopped its nodes and removed its segment
            print("interrupted", file=sys.stderr)
            return 130
        results.append(res)
        print(_describe(res), flush=True)
        for err in res.errors[1:]:
            print(f"        also: {err.splitlines()[0]}")
        if res.recovery is not None:
            rec = res.recovery
            if rec.restarted:
                text = (f"        recovery: {rec.node} restarted; caught up in {rec.synced_s:.3f} s "
                        f"({rec.snapshot_seq:,} entries from a snapshot, {rec.from_log} from the log)")
            else:
                text = (f"        recovery: {rec.node} resumed, stepped down {rec.synced_s * 1e3:.1f} ms later and "
                        f"follows the log as a backup")
            if rec.isr_expand_s is not None:
                text += f"; in sync again after {rec.isr_expand_s:.3f} s"
            if rec.fail_back_s is not None:
                text += (f"; fail-back to {rec.new_primary} (epoch {rec.epoch}) after {rec.fail_back_s:.3f} s, "
                         f"writes paused {rec.handover_s * 1e3:.1f} ms by the handover")
            print(text)
        if run == 1 and res.timeline:
            _print_timeline(res, "events of run 1", since=-0.05)
    last = results[-1]
    if last.recovery is not None and args.runs > 1 and last.timeline:
        restart = next((t for t, text in last.timeline if text.startswith("restart ")), None)
        if restart is not None:
            _print_timeline(last, f"recovery in run {last.run}", since=restart)

    good = [r for r in results if not r.errors]
    print()
    label = {"primary": "kill -> first committed write on the new primary",
             "pause": "SIGSTOP -> first committed write on the new primary",
             "backup": "kill -> first commit of an entry appended after it"}[args.kill]
    print(f"{label} over {len(good)} runs: {_dist([r.write_s for r in good])}")
    print(f"kill -> node_down (detection): {_dist([r.detect_s for r in good if r.detect_s is not None])}")
    if args.kill == "primary" and good:
        median = statistics.median(r.write_s for r in good)
        print(f"median under 1 s: {'yes' if median < 1.0 else 'NO'} ({median:.3f} s)")
    lost = sum(max(r.lost, r.lost_at_kill) for r in results)      # the second is part of the first
    print(f"acknowledged entries lost: {lost} (per run: {', '.join(str(r.lost) for r in results)}); "
          f"{sum(r.acked_at_kill for r in results):,} acknowledged before the kills, "
          f"{sum(r.acked for r in results):,} by the ends of the runs")
    failed = [r.run for r in results if not r.ok]
    if failed:
        print(f"FAILED runs: {', '.join(map(str, failed))}")
    print(f"total {time.monotonic() - t_start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
