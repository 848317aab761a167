"""Bad input to LogBuffer and LogReader: clear exceptions, and nothing corrupted.

After every refused call the buffer is checked: last_seq, commit_seq and the readers are
unchanged, and an append/read/ack round trip still works.
"""

import gc
import math
import mmap
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hashring.log import (BufferClosed, BufferFull, LogBuffer, LogBufferError, ReaderLagged,
                          SegmentError)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHM = "/dev/shm"
PREFIX = "hashring-log-"


def unique(tag):
    return f"badinput-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def shm_files(tag=""):
    return sorted(f for f in os.listdir(SHM) if f.startswith(PREFIX + "badinput-" + tag))


class Harness:
    """A buffer with one acknowledging reader and a few committed entries."""

    def __init__(self, **kw):
        kw.setdefault("max_lag_seconds", None)
        self.buf = LogBuffer(4096, max_readers=3, **kw)
        self.probe = self.buf.reader("probe")
        for i in range(3):
            self.buf.append(b"entry-%d" % i)
        self.probe.ack(self.probe.read(10, timeout=0)[-1][0])
        assert self.buf.commit_seq == 3

    def state(self):
        return (self.buf.last_seq, self.buf.commit_seq,
                [(ri.name, ri.state, ri.acked_seq) for ri in self.buf.readers()])

    def check_intact(self, before):
        """State unchanged by the failed call; then the buffer still works."""
        assert self.state() == before
        seq = self.buf.append(b"round trip")
        assert seq == before[0] + 1
        assert self.probe.read(10, timeout=0) == [(seq, b"round trip")]
        self.probe.ack(seq)
        assert self.buf.commit_seq == seq


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.buf.close()


def refused(h, call, exc, match=None):
    before = h.state()
    with pytest.raises(exc, match=match) as info:
        call()
    h.check_intact(before)
    return info.value


# ---------------------------------------------------------------------- the constructor

BAD_CONSTRUCTOR = [
    (dict(capacity_bytes=4096.0), TypeError, "capacity_bytes must be an int"),
    (dict(capacity_bytes="4096"), TypeError, "capacity_bytes must be an int"),
    (dict(capacity_bytes=True), TypeError, "capacity_bytes must be an int"),
    (dict(capacity_bytes=None), TypeError, "capacity_bytes must be an int"),
    (dict(capacity_bytes=5000), ValueError, "power of two"),
    (dict(capacity_bytes=4096 * 3), ValueError, "power of two"),
    (dict(capacity_bytes=2048), ValueError, "capacity_bytes must be between 4096"),
    (dict(capacity_bytes=0), ValueError, "capacity_bytes"),
    (dict(capacity_bytes=-4096), ValueError, "capacity_bytes"),
    (dict(capacity_bytes=2**41), ValueError, "capacity_bytes"),
    (dict(max_readers=0), ValueError, "max_readers"),
    (dict(max_readers=65), ValueError, "max_readers"),
    (dict(max_readers=2.0), TypeError, "max_readers must be an int"),
    (dict(max_readers=None), TypeError, "max_readers must be an int"),
    (dict(commit="ALL"), ValueError, "commit"),
    (dict(commit="majority"), ValueError, "commit"),
    (dict(commit=0), ValueError, "commit"),
    (dict(commit=-1), ValueError, "commit"),
    (dict(commit=3, max_readers=2), ValueError, "commit"),
    (dict(commit=2.0), ValueError, "commit"),
    (dict(commit=True), ValueError, "commit"),
    (dict(commit=None), ValueError, "commit"),
    (dict(min_in_sync=-1), ValueError, "min_in_sync"),
    (dict(min_in_sync=3, max_readers=2), ValueError, "min_in_sync"),
    (dict(min_in_sync=1.0), TypeError, "min_in_sync must be an int"),
    (dict(min_in_sync=None), TypeError, "min_in_sync must be an int"),
    (dict(max_lag_bytes=0), ValueError, "max_lag_bytes"),
    (dict(max_lag_bytes=-1), ValueError, "max_lag_bytes"),
    (dict(max_lag_bytes=4097), ValueError, "max_lag_bytes"),
    (dict(max_lag_bytes=1.5), TypeError, "max_lag_bytes must be an int"),
    (dict(max_lag_seconds=0), ValueError, "max_lag_seconds"),
    (dict(max_lag_seconds=-1.0), ValueError, "max_lag_seconds"),
    (dict(max_lag_seconds=math.nan), ValueError, "max_lag_seconds"),
    (dict(max_lag_seconds=math.inf), ValueError, "max_lag_seconds"),
    (dict(max_lag_seconds="5"), (TypeError, ValueError), "max_lag_seconds"),
    (dict(max_lag_seconds=True), (TypeError, ValueError), "max_lag_seconds"),
    (dict(name=""), ValueError, "name"),
    (dict(name="a/b"), ValueError, "name"),
    (dict(name="x" * 201), ValueError, "name"),
    (dict(name="with space"), ValueError, "name"),
    (dict(name=5), TypeError, "name must be a str"),
    (dict(name=b"x"), TypeError, "name must be a str"),
]


