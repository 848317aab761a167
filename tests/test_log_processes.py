"""The log buffer across real processes over shared memory: streams, crashes, fencing,
segment lifecycle and backpressure (replication.md section 7, level 1).

Every child is a fresh interpreter (subprocess with ``sys.executable -c``) that attaches
by name; the roles live in tests/_log_proc_helpers.py. Every test uses its own segment
names and checks at the end that none of its /dev/shm/hashring-log-* files is left.
"""

from __future__ import annotations

import json
import mmap
import os
import queue
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid

import pytest

from hashring import BufferFull, LogBuffer, SegmentError
from hashring import log as logmod

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import _log_proc_helpers as helpers  # noqa: E402

payload = helpers.payload
CHILD_CODE = "import _log_proc_helpers as h; h.main()"
SLOTS_OFFSET = 4096          # reader slots in the segment (hashring/_logbuf.h)
SLOT_SIZE = 128
PACE = 0.0005               # seconds between 64-entry batches where a lag limit is set


def shm_path(name: str) -> str:
    return os.path.join(logmod.SHM_DIR, logmod.PREFIX + name)


# ------------------------------------------------------------------ children

class Child:
    """A helper role in a fresh interpreter; its stdout is parsed as JSON events."""

    def __init__(self, role: str, **kwargs):
        env = dict(os.environ)
        paths = [TESTS, ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, role, json.dumps(kwargs)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env=env, cwd=ROOT)
        self.pid = self.proc.pid
        self.events: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        self.other: list[dict] = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "noise", "line": line})
        self.events.put({"event": "eof"})

    def _pump_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def expect(self, event: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.role} (pid {self.pid}): no {event!r} event in {timeout} s; "
                            f"stderr: {''.join(self.stderr)[-2000:]}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["event"] == event:
                return ev
            if ev["event"] in ("crash", "error", "eof"):
                time.sleep(0.05)
                pytest.fail(f"{self.role} (pid {self.pid}) while waiting for {event!r}: {ev}; "
                            f"stderr: {''.join(self.stderr)[-2000:]}")
            self.other.append(ev)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def call(self, op: str, timeout: float = 30.0, **kwargs) -> dict:
        """Agent command; returns its result (with "error" set when it raised)."""
        self.send(json.dumps(dict(op=op, **kwargs)))
        res = self.expect("result", timeout)
        assert res["op"] == op
        return res

    def ok(self, op: str, **kwargs) -> dict:
        res = self.call(op, **kwargs)
        assert "error" not in res, res
        return res

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.role} (pid {self.pid}) did not exit; stderr: {''.join(self.stderr)[-2000:]}")


