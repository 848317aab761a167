"""LogBuffer under Python threads: a long variable-length stream to four readers, two
appending threads, GIL release while waiting, and eviction by time.

Payload lengths and bytes are derived from the seq, so every reader can check each entry on
its own. Tests that can crash the interpreter (a closed buffer used by a blocked thread) run
their scenario in a child process.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from hashring.log import (BufferClosed, BufferFull, LogBuffer, NotEnoughInSync, ReaderLagged)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Payload of seq s: LENS[s % 4096] bytes (0..200), the seq itself first, then filler.
LENS = [(i * 2654435761 >> 11) % 201 for i in range(4096)]
FILL = [bytes((i * 131 + j * 17) & 255 for j in range(200)) for i in range(4096)]


def payload(seq):
    k = seq & 4095
    return (seq.to_bytes(8, "little") + FILL[k])[:LENS[k]]


def frame_size(n):
    return 32 + (n + 31) // 32 * 32


def run_child(code, timeout=60):
    """Run a scenario in a fresh interpreter; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------- 1. the long stream

def stream(n, capacity=1 << 16):
    """1 writer (append, and append_many for every other run of 5000 seqs), 4 readers (two
    with read, two with read_batch), a thread waiting for commits. Returns measurements."""
    buf = LogBuffer(capacity, max_readers=4)           # commit="all", min_in_sync=1
    readers = [buf.reader(f"backup-{i}") for i in range(4)]
    errors, counts = [], [0] * 4
    stop = threading.Event()

    def fail(exc):
        errors.append(exc)
        stop.set()

    def read_copies(i, r, max_entries):
        nxt = 1
        while nxt <= n and not stop.is_set():
            got = r.read(max_entries, timeout=0.5)
            for s, p in got:
                if s != nxt or p != payload(s):
                    raise AssertionError(f"{r.name}: got seq {s} ({len(p)} bytes), expected {nxt}")
                nxt += 1
            if got:
                if len(got) > 1:
                    r.ack(got[len(got) // 2][0])         # a partial ack, then the rest
                r.ack(got[-1][0])
            counts[i] = nxt - 1

    def read_views(i, r, max_entries):
        nxt = 1
        while nxt <= n and not stop.is_set():
            batch = r.read_batch(max_entries, timeout=0.5)
            for s, view in batch:
                data = bytes(view)                       # copy before the ack
                if s != nxt or data != payload(s):
                    raise AssertionError(f"{r.name}: got seq {s} ({len(data)} bytes), expected {nxt}")
                nxt += 1
            if len(batch):
                r.ack(batch.last_seq)
            counts[i] = nxt - 1

    modes = [(read_copies, 300), (read_views, 64), (read_copies, 7), (read_views, 1024)]

    def reader_main(i, r):
        try:
            how, max_entries = modes[i]
            how(i, r, max_entries)
        except BaseException as exc:                     # noqa: BLE001 - reported below
            fail(exc)

    waits = {}

    def committer():
        try:
            for target in (n // 2, n):
                while buf.last_seq < target and not stop.is_set():
                    time.sleep(0.005)
                if stop.is_set():
                    return
                ok = buf.wait_committed(target, timeout=60)
                # commit="all": every in-sync reader acknowledged the target by now.
                waits[target] = (ok, buf.commit_seq, min(ri.acked_seq for ri in buf.readers()))
        except BaseException as exc:                     # noqa: BLE001
            fail(exc)

    threads = [threading.Thread(target=reader_main, args=(i, r)) for i, r in enumerate(readers)]
    threads.append(threading.Thread(target=committer))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    total_bytes = 0
    try:
        seq = 0
        while seq < n and not stop.is_set():
            if (seq // 5000) % 2:
                last = min(n, seq + 1 + (seq % 97))
                items = [payload(s) for s in range(seq + 1, last + 1)]
                assert buf.append_many(items, timeout=30) == last
                total_bytes += sum(frame_size(len(p)) for p in items)
                seq = last
            else:
                p = payload(seq + 1)
                assert buf.append(p, timeout=30) == seq + 1
                total_bytes += frame_size(len(p))
                seq += 1
    except BaseException as exc:                         # noqa: BLE001
        fail(exc)
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - t0
    try:
        if errors:
            raise errors[0]
        assert not any(t.is_alive() for t in threads)
        return dict(elapsed=elapsed, counts=counts, waits=waits, last_seq=buf.last_seq,
                    commit=buf.commit_seq, wraps=total_bytes // capacity,
                    states=[ri.state for ri in buf.readers()])
    finally:
        buf.close()


def check_stream(n, res):
    assert res["counts"] == [n] * 4                       # every seq exactly once, in order, exact bytes
    assert res["last_seq"] == n
    assert res["commit"] == n
    assert res["states"] == ["in-sync"] * 4
    for target in (n // 2, n):
        ok, commit, min_acked = res["waits"][target]
        assert ok and commit >= target and min_acked >= target
    assert res["wraps"] >= 1000


def test_stream_one_million_entries_four_readers():
    n = 10**6
    res = stream(n)
    check_stream(n, res)
    print(f"\n{n} entries, {res['wraps']} wraps, {res['elapsed']:.1f} s")


# ---------------------------------------------------------------------- 2. two appending threads

@pytest.mark.parametrize("second", ["append", "append_many"])
def test_two_threads_append_concurrently(second):
    per_thread = 20000
    buf = LogBuffer(4096, max_lag_seconds=None)         # small: both writers block often
    r = buf.reader("drain")
    got_seqs = {0: [], 1: []}
    errors = []
    start = threading.Barrier(3)

    def writer(tid):
        try:
            start.wait()
            i = 0
            while i < per_thread:
                if tid == 1 and second == "append_many":
                    k = min(1 + i % 7, per_thread - i)
                    items = [b"T%d-%d-" % (tid, i + j) + b"x" * ((i + j) % 50) for j in range(k)]
                    last = buf.append_many(items, timeout=30)
                    got_seqs[tid].extend(range(last - k + 1, last + 1))   # a batch is contiguous
                    i += k
                else:
                    got_seqs[tid].append(buf.append(b"T%d-%d-" % (tid, i) + b"x" * (i % 50), timeout=30))
                    i += 1
        except BaseException as exc:                     # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tid,)) for tid in (0, 1)]
    for t in threads:
        t.start()
    start.wait()
    entries = {}
    deadline = time.monotonic() + 60
    while len(entries) < 2 * per_thread and time.monotonic() < deadline and not errors:
        got = r.read(1000, timeout=0.1)
        for s, p in got:
            assert s == len(entries) + 1                 # contiguous, in order
            entries[s] = p
        if got:
            r.ack(got[-1][0])
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors[0]
        all_seqs = got_seqs[0] + got_seqs[1]
        assert sorted(all_seqs) == list(range(1, 2 * per_thread + 1))     # distinct, nothing lost
        for tid in (0, 1):
            assert got_seqs[tid] == sorted(got_seqs[tid])                  # each thread in order
            for i, s in enumerate(got_seqs[tid]):
                assert entries[s] == b"T%d-%d-" % (tid, i) + b"x" * (i % 50)
        assert buf.last_seq == 2 * per_thread
    finally:
        buf.close()


# ---------------------------------------------------------------------- 3. GIL release while waiting

def test_blocked_read_releases_gil_and_wakes_promptly():
    buf = LogBuffer(4096, min_in_sync=0)
    r = buf.reader("r")
    result = {}

    def blocked():
        result["entered"] = time.monotonic()
        result["got"] = r.read(10, timeout=10.0)
        result["returned"] = time.monotonic()

    t = threading.Thread(target=blocked)
    t.start()
    try:
        while "entered" not in result:
            time.sleep(0.001)
        # This thread keeps running Python code while the other waits in read().
        ticks, gaps, last = 0, 0.0, time.monotonic()
        end = last + 0.3
        while (now := time.monotonic()) < end:
            ticks += 1
            gaps, last = max(gaps, now - last), now
        assert t.is_alive() and "returned" not in result
        assert ticks > 10000
        assert gaps < 0.1, f"this thread stalled {gaps:.3f} s while the reader waited"
        sent = time.monotonic()
        seq = buf.append(b"wake up")
        t.join(5)
        assert result["got"] == [(seq, b"wake up")]
        latency = result["returned"] - sent
        assert latency < 0.1, f"the reader woke {latency * 1000:.1f} ms after the append"
    finally:
        t.join(10)
        buf.close()


def test_read_timeout_without_data():
    buf = LogBuffer(4096, min_in_sync=0)
    r = buf.reader("r")
    try:
        t0 = time.monotonic()
        assert r.read(timeout=0.2) == []
        assert len(r.read_batch(timeout=0.2)) == 0
        elapsed = time.monotonic() - t0
        assert 0.4 <= elapsed < 1.5
    finally:
        buf.close()


def test_blocked_append_releases_gil_for_a_reader_thread():
    """The writer blocks on a full buffer; a reader thread of the same process acks, and
    the writer goes on (it could not if the blocked append held the GIL)."""
    buf = LogBuffer(4096, max_lag_seconds=None)
    r = buf.reader("r")
    while True:
        try:
            buf.append(b"f" * 200, timeout=0)
        except BufferFull:
            break
    done = []

    def drain():
        time.sleep(0.2)                                  # the writer is blocked by now
        got = r.read(1000, timeout=0)
        r.ack(got[-1][0])
        done.append(time.monotonic())

    t = threading.Thread(target=drain)
    t.start()
    try:
        t0 = time.monotonic()
        seq = buf.append(b"after", timeout=10)
        assert done and time.monotonic() - t0 >= 0.15
        assert r.read(1000, timeout=0) == [(seq, b"after")]
    finally:
        t.join(10)
        buf.close()


# ---------------------------------------------------------------------- 4. eviction by time

def fill(buf, fast):
    """Append until not even an empty entry fits; ``fast`` reads and acks as it goes."""
    n = 0
    for size in (100, 0):
        while True:
            assert n < 10000, "the buffer never fills"
            try:
                buf.append(b"e" * size, timeout=0)
            except BufferFull:
                break
            n += 1
            got = fast.read(1000, timeout=0)
            fast.ack(got[-1][0])
    return n


def test_reader_that_stops_acking_is_evicted_by_time():
    lag = 0.5
    buf = LogBuffer(4096, max_lag_seconds=lag)
    slow = buf.reader("slow")
    fast = buf.reader("fast")
    try:
        assert slow.read(1000, timeout=0) == []
        n = fill(buf, fast)
        assert n > 10
        t0 = time.monotonic()
        seq = buf.append(b"proceeds", timeout=10)       # blocked by "slow" until it is evicted
        waited = time.monotonic() - t0
        assert lag * 0.9 <= waited < lag + 1.5, waited
        states = {ri.name: ri.state for ri in buf.readers()}
        assert states == {"slow": "evicted", "fast": "in-sync"}
        with pytest.raises(ReaderLagged):
            slow.read(10, timeout=0)
        with pytest.raises(ReaderLagged):
            slow.read_batch(10, timeout=0)
        assert fast.read(10, timeout=0) == [(seq, b"proceeds")]
        # The evicted reader no longer gates: four rings' worth go through, gated by "fast" only.
        fast.ack(seq)
        for _ in range(100):
            s = buf.append(b"e" * 100, timeout=0)
            assert fast.read(10, timeout=0)[-1][0] == s
            fast.ack(s)
        slow.rejoin()                                    # start="tail"
        assert slow.read(10, timeout=0) == []
        assert {ri.name: ri.state for ri in buf.readers()}["slow"] == "in-sync"
        fast.read(10**6, timeout=0)
        fast.ack(fast.delivered)
        new = buf.append(b"new", timeout=0)
        assert slow.read(10, timeout=0) == [(new, b"new")]
        slow.ack(new)
        fast.read(10, timeout=0)
        fast.ack(new)
        assert buf.commit_seq == new
    finally:
        buf.close()


def test_wait_committed_evicts_a_silent_reader_by_time():
    lag = 0.3
    buf = LogBuffer(4096, max_lag_seconds=lag)
    a = buf.reader("a")
    b = buf.reader("b")
    try:
        seq = buf.append(b"x")
        a.ack(a.read(10, timeout=0)[-1][0])
        t0 = time.monotonic()
        assert buf.wait_committed(seq, timeout=5)        # b says nothing: evicted, commit goes on
        waited = time.monotonic() - t0
        assert lag * 0.9 <= waited < lag + 1.5, waited
        assert {ri.name: ri.state for ri in buf.readers()} == {"a": "in-sync", "b": "evicted"}
        with pytest.raises(ReaderLagged):
            b.read(10, timeout=0)
        b.rejoin(start="earliest")
        assert {ri.name: ri.state for ri in buf.readers()} == {"a": "in-sync", "b": "in-sync"}
    finally:
        buf.close()


def test_reader_that_keeps_acking_is_not_evicted():
    """A slow but steady reader: the writer blocks on it again and again for longer than
    max_lag_seconds in total, but it catches up each time."""
    lag = 0.3
    buf = LogBuffer(4096, max_lag_seconds=lag)
    r = buf.reader("steady")
    stop = threading.Event()
    errors = []

    def steady():
        try:
            while not stop.is_set():
                got = r.read(1000, timeout=0.05)
                if got:
                    time.sleep(0.02)                     # "makes it durable"
                    r.ack(got[-1][0])
        except BaseException as exc:                     # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=steady)
    t.start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 * lag:
            buf.append(b"s" * 300, timeout=5)
        assert not errors, errors
        assert buf.readers()[0].state == "in-sync"
    finally:
        stop.set()
        t.join(10)
        buf.close()


@pytest.mark.parametrize("how", ["wait_committed", "blocked append"])
def test_idle_caught_up_reader_is_not_evicted_after_a_quiet_period(how):
    lag = 0.3
    buf = LogBuffer(4096, max_lag_seconds=lag, min_in_sync=1)
    a = buf.reader("a")
    try:
        seq = buf.append(b"1")
        assert a.read(10, timeout=0) == [(seq, b"1")]
        a.ack(seq)
        assert buf.wait_committed(seq, timeout=0)
        time.sleep(2 * lag)                              # nothing to do: a is fully caught up
        if how == "wait_committed":
            seq = buf.append(b"2")
            assert not buf.wait_committed(seq, timeout=0.05)   # a has not read it yet
        else:
            with pytest.raises(BufferFull):
                for _ in range(100):
                    buf.append(b"b" * 200, timeout=0.05)
        assert [ri.state for ri in buf.readers()] == ["in-sync"]   # lagged for 0.05 s < 0.3 s
        got = a.read(1000, timeout=0)
        a.ack(got[-1][0])
        assert buf.commit_seq == buf.last_seq
    finally:
        buf.close()


# ---------------------------------------------------------------------- closing under a blocked thread

BLOCKED = {
    "read": """
        r = buf.reader("r")
        call = lambda: r.read(timeout=5.0)
    """,
    "append": """
        r = buf.reader("r")
        while True:
            try:
                buf.append(b"x" * 100, timeout=0)
            except BufferFull:
                break
        call = lambda: buf.append(b"y" * 100, timeout=5.0)
    """,
    "wait_committed": """
        r = buf.reader("r")
        seq = buf.append(b"x")
        call = lambda: buf.wait_committed(seq, timeout=5.0)
    """,
}


@pytest.mark.parametrize("what", sorted(BLOCKED))
def test_close_while_another_thread_is_blocked(what):
    code = """
        import threading, time
        from hashring.log import LogBuffer, BufferFull, LogBufferError
        for _ in range(3):
            buf = LogBuffer(4096, max_lag_seconds=None)
    """ + textwrap.indent(textwrap.dedent(BLOCKED[what]), " " * 12) + """
            out = []
            def run():
                try:
                    out.append(call())
                except LogBufferError as exc:
                    out.append(type(exc).__name__)
            t = threading.Thread(target=run)
            t.start()
            time.sleep(0.1)
            buf.close()
            t.join(10)
            assert not t.is_alive()
            print(out)
        print("done")
    """
    proc = run_child(code)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip().endswith("done")


def test_close_reader_while_its_read_is_blocked():
    buf = LogBuffer(4096, min_in_sync=0)
    r = buf.reader("r")
    out = []

    def run():
        try:
            out.append(r.read(timeout=5.0))
        except Exception as exc:                         # noqa: BLE001
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        time.sleep(0.1)
        r.close()
        t.join(5)
        assert len(out) == 1 and isinstance(out[0], BufferClosed), out
    finally:
        t.join(5)
        buf.close()


def test_concurrent_read_of_one_reader_is_refused():
    buf = LogBuffer(4096, min_in_sync=0)
    r = buf.reader("r")
    out = []

    def run():
        out.append(r.read(timeout=1.0))

    t = threading.Thread(target=run)
    t.start()
    try:
        time.sleep(0.1)
        with pytest.raises(RuntimeError, match="in use by another thread"):
            r.read(timeout=0)
        buf.append(b"z")
        t.join(5)
        assert out == [[(1, b"z")]]
    finally:
        t.join(5)
        buf.close()


def test_not_enough_in_sync_while_appending_from_threads():
    """A reader leaving under a running writer thread: its next append is refused."""
    buf = LogBuffer(1 << 16, min_in_sync=1, max_lag_seconds=None)
    r = buf.reader("only")
    refused = []

    def writer():
        while True:
            try:
                buf.append(b"w", timeout=5)
            except NotEnoughInSync:
                refused.append(buf.last_seq)
                return
            except BufferFull:
                return

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.05)
        r.close()
        t.join(10)
        assert refused and buf.last_seq == refused[0]
    finally:
        t.join(5)
        buf.close()