@pytest.mark.parametrize("kw,exc,match", BAD_CONSTRUCTOR, ids=lambda v: repr(v)[:40])
def test_constructor_rejects(kw, exc, match):
    kw = dict(kw)
    capacity = kw.pop("capacity_bytes", 4096)
    with pytest.raises(exc, match=match):
        LogBuffer(capacity, **kw)


@pytest.mark.parametrize("kw,exc,match", [c for c in BAD_CONSTRUCTOR if "name" not in c[0]],
                         ids=lambda v: repr(v)[:40])
def test_named_constructor_rejects_without_leaving_a_segment(kw, exc, match):
    kw = dict(kw)
    capacity = kw.pop("capacity_bytes", 4096)
    name = unique("ctor")
    with pytest.raises(exc, match=match):
        LogBuffer(capacity, name=name, **kw)
    assert not os.path.exists(os.path.join(SHM, PREFIX + name))


def test_constructor_edges_that_are_valid():
    for kw in (dict(capacity_bytes=4096, max_readers=1, commit=1, min_in_sync=1),
               dict(capacity_bytes=1 << 20, max_readers=64, commit=64, min_in_sync=64),
               dict(capacity_bytes=np.int64(8192), max_readers=np.int32(2), commit=np.int64(2)),
               dict(capacity_bytes=4096, max_lag_bytes=4096, max_lag_seconds=1e8),
               dict(capacity_bytes=4096, min_in_sync=0, max_lag_bytes=1)):
        kw = dict(kw)
        buf = LogBuffer(kw.pop("capacity_bytes"), **kw)
        buf.close()


def test_duplicate_name_and_missing_attach():
    name = unique("dup")
    buf = LogBuffer(4096, name=name, min_in_sync=0)
    try:
        assert buf.append(b"one", timeout=0) == 1
        with pytest.raises(FileExistsError, match="exists"):
            LogBuffer(4096, name=name)
        assert buf.append(b"two", timeout=0) == 2        # the existing buffer is untouched
        assert buf.last_seq == 2
    finally:
        buf.close()
    assert not shm_files("dup-" + str(os.getpid()))
    with pytest.raises(SegmentError, match="no log buffer named"):
        LogBuffer.attach(unique("missing"))
    with pytest.raises(TypeError, match="name must be a str"):
        LogBuffer.attach(5)
    with pytest.raises(ValueError, match="name"):
        LogBuffer.attach("")
    with pytest.raises(ValueError, match="name"):
        LogBuffer.attach("../etc/passwd")


def test_append_on_a_non_writer_handle():
    name = unique("attach")
    owner = LogBuffer(4096, name=name, min_in_sync=0)
    try:
        r = owner.reader("r")
        assert owner.append(b"one") == 1
        other = LogBuffer.attach(name)
        try:
            assert not other.is_writer
            for call in (lambda: other.append(b"x"), lambda: other.append_many([b"x"])):
                with pytest.raises(LogBufferError, match="not the writer"):
                    call()
            assert (other.last_seq, owner.last_seq) == (1, 1)
            seen = other.reader("seen-from-attached", start="earliest")
            assert owner.append(b"two") == 2
            assert seen.read(10, timeout=0) == [(1, b"one"), (2, b"two")]
            assert r.read(10, timeout=0) == [(1, b"one"), (2, b"two")]
        finally:
            other.close()
    finally:
        owner.close()
    assert not os.path.exists(os.path.join(SHM, PREFIX + name))