class Ctx:
    """Per test: unique segment names, children and buffers, all cleaned up at the end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.names: list[str] = []
        self.children: list[Child] = []
        self.buffers: list[LogBuffer] = []

    def name(self) -> str:
        n = f"t{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.names.append(n)
        return n

    def spawn(self, role: str, **kwargs) -> Child:
        c = Child(role, **kwargs)
        self.children.append(c)
        return c

    def own(self, buf: LogBuffer) -> LogBuffer:
        self.buffers.append(buf)
        return buf

    def leftovers(self) -> list[str]:
        return [n for n in self.names if os.path.exists(shm_path(n))]

    def assert_clean(self) -> None:
        left = self.leftovers()
        assert not left, f"segments left in {logmod.SHM_DIR}: {left}"

    def cleanup(self) -> None:
        for c in self.children:
            if c.proc.poll() is None:
                try:
                    c.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
                c.kill()
            for f in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        for b in self.buffers:
            b.close()
        for n in self.leftovers():        # a failed test must not leak segments either
            try:
                os.unlink(shm_path(n))
            except FileNotFoundError:
                pass


@pytest.fixture
def ctx(tmp_path):
    c = Ctx(tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def spawn_agents(ctx: Ctx, n: int) -> list[Child]:
    agents = [ctx.spawn("agent") for _ in range(n)]
    for a in agents:
        a.expect("hello")
    return agents


def stream(buf: LogBuffer, first: int, count: int, batch: int = 64,
           pause: float = 0.0) -> tuple[int, list[tuple[float, float]]]:
    """Append payload(first .. first+count-1) with append_many; returns the next seq and
    (start time, duration) of every call. ``pause`` after each call keeps the writer slower
    than healthy readers, so that a time-based lag limit only ever catches the reader the
    test stops or kills, not one that a loaded machine slowed down for a moment."""
    seq, end = first, first + count
    calls = []
    while seq < end:
        if pause and calls:
            time.sleep(pause)
        k = min(batch, end - seq)
        items = [payload(s) for s in range(seq, seq + k)]
        t = time.monotonic()
        last = buf.append_many(items, timeout=30)
        calls.append((t, time.monotonic() - t))
        assert last == seq + k - 1
        seq += k
    return seq, calls


def wait_for(predicate, timeout=10.0, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def slot_of(buf: LogBuffer, reader_name: str):
    return next((i for i in buf.readers() if i.name == reader_name), None)


def check_stream_result(res: dict, first: int | None, last: int, min_count: int | None = None):
    assert res["errors"] == [], res["errors"]
    assert res["last"] == last
    if first is not None:
        assert res["first"] == first
        assert res["count"] == last - first + 1          # contiguous: every seq exactly once
    else:
        assert res["count"] == res["last"] - res["first"] + 1
    if min_count is not None:
        assert res["count"] >= min_count


# ------------------------------------------------------------------ 1. streaming

def test_every_reader_process_sees_every_entry_once_in_order(ctx):
    """1 writer process + 3 reader processes, 200k variable-length entries, >= 1000 wraps."""
    name = ctx.name()
    n, capacity = 200_000, 32768
    ring_bytes = sum(helpers.frame_size(len(payload(s))) for s in range(1, n + 1))
    assert ring_bytes // capacity >= 1000                  # the ring wraps at least 1000 times

    writer = ctx.spawn("stream_writer", name=name, capacity=capacity, n=n, readers=3)
    writer.expect("ready")
    readers = [ctx.spawn("stream_reader", name=name, reader_name=f"backup-{i}", n=n,
                         zero_copy=(i == 2)) for i in range(3)]
    for r in readers:
        r.expect("joined")
    done = writer.expect("done", timeout=90)
    results = [r.expect("done", timeout=60) for r in readers]
    for r in results:
        check_stream_result(r, 1, n)
    assert done["committed"] is True
    assert done["last_seq"] == n
    assert done["commit_seq"] == n
    assert max(r["commit_seq"] for r in results) == n
    for c in [writer, *readers]:
        assert c.wait_exit() == 0, "".join(c.stderr)
    ctx.assert_clean()


# ------------------------------------------------------------------ 2. dead and stopped readers

def test_sigkilled_reader_is_reclaimed_and_the_writer_stall_is_bounded(ctx):
    name = ctx.name()
    stop = str(ctx.tmp / "stop")
    buf = ctx.own(LogBuffer(65536, name=name, max_lag_seconds=0.3))
    victim = ctx.spawn("stream_reader", name=name, reader_name="backup-a", n=None, stop_file=stop)
    keeper = ctx.spawn("stream_reader", name=name, reader_name="backup-b", n=None, stop_file=stop)
    victim_pid = victim.expect("joined")["pid"]
    keeper.expect("joined")
    seq, _ = stream(buf, 1, 20_000, pause=PACE)
    assert wait_for(lambda: slot_of(buf, "backup-a").acked_seq > 0)

    victim.kill()                                          # SIGKILL mid-stream
    t_kill = time.monotonic()
    seq, calls = stream(buf, seq, 40_000, pause=PACE)      # the ring fills in well under a ms
    stall = max(d for t, d in calls)
    assert stall < 5.0, f"writer stalled {stall:.2f} s after the reader died"
    print(f"\nwriter stall after a reader's SIGKILL: {stall * 1000:.1f} ms")
    assert time.monotonic() - t_kill < 30

    infos = buf.readers()
    assert victim_pid not in [i.pid for i in infos if i.in_sync]
    assert [i.name for i in infos if i.in_sync] == ["backup-b"]
    assert [i.name for i in infos] == ["backup-b"]          # the slot was freed, not just evicted

    # A new process can join under the dead reader's name.
    newcomer = ctx.spawn("stream_reader", name=name, reader_name="backup-a", n=None,
                         stop_file=stop, start="tail")
    assert newcomer.expect("joined")["pid"] != victim_pid
    assert sorted(i.name for i in buf.readers() if i.in_sync) == ["backup-a", "backup-b"]
    joined_at = buf.last_seq
    seq, _ = stream(buf, seq, 20_000, pause=PACE)
    final = seq - 1
    with open(stop, "w") as f:
        f.write(str(final))
    check_stream_result(keeper.expect("done", timeout=60), 1, final)
    res = newcomer.expect("done", timeout=60)
    check_stream_result(res, None, final, min_count=final - joined_at)
    assert res["first"] == joined_at + 1
    assert buf.wait_committed(final, timeout=10)
    buf.close()
    for c in (keeper, newcomer):
        assert c.wait_exit() == 0
    ctx.assert_clean()


def test_dead_reader_slot_is_reclaimed_even_when_its_pid_is_reused(ctx):
    """A slot whose pid now belongs to another live process (pid reuse) is still reclaimed:
    liveness is (pid, start time)."""
    name = ctx.name()
    buf = ctx.own(LogBuffer(16384, name=name, max_lag_seconds=None, min_in_sync=0))
    victim, = spawn_agents(ctx, 1)
    victim.ok("attach", name=name)
    slot = victim.ok("reader", name="backup-1", start="tail")["slot"]
    buf.append(b"hello")
    assert [s for s, _ in [tuple(e) for e in victim.ok("read", name="backup-1", timeout=5)["entries"]]] == [1]
    victim.ok("ack", name="backup-1", seq=1)
    victim.kill()
    # Pretend the pid was reused by a live process: ours (its start time differs).
    with open(shm_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        off = SLOTS_OFFSET + slot * SLOT_SIZE + 8
        assert struct.unpack_from("<Q", m, off)[0] == victim.pid
        struct.pack_into("<Q", m, off, os.getpid())
    info = slot_of(buf, "backup-1")
    assert info.pid == os.getpid() and info.in_sync
    t0 = time.monotonic()
    stream(buf, 2, 2_000)                                  # blocks on the slot: policed
    assert time.monotonic() - t0 < 5
    assert slot_of(buf, "backup-1") is None
    buf.close()
    ctx.assert_clean()


def test_stopped_reader_is_evicted_after_max_lag_and_never_returns_overwritten_data(ctx):
    """SIGSTOP a reader: the writer stalls about max_lag_seconds, evicts it and goes on; after
    SIGCONT the reader gets ReaderLagged, rejoins, and every entry it delivered is exact."""
    name = ctx.name()
    stop = str(ctx.tmp / "stop")
    buf = ctx.own(LogBuffer(65536, name=name, max_lag_seconds=0.3))
    sleeper = ctx.spawn("stream_reader", name=name, reader_name="backup-s", n=None,
                        stop_file=stop, rejoin=True)
    keeper = ctx.spawn("stream_reader", name=name, reader_name="backup-k", n=None, stop_file=stop)
    sleeper.expect("joined")
    keeper.expect("joined")
    seq, _ = stream(buf, 1, 5_000, pause=PACE)
    sleeper.proc.send_signal(signal.SIGSTOP)
    try:
        seq, calls = stream(buf, seq, 30_000, pause=PACE)
        stall = max(d for t, d in calls)
        assert 0.2 < stall < 5.0, f"stall {stall:.2f} s"
        print(f"\nwriter stall behind a SIGSTOPped reader (max_lag_seconds=0.3): {stall:.3f} s")
        info = slot_of(buf, "backup-s")
        assert info is not None and info.state == "evicted" and not info.in_sync
    finally:
        sleeper.proc.send_signal(signal.SIGCONT)
    lag = sleeper.expect("lagged", timeout=20)
    assert lag["after"] is None or lag["after"] < seq
    assert wait_for(lambda: (slot_of(buf, "backup-s") or None) and slot_of(buf, "backup-s").in_sync)
    seq, _ = stream(buf, seq, 5_000, pause=PACE)
    final = seq - 1
    with open(stop, "w") as f:
        f.write(str(final))
    check_stream_result(keeper.expect("done", timeout=60), 1, final)
    res = sleeper.expect("done", timeout=60)
    assert res["errors"] == [] and res["lagged"] == 1 and res["last"] == final
    buf.close()
    for c in (keeper, sleeper):
        assert c.wait_exit() == 0
    ctx.assert_clean()


# ------------------------------------------------------------------ 3. writer crashes

def test_sigkilled_writers_never_tear_entries_and_successors_continue(ctx):
    name = ctx.name()
    stop = str(ctx.tmp / "stop")
    rnd = random.Random(20240611)
    buf = ctx.own(LogBuffer(65536, name=name, max_lag_seconds=None))   # creator: epoch 1, idle
    followers = [ctx.spawn("stream_reader", name=name, reader_name=f"backup-{i}", n=None,
                           stop_file=stop, zero_copy=(i == 1)) for i in range(2)]
    for f in followers:
        f.expect("joined")
    epoch, published = buf.epoch, buf.last_seq
    nxt = ctx.spawn("crash_writer", name=name, seed=0)
    history = []
    for it in range(20):
        w, nxt = nxt, None
        w.send("go")
        att = w.expect("attached")
        assert att["epoch"] == epoch + 1
        assert att["last_seq"] == published            # recovered the last published seq
        first = w.expect("first")["seq"]
        assert first == published + 1                   # and continues right after it
        if it < 19:
            nxt = ctx.spawn("crash_writer", name=name, seed=it + 1)   # ready for the takeover
        delay = rnd.uniform(0.0, 0.25)
        time.sleep(delay)
        w.kill()
        epoch = att["epoch"]
        published = buf.last_seq
        assert published >= first
        history.append((round(delay, 3), first, published))
    assert buf.epoch == epoch

    succ = ctx.own(LogBuffer.attach(name, writer=True, force=True))
    assert succ.epoch == epoch + 1 and succ.last_seq == published
    seq, _ = stream(succ, published + 1, 1_000)
    final = seq - 1
    with open(stop, "w") as f:
        f.write(str(final))
    for f in followers:
        check_stream_result(f.expect("done", timeout=60), 1, final)
    assert buf.wait_committed(final, timeout=10)
    assert final > 20 * 100, history
    print(f"\n20 writer SIGKILLs, {final} entries, epochs 2..{succ.epoch}; (delay, first, last published): {history}")
    succ.close()
    buf.close()
    for f in followers:
        assert f.wait_exit() == 0
    ctx.assert_clean()


# ------------------------------------------------------------------ 4. fencing

def _epochs_and_data(entries):
    return [(s, bytes.fromhex(d), e) for s, d, e in entries]


def test_fencing_across_processes(ctx):
    name = ctx.name()
    buf = ctx.own(LogBuffer(65536, name=name, max_lag_seconds=None))   # epoch 1
    a, b, r = spawn_agents(ctx, 3)
    r.ok("attach", name=name)
    r.ok("reader", name="backup-1", start="earliest")
    assert a.ok("attach", name=name, writer=True)["epoch"] == 2
    for i in range(1, 4):
        assert a.ok("append", data=(b"A%d" % i).hex())["seq"] == i
    got = _epochs_and_data(r.ok("read_batch", name="backup-1", timeout=5)["entries"])
    assert got == [(i, b"A%d" % i, 2) for i in range(1, 4)]
    r.ok("ack", name="backup-1", seq=3)

    att = b.ok("attach", name=name, writer=True)
    assert att["epoch"] == 3 and att["last_seq"] == 3
    res = a.call("append", data=b"A4".hex())
    assert res.get("error") == "StaleEpoch", res
    res = a.call("append_many", items=[b"A5".hex(), b"A6".hex()])
    assert res.get("error") == "StaleEpoch", res
    for i in range(4, 8):
        assert b.ok("append", data=(b"B%d" % i).hex())["seq"] == i
    assert b.ok("append_many", items=[b"B8".hex(), b"B9".hex()])["seq"] == 9
    got = _epochs_and_data(r.ok("read_batch", name="backup-1", timeout=5)["entries"])
    assert got == [(i, b"B%d" % i, 3) for i in range(4, 10)]
    r.ok("ack", name="backup-1", seq=9)
    # The deposed writer cannot take the role back with an old epoch.
    res = a.call("attach", name=name, writer=True, epoch=3)
    assert res.get("error") == "StaleEpoch", res
    for x in (a, b, r):
        assert x.ok("info")["epoch"] == 3
    assert buf.epoch == 3 and buf.last_seq == 9 and buf.commit_seq == 9
    for x in (a, b, r):
        x.ok("close")
        x.ok("exit")
        assert x.wait_exit() == 0
    buf.close()
    ctx.assert_clean()


def test_deposed_writer_append_does_not_change_the_successors_entries(ctx):
    name = ctx.name()
    buf = ctx.own(LogBuffer(65536, name=name, max_lag_seconds=None))
    a, b, r = spawn_agents(ctx, 3)
    r.ok("attach", name=name)
    r.ok("reader", name="backup-1", start="earliest")
    a.ok("attach", name=name, writer=True)                     # epoch 2
    assert a.ok("append", data=b"A-one".hex())["seq"] == 1
    b.ok("attach", name=name, writer=True)                     # epoch 3
    assert b.ok("append", data=(b"B" * 16).hex())["seq"] == 2
    assert a.call("append", data=(b"A" * 16).hex()).get("error") == "StaleEpoch"
    try:
        got = _epochs_and_data(r.ok("read_batch", name="backup-1", timeout=5)["entries"])
        assert got == [(1, b"A-one", 2), (2, b"B" * 16, 3)]
    finally:
        for x in (a, b, r):
            x.call("close")
        buf.close()
        ctx.assert_clean()


# ------------------------------------------------------------------ 5. segment lifecycle

def test_segment_removed_when_all_processes_exit_normally(ctx):
    name = ctx.name()
    creator, user = spawn_agents(ctx, 2)
    creator.ok("create", name=name, capacity=16384)
    user.ok("attach", name=name)
    user.ok("reader", name="backup-1")
    creator.ok("append", data=b"x".hex())
    assert user.ok("read", name="backup-1", timeout=5)["entries"] == [[1, b"x".hex()]]
    creator.ok("exit")                           # leaves without close(): finalizers at exit
    assert creator.wait_exit() == 0
    assert os.path.exists(shm_path(name))        # the other process still uses it
    user.ok("exit")
    assert user.wait_exit() == 0
    ctx.assert_clean()


def test_segment_removed_at_exit_after_a_reader_was_dropped_without_close(ctx):
    name = ctx.name()
    user, = spawn_agents(ctx, 1)
    user.ok("create", name=name, capacity=16384, max_lag_seconds=None)
    user.ok("reader", name="backup-1")
    user.ok("drop_reader", name="backup-1")
    in_sync = [r for r in user.ok("info")["readers"] if r["in_sync"]]
    user.ok("exit")
    assert user.wait_exit() == 0
    assert not os.path.exists(shm_path(name)), f"segment left behind; in-sync readers: {in_sync}"


@pytest.mark.parametrize("how", ["create", "attach"])
def test_segment_of_sigkilled_processes_is_swept_by_the_next_open(ctx, how):
    name = ctx.name()
    live_name = ctx.name()
    live = ctx.own(LogBuffer(4096, name=live_name))
    creator, user = spawn_agents(ctx, 2)
    creator.ok("create", name=name, capacity=16384)
    user.ok("attach", name=name)
    user.ok("reader", name="backup-1")
    creator.ok("append", data=b"x".hex())
    creator.kill()
    user.kill()
    assert os.path.exists(shm_path(name))        # nobody closed it
    if how == "create":
        other = LogBuffer(4096, name=ctx.name())  # any name
        other.close()
    else:
        other = LogBuffer.attach(live_name)
        other.close()
    assert not os.path.exists(shm_path(name))
    assert os.path.exists(shm_path(live_name))   # a live segment is never swept
    with pytest.raises(SegmentError):
        LogBuffer.attach(name)
    live.close()
    ctx.assert_clean()


def test_attach_to_a_missing_segment_raises_segment_error(ctx):
    name = ctx.name()
    with pytest.raises(SegmentError, match="no log buffer"):
        LogBuffer.attach(name)
    a, = spawn_agents(ctx, 1)
    res = a.call("attach", name=name)
    assert res["error"] == "SegmentError"
    a.ok("exit")
    ctx.assert_clean()


def _corrupt(path: str, how: str) -> None:
    with open(path, "r+b") as f:
        if how == "bad-magic":
            f.write(os.urandom(64))
        elif how == "not-initialised":
            f.seek(80)                            # hr_static_t.ready
            f.write(b"\0" * 8)
        elif how == "bad-capacity":
            f.seek(16)                            # hr_static_t.capacity
            f.write(struct.pack("<Q", 12345))
        elif how == "truncated":
            f.truncate(8192)
        elif how == "short":
            f.truncate(100)
        else:
            raise AssertionError(how)


@pytest.mark.parametrize("how", ["bad-magic", "not-initialised", "bad-capacity", "truncated", "short"])
@pytest.mark.parametrize("old", [False, True], ids=["fresh", "old"])
def test_attach_to_a_damaged_segment_raises_or_sweeps(ctx, how, old):
    source = ctx.name()
    name = ctx.name()
    live = ctx.own(LogBuffer(16384, name=source, min_in_sync=0))
    live.append(b"payload")
    shutil.copyfile(shm_path(source), shm_path(name))
    _corrupt(shm_path(name), how)
    if old:                                       # past the sweep's grace period
        t = time.time() - 3600
        os.utime(shm_path(name), (t, t))
    with pytest.raises(SegmentError):
        LogBuffer.attach(name)
    if old:
        assert not os.path.exists(shm_path(name)), "an old damaged segment is swept"
    else:
        assert os.path.exists(shm_path(name)), "a fresh one may still be being created"
        os.unlink(shm_path(name))
    live.close()
    ctx.assert_clean()


def test_attachments_of_killed_processes_are_reclaimed(ctx):
    name = ctx.name()
    buf = ctx.own(LogBuffer(4096, name=name))               # attachment 1 (alive)
    crasher, = spawn_agents(ctx, 1)
    crasher.ok("attach", name=name, handles=63)             # attachments 2..64
    crasher.kill()
    try:
        other = LogBuffer.attach(name)                      # only one live process uses it
        other.close()
    finally:
        buf.close()
        ctx.assert_clean()


def test_a_segment_being_created_is_never_swept(ctx, monkeypatch):
    """Another process's sweep (every create and attach runs one) at each step of a
    creation -- before the header is written and before the creator registers -- must
    leave the new segment alone."""
    name = ctx.name()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    swept = []

    def sweep_elsewhere(step):
        out = subprocess.run(
            [sys.executable, "-c", "from hashring.log import sweep_stale_segments as s; print(s())"],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        swept.append((step, out.stdout.strip(), os.path.exists(shm_path(name))))

    class SweptWhileCreating(logmod._logbuf.Segment):
        def init(self, *args):
            sweep_elsewhere("before init")
            return super().init(*args)

        def register(self, start, index=-1):
            sweep_elsewhere("before register")
            return super().register(start, index)

    monkeypatch.setattr(logmod._logbuf, "Segment", SweptWhileCreating)
    buf = ctx.own(LogBuffer(4096, name=name))
    monkeypatch.undo()
    sweep_elsewhere("after")
    exists = os.path.exists(shm_path(name))
    buf.close()
    assert [step for step, _, _ in swept] in (
        ["before init", "before register", "after"], ["before register", "before init", "after"])
    assert exists and all(e for _, _, e in swept), f"the new segment was swept while being created: {swept}"
    ctx.assert_clean()


def test_police_does_not_free_a_slot_that_was_rejoined_meanwhile(ctx, monkeypatch):
    name = ctx.name()
    buf = ctx.own(LogBuffer(16384, name=name, max_lag_seconds=None, min_in_sync=0))
    victim, = spawn_agents(ctx, 1)
    victim.ok("attach", name=name)
    victim.ok("reader", name="backup-1")
    buf.append(b"one")
    assert len(victim.ok("read", name="backup-1", timeout=5)["entries"]) == 1
    victim.ok("ack", name="backup-1", seq=1)
    victim.kill()
    buf.append(b"two")

    real_alive = logmod._alive
    rejoined = []

    def alive(pid, start):
        if pid == victim.pid and not rejoined and sys._getframe(1).f_code.co_name in ("_police", "police"):
            # The restarted backup takes its old slot over while the police looks at /proc.
            rejoined.append(buf.reader("backup-1"))
        return real_alive(pid, start)

    monkeypatch.setattr(logmod, "_alive", alive)
    buf.wait_committed(2, timeout=0.05)                     # not committed yet: runs the police
    monkeypatch.undo()
    assert rejoined, "the police never looked at the dead reader"
    reader = rejoined[0]
    try:
        assert [s for s, _ in reader.read(timeout=1)] == [2]
        assert slot_of(buf, "backup-1").pid == os.getpid()
    finally:
        reader.close()
        buf.close()
        ctx.assert_clean()


# ------------------------------------------------------------------ 6. backpressure, idle CPU

def test_backpressure_with_more_processes_than_cores(ctx):
    """1 writer + 3 readers (4 processes on 2 cores), blocking appends and blocking reads."""
    name = ctx.name()
    n = 200_000
    buf = ctx.own(LogBuffer(65536, name=name, max_lag_seconds=None))
    writer = ctx.spawn("rate_writer", name=name, n=n, readers=3)
    writer.expect("ready")
    readers = [ctx.spawn("rate_reader", name=name, reader_name=f"backup-{i}", first=1, last=n)
               for i in range(3)]
    for r in readers:
        r.expect("joined")
    done = writer.expect("done", timeout=90)
    results = [r.expect("done", timeout=60) for r in readers]
    for r in results:
        assert r["errors"] == []
    assert done["committed"] and done["last_seq"] == n
    print(f"\n1 writer + 3 readers on {os.cpu_count()} cores: {done['rate']:,.0f} entries/s "
          f"(writer cpu {done['cpu']:.2f} s, reader cpu {[round(r['cpu'], 2) for r in results]})")
    assert done["rate"] > 50_000, done
    for c in [writer, *readers]:
        assert c.wait_exit() == 0
    buf.close()
    ctx.assert_clean()


def test_idle_waiters_do_not_burn_a_core(ctx):
    name = ctx.name()
    buf = ctx.own(LogBuffer(4096, name=name, max_lag_seconds=None))
    # An idle reader process waiting 1 s for entries that never come.
    idle = ctx.spawn("idle_waits", name=name, reader_name="idle")
    idle.expect("joined")
    res = idle.expect("done", timeout=30)
    assert res["entries"] == 0 and res["wall"] >= 0.95
    assert res["cpu"] < 0.5 and res["times_cpu"] < 0.5, res
    assert idle.wait_exit() == 0
    measured = [("reader read(timeout=1)", res["wall"], res["cpu"])]

    # A writer blocked by a live reader that does not read, then a commit wait.
    lazy, = spawn_agents(ctx, 1)
    lazy.ok("attach", name=name)
    lazy.ok("reader", name="lazy")
    with pytest.raises(BufferFull):
        for i in range(1000):
            buf.append(b"z" * 200, timeout=0 if i < 999 else 1.0)
    last = buf.last_seq
    c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    with pytest.raises(BufferFull):
        buf.append(b"z" * 200, timeout=1.0)
    c1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    assert t1 - t0 >= 0.95 and cpu < 0.5, (t1 - t0, cpu)
    measured.append(("writer append(timeout=1) while full", t1 - t0, cpu))
    c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    assert buf.wait_committed(last, timeout=1.0) is False
    c1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    assert t1 - t0 >= 0.95 and cpu < 0.5, (t1 - t0, cpu)
    measured.append(("wait_committed(timeout=1)", t1 - t0, cpu))
    print("\n" + "\n".join(f"idle {what}: {wall:.2f} s wall, {cpu:.3f} s cpu" for what, wall, cpu in measured))
    lazy.ok("close")
    lazy.ok("exit")
    assert lazy.wait_exit() == 0
    buf.close()
    ctx.assert_clean()