def test_tiny_max_lag_seconds_is_not_silently_disabled():
    try:
        buf = LogBuffer(4096, max_lag_seconds=1e-10, min_in_sync=0)
    except ValueError:
        return                                           # refusing it would be fine too
    try:
        silent = buf.reader("silent")
        for _ in range(100):
            try:
                buf.append(b"x" * 200, timeout=0)
            except BufferFull:
                break
        buf.append(b"x" * 200, timeout=1.0)              # the silent reader is evicted at once
        assert {ri.name: ri.state for ri in buf.readers()} == {silent.name: "evicted"}
    finally:
        buf.close()


# ---------------------------------------------------------------------- append / append_many

class Weird:
    pass


@pytest.mark.parametrize("data", ["text", None, 5, 1.5, [1, 2], {"a": 1}, Weird(),
                                  memoryview(b"abcdef")[::2]],
                         ids=["str", "None", "int", "float", "list", "dict", "object", "strided"])
def test_append_rejects_non_bytes(h, data):
    exc = refused(h, lambda: h.buf.append(data, timeout=0), TypeError)
    assert "bytes-like" in str(exc)


def test_append_rejects_a_released_memoryview(h):
    m = memoryview(b"abc")
    m.release()
    refused(h, lambda: h.buf.append(m), ValueError, "released")


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize("extra", [1, 32, 4096, 10**6])
def test_append_rejects_oversize(h, kind, extra):
    data = b"o" * (4096 - 32 + extra)
    data = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]
    exc = refused(h, lambda: h.buf.append(data, timeout=0), ValueError)
    assert "2016" in str(exc) and "4096" in str(exc)     # the limit (half the ring less a header), the capacity


def test_append_accepts_every_bytes_like(h):
    import array
    for data in (b"b", bytearray(b"ba"), memoryview(b"mv"), memoryview(b"xmvx")[1:3],
                 array.array("i", [1, 2]), np.arange(4, dtype=np.uint8), b""):
        seq = h.buf.append(data)
        assert h.probe.read(1, timeout=0) == [(seq, bytes(data))]
        h.probe.ack(seq)


@pytest.mark.parametrize("timeout,exc", [(-1, ValueError), (-1e-9, ValueError), (math.nan, ValueError),
                                         ("1", TypeError), (True, TypeError), ([], TypeError),
                                         (1j, TypeError)])
def test_append_rejects_bad_timeouts(h, timeout, exc):
    refused(h, lambda: h.buf.append(b"t", timeout=timeout), exc, "timeout")
    refused(h, lambda: h.buf.append_many([b"t"], timeout=timeout), exc, "timeout")


def test_huge_timeouts_are_capped(h):
    for timeout in (math.inf, 1e300, 10**20):
        seq = h.buf.append(b"t", timeout=timeout)
        h.probe.ack(h.probe.read(1, timeout=0)[0][0])
        assert seq == h.buf.last_seq


@pytest.mark.parametrize("items,index", [
    ([b"a", "b"], 1), ([b"a", b"b", None], 2), ([5], 0), (b"ab", 0), ("ab", 0),
    ([b"a", bytearray(b"b"), memoryview(b"c"), 1.0], 3),
])
def test_append_many_rejects_non_bytes_items_and_appends_nothing(h, items, index):
    exc = refused(h, lambda: h.buf.append_many(items, timeout=0), TypeError)
    assert f"items[{index}]" in str(exc)


@pytest.mark.parametrize("items", [5, None, 1.5, Weird()], ids=["int", "None", "float", "object"])
def test_append_many_rejects_non_iterables(h, items):
    refused(h, lambda: h.buf.append_many(items), TypeError, "iterable")


def test_append_many_rejects_an_oversize_item_and_appends_nothing(h):
    items = [b"a", b"b", b"x" * 4065, b"c"]
    exc = refused(h, lambda: h.buf.append_many(items, timeout=0), ValueError, r"items\[2\]")
    assert "2016" in str(exc)


def test_append_many_iterable_that_raises(h):
    def gen():
        yield b"a"
        raise KeyError("from the iterable")

    refused(h, lambda: h.buf.append_many(gen()), KeyError)


def test_append_many_empty_and_generators(h):
    last = h.buf.last_seq
    assert h.buf.append_many([]) == last
    assert h.buf.append_many(iter([])) == last
    assert h.buf.append_many(x for x in (b"g1", b"g2")) == last + 2
    assert h.buf.append_many((b"t1", bytearray(b"t2"))) == last + 4
    got = h.probe.read(10, timeout=0)
    assert got == [(last + 1, b"g1"), (last + 2, b"g2"), (last + 3, b"t1"), (last + 4, b"t2")]
    h.probe.ack(last + 4)


@pytest.mark.parametrize("readers", [0, 1])
def test_large_entry_is_written_when_nothing_is_held(readers):
    """The largest entry (half the ring less a header) fits even when the wrap needs padding."""
    buf = LogBuffer(4096, min_in_sync=0, max_lag_seconds=None)
    try:
        r = buf.reader("r") if readers else None
        for data in (b"a" * 2016, b""):                  # tail at 2048, then 2080
            seq = buf.append(data, timeout=0)
            if r is not None:
                r.ack(r.read(1, timeout=0)[0][0])        # everything acknowledged
        # frame 2048 after 2016 bytes of padding: 4064 <= 4096
        assert buf.append(b"b" * 2016, timeout=0.5) == seq + 1
        with pytest.raises(ValueError, match="2017 bytes, too large: an entry holds at most 2016"):
            buf.append(b"c" * 2017, timeout=0)
    finally:
        buf.close()


def test_payload_over_4_gib_is_not_truncated():
    try:
        buf = LogBuffer(2**33, min_in_sync=0)            # 8 GiB of address space, untouched
        big = mmap.mmap(-1, 2**32 + 1)                   # 4 GiB of zero pages, untouched
    except (MemoryError, OSError) as exc:
        pytest.skip(f"no address space for the test: {exc}")
    try:
        r = buf.reader("r")
        try:
            seq = buf.append(memoryview(big), timeout=0)
        except ValueError:
            return                                       # refusing it would be right
        got = r.read(1, timeout=0)
        assert got[0][0] == seq and len(got[0][1]) == 2**32 + 1
    finally:
        buf.close()
        big.close()


# ---------------------------------------------------------------------- read / read_batch / ack

@pytest.mark.parametrize("method", ["read", "read_batch"])
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(max_entries=0), ValueError, "max_entries"),
    (dict(max_entries=-1), ValueError, "max_entries"),
    (dict(max_entries=2**31 + 1), ValueError, "max_entries"),
    (dict(max_entries=1.5), TypeError, "max_entries"),
    (dict(max_entries=True), TypeError, "max_entries"),
    (dict(max_entries="3"), TypeError, "max_entries"),
    (dict(max_entries=None), TypeError, "max_entries"),
    (dict(timeout=-1), ValueError, "timeout"),
    (dict(timeout=math.nan), ValueError, "timeout"),
    (dict(timeout="x"), TypeError, "timeout"),
    (dict(timeout=False), TypeError, "timeout"),
], ids=lambda v: repr(v)[:30])
def test_read_rejects(h, method, kwargs, exc, match):
    h.buf.append(b"pending")
    h.probe.read(10, timeout=0)                          # delivered, not yet acknowledged
    refused_call = getattr(h.probe, method)
    before = h.state()
    delivered = h.probe.delivered
    with pytest.raises(exc, match=match):
        refused_call(**kwargs)
    assert h.state() == before and h.probe.delivered == delivered
    h.probe.ack(delivered)
    h.check_intact(h.state())


@pytest.mark.parametrize("seq,exc", [(True, TypeError), (False, TypeError), (1.0, TypeError),
                                     ("1", TypeError), (None, TypeError), (b"1", TypeError)])
def test_ack_rejects_wrong_types(h, seq, exc):
    refused(h, lambda: h.probe.ack(seq), exc, "seq must be an int")


def test_ack_rejects_seqs_not_delivered_or_below_the_last_ack(h):
    h.buf.append(b"four")
    h.buf.append(b"five")
    assert [s for s, _ in h.probe.read(1, timeout=0)] == [4]    # delivered up to 4, acked 3
    before = h.state()
    for seq in (5, 6, 10**6, 2**64, 2**70):
        with pytest.raises(ValueError, match=r"only entries up to seq 4") as info:
            h.probe.ack(seq)
        assert f"ack({seq})" in str(info.value)
    for seq in (2, 0, -1, -2**70):
        with pytest.raises(ValueError, match=r"lower than .* last ack \(3\)"):
            h.probe.ack(seq)
    assert h.state() == before and (h.probe.acked, h.probe.delivered) == (3, 4)
    h.probe.ack(3)                                       # the last ack again: a no-op
    h.probe.ack(np.int64(4))                             # numpy ints are ints
    assert h.probe.acked == 4
    assert h.probe.read(10, timeout=0) == [(5, b"five")]
    h.probe.ack(5)
    h.check_intact(h.state())


@pytest.mark.parametrize("start", ["committed", "earliest"])
def test_ack_of_a_seq_never_delivered_to_a_late_reader(start):
    buf = LogBuffer(4096, min_in_sync=0, max_lag_seconds=None)
    try:
        first = buf.reader("first")
        for i in range(10):
            buf.append(b"%d" % i)
        first.read(10, timeout=0)
        first.ack(5)
        late = buf.reader("late", start=start)
        assert [s for s, _ in late.read(10, timeout=0)] == [6, 7, 8, 9, 10]
        ack_pos = {ri.name: ri.lag_bytes for ri in buf.readers()}["late"]
        with pytest.raises(ValueError):
            late.ack(3)                                  # 3 was never delivered to "late"
        assert {ri.name: ri.lag_bytes for ri in buf.readers()}["late"] == ack_pos
    finally:
        buf.close()


# ---------------------------------------------------------------------- readers

@pytest.mark.parametrize("name,exc", [
    ("", ValueError), ("a" * 64, ValueError), ("é" * 32, ValueError), ("a\0b", ValueError),
    ("\ud800", ValueError), (b"bytes", TypeError), (None, TypeError), (5, TypeError),
], ids=["empty", "64 bytes", "64 bytes of utf-8", "NUL", "surrogate", "bytes", "None", "int"])
def test_reader_rejects_bad_names(h, name, exc):
    refused(h, lambda: h.buf.reader(name), exc)


def test_reader_names_at_the_limits(h):
    for name in ("a" * 63, "é" * 31 + "a", "x", "名前", "with space/and.dots"):
        r = h.buf.reader(name)
        assert r.name == name and name in [ri.name for ri in h.buf.readers()]
        r.close()
    h.check_intact(h.state())


@pytest.mark.parametrize("start", ["x", "TAIL", None, ["tail"], 0])
def test_reader_rejects_bad_start(h, start):
    refused(h, lambda: h.buf.reader("s", start=start), ValueError, "start must be")


def test_duplicate_reader_name_in_use(h):
    exc = refused(h, lambda: h.buf.reader("probe"), ValueError, "in use")
    assert "probe" in str(exc)
    other = h.buf.reader("other")
    other.close()
    again = h.buf.reader("other")                        # free again once closed
    again.close()


def test_too_many_readers(h):
    extra = [h.buf.reader("r1"), h.buf.reader("r2")]     # max_readers=3 with "probe"
    before = h.state()
    with pytest.raises(LogBufferError, match="reader slots") as info:
        h.buf.reader("r3")
    assert not isinstance(info.value, ValueError)
    assert h.state() == before
    for r in extra:
        r.close()
    h.check_intact(h.state())
    h.buf.reader("r3").close()


def test_rejoin_with_a_bad_start_leaves_the_reader_alone(h):
    h.buf.append(b"x")
    with pytest.raises(ValueError, match="start must be"):
        h.probe.rejoin(start="bogus")
    assert [s for s, _ in h.probe.read(10, timeout=0)] == [4]


def test_rejoin_a_closed_reader_and_conflicts(h):
    r = h.buf.reader("r")
    r.close()
    with pytest.raises(BufferClosed):
        r.read()
    other = h.buf.reader("r")                            # the name is free: someone takes it
    with pytest.raises(ValueError, match="in use"):
        r.rejoin()
    with pytest.raises(BufferClosed):
        r.read()
    other.close()
    r.rejoin(start="tail")
    assert r.read(10, timeout=0) == []
    r.close()
    h.check_intact(h.state())


# ---------------------------------------------------------------------- closed readers and buffers

def test_closed_reader(h):
    r = h.buf.reader("closing")
    h.buf.append(b"x")
    r.read(10, timeout=0)
    r.close()
    r.close()                                            # twice is fine
    before = h.state()
    for call in (lambda: r.read(), lambda: r.read_batch(), lambda: r.ack(4), lambda: r.ack(True)):
        with pytest.raises(BufferClosed):
            call()
    assert h.state() == before
    h.probe.ack(h.probe.read(10, timeout=0)[-1][0])
    h.check_intact(h.state())


def test_closed_buffer():
    buf = LogBuffer(4096, min_in_sync=0)
    r = buf.reader("r")
    buf.append(b"x")
    batch = r.read_batch(10, timeout=0)
    buf.close()
    buf.close()                                          # twice is fine
    calls = [
        lambda: buf.append(b"x"), lambda: buf.append_many([b"x"]), lambda: buf.reader("new"),
        lambda: buf.readers(), lambda: buf.last_seq, lambda: buf.commit_seq,
        lambda: buf.wait_committed(0), lambda: r.read(), lambda: r.read_batch(),
        lambda: r.ack(1), lambda: r.rejoin(),
    ]
    for call in calls:
        with pytest.raises(BufferClosed):
            call()
    assert "closed" in repr(buf)
    assert bytes(batch[0]) == b"x"                       # a batch outlives the buffer: still mapped
    with pytest.raises(BufferClosed):
        buf.append(b"y")


def test_epoch_of_a_closed_buffer():
    code = """
        from hashring.log import LogBuffer, BufferClosed
        buf = LogBuffer(4096)
        buf.close()
        try:
            buf.epoch
        except BufferClosed:
            pass
        print("survived")
    """
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "survived" in proc.stdout, (proc.returncode, proc.stderr[-500:])


def test_dropped_reader_and_buffer_are_released():
    import weakref
    buf = LogBuffer(4096, min_in_sync=0)
    r = buf.reader("dropped")
    del r
    gc.collect()
    assert buf.readers() == []                           # the slot is free again
    buf.reader("dropped").close()
    ref = weakref.ref(buf)
    del buf
    gc.collect()
    assert ref() is None


def test_evicted_reader_errors():
    buf = LogBuffer(4096, min_in_sync=0, max_lag_seconds=None)
    try:
        r = buf.reader("r")
        buf.append(b"x")
        r.read(10, timeout=0)
        # Private hook: evict on demand (the public eviction runs on the writer's timers).
        assert buf._seg.evict_slot(r._core.slot)
        with pytest.raises(ReaderLagged, match="rejoin"):
            r.read()
        with pytest.raises(ReaderLagged):
            r.ack(1)
        with pytest.raises(ValueError):
            r.ack(2)                                     # argument errors come first
        r.ack(0)                                         # the last ack: a no-op
        r.rejoin(start="tail")
        assert r.read(10, timeout=0) == []
        assert buf.append(b"y") == 2
        assert r.read(10, timeout=0) == [(2, b"y")]
    finally:
        buf.close()


# ---------------------------------------------------------------------- wait_committed

@pytest.mark.parametrize("seq,exc,match", [
    (-1, ValueError, "seq"), (True, TypeError, "seq"), (1.0, TypeError, "seq"), ("1", TypeError, "seq"),
    (4, ValueError, "has not been appended"), (2**64, ValueError, "seq"),
])
def test_wait_committed_rejects(h, seq, exc, match):
    refused(h, lambda: h.buf.wait_committed(seq, timeout=0), exc, match)


@pytest.mark.parametrize("timeout,exc", [(-1, ValueError), (math.nan, ValueError), ("x", TypeError),
                                         (True, TypeError)])
def test_wait_committed_rejects_bad_timeouts(h, timeout, exc):
    refused(h, lambda: h.buf.wait_committed(1, timeout=timeout), exc, "timeout")
