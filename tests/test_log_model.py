"""LogBuffer against a plain-Python model: byte positions, frames, padding, acks, commit.

The model knows the frame layout (32-byte header + payload rounded up to 32, padding to the
end of the ring when a frame does not fit before it), so it knows exactly when the writer is
full: an entry fits iff ``tail + span - gate <= capacity``, where ``span`` includes the padding
and ``gate`` is the lowest ack position of the in-sync readers (the published tail when there
are none). It also follows the writer's cached gate and ``free_pos`` (joins must start at or
above it) and the commit position beside the commit seq, because joins depend on them.

Private hooks are used on purpose, each for something the public API cannot do or show:
``buf._seg.evict_slot(slot)`` evicts a reader on demand (the public eviction only runs on the
writer's limits); ``buf._seg.published()``, ``commit_seq()``, ``commit_pos()`` and
``free_pos()`` read shared words *without* recomputing them (the ``commit_seq`` property
recomputes, which would hide where the library recomputes); ``reader._core.slot`` gives the
slot order the commit's tie-breaking follows.
"""

import re
import struct
from collections import deque

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hashring.log import (BufferClosed, BufferFull, LogBuffer, LogBufferError, NotEnoughInSync,
                          ReaderLagged)

HEADER = 32
ALIGN = 32
NAMES = ["b0", "b1", "b2", "b3", "b4", "b5"]
STARTS = ["committed", "earliest", "tail"]
PATTERN = bytes(range(256)) * 40


def frame_size(n):
    return HEADER + (n + ALIGN - 1) // ALIGN * ALIGN


def payload(seq, n):
    """The bytes of entry ``seq`` of length ``n`` (derived from both, so a misplaced or
    stale entry never compares equal)."""
    return (struct.pack("<Q", seq) + PATTERN[seq % 251:seq % 251 + n])[:n]


def as_kind(data, kind):
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    return memoryview(bytearray(data))


class Entry:
    __slots__ = ("seq", "data", "start", "end")

    def __init__(self, seq, data, start, end):
        self.seq, self.data, self.start, self.end = seq, data, start, end


class MReader:
    """What the model knows of one reader handle."""

    def __init__(self, name, handle):
        self.name = name
        self.handle = handle
        self.state = "in-sync"     # "in-sync", "evicted" or "closed"
        self.acked = 0             # handle.acked == the slot's ack_seq (the commit's input)
        self.delivered = 0
        self.ack_pos = 0           # bytes below this may be reused by the writer
        self.next_seq = 1          # seq of the next entry read returns
        self.floor = 0             # seqs <= floor were never delivered to this reader
        self.slot = -1
        self.views = []            # (seq, view) from read_batch, delivered and not acked


sizes = st.one_of(
    st.integers(0, 72),
    st.integers(73, 600),
    st.integers(601, 2100),
    st.sampled_from([0, 1, 31, 32, 33, 63, 64, 65, 992, 1000, 4064, 8160]),
)
kinds = st.sampled_from(["bytes", "bytearray", "memoryview"])


class LogModel(RuleBasedStateMachine):
    """Drives one LogBuffer and the model side by side; subclasses fix the commit policy."""

    QUORUM = 0                 # 0: commit="all"; k: commit=k

    def __init__(self):
        super().__init__()
        self.buf = None

    # ------------------------------------------------------------------ setup
    @initialize(data=st.data())
    def setup(self, data):
        self.capacity = data.draw(st.sampled_from([4096, 8192]), "capacity")
        self.max_payload = self.capacity // 2 - HEADER   # a frame takes at most half the ring
        low = max(2, self.QUORUM)
        self.max_readers = data.draw(st.integers(low, max(low, 4)), "max_readers")
        self.min_in_sync = data.draw(st.integers(0, min(2, self.max_readers)), "min_in_sync")
        self.max_lag_bytes = data.draw(
            st.one_of(st.none(), st.sampled_from([self.capacity // 2, self.capacity - 512, self.capacity])),
            "max_lag_bytes")
        commit = "all" if self.QUORUM == 0 else self.QUORUM
        self.buf = LogBuffer(self.capacity, max_readers=self.max_readers, commit=commit,
                             min_in_sync=self.min_in_sync, max_lag_bytes=self.max_lag_bytes,
                             max_lag_seconds=None)
        self.tail = 0
        self.pub_tail = 0          # the published tail (a batch publishes when it ends or waits)
        self.last_seq = 0
        self.commit = 0
        self.commit_pos = 0        # a frame boundary at or before the end of the committed prefix
        self.seen_commit = 0
        # The writer's cached view: the gate of its last refresh, and free_pos, the highest
        # gate it ever saw (a joining reader must start at or above it).
        self.cached_gate = 0
        self.free_pos = 0
        self.members_changed = False
        self.entries = deque()
        self.readers = []
        for name in NAMES[:data.draw(st.integers(0, 2), "initial readers")]:
            self._add(name, data.draw(st.sampled_from(STARTS), "start"))

    def teardown(self):
        if self.buf is not None:
            for r in self.readers:
                r.views.clear()
            self.buf.close()

    # ------------------------------------------------------------------ model helpers
    def in_sync(self):
        return [r for r in self.readers if r.state == "in-sync"]

    def open_readers(self):
        return [r for r in self.readers if r.state != "closed"]

    def gate(self):
        return min([self.pub_tail] + [r.ack_pos for r in self.in_sync()])

    def span(self, n):
        need = frame_size(n)
        to_end = self.capacity - self.tail % self.capacity
        return need if to_end >= need else to_end + need

    def fits(self, n):
        return self.tail + self.span(n) - self.gate() <= self.capacity

    def write(self, n):
        need = frame_size(n)
        to_end = self.capacity - self.tail % self.capacity
        if to_end < need:
            self.tail += to_end                 # padding frame to the end of the ring
            event("write: padding at the wrap")
        elif to_end == need:
            event("write: frame ends exactly at the wrap")
        seq = self.last_seq + 1
        self.entries.append(Entry(seq, payload(seq, n), self.tail, self.tail + need))
        self.tail += need
        self.last_seq = seq

    def mark_evicted(self, r):
        r.state = "evicted"
        r.views.clear()                          # the writer may now reuse those bytes
        self.members_changed = True

    def police(self):
        """The writer's policing when it is full: readers further behind than max_lag_bytes
        are evicted (the time rule is off: max_lag_seconds=None)."""
        evicted = False
        if self.max_lag_bytes:
            for r in self.in_sync():
                if self.tail - r.ack_pos > self.max_lag_bytes:
                    self.mark_evicted(r)
                    event("police: evicted by max_lag_bytes")
                    evicted = True
        return evicted

    def refresh(self):
        self.cached_gate = self.gate()
        if len(self.in_sync()) >= self.min_in_sync:   # with too few, nothing is written
            self.free_pos = max(self.free_pos, self.cached_gate)
        self.members_changed = False

    def put_once(self, n):
        """One hr_writer_put: refresh on a membership change, refuse below min_in_sync,
        refresh again when the cached gate says full, then full or written."""
        if self.members_changed:
            self.refresh()
        if len(self.in_sync()) < self.min_in_sync:
            return "few"
        if self.tail + self.span(n) - self.cached_gate > self.capacity:
            self.refresh()
            if not self.fits(n):
                return "full"
        return "ok"

    def try_put(self, n):
        """Outcome of appending one entry of n bytes with timeout=0: "ok", "full" or "few".
        When full, the writer polices once (it does even with timeout=0) and tries again."""
        outcome = self.put_once(n)
        if outcome == "full":
            self.pub_tail = self.tail            # it publishes what it wrote, then waits
            outcome = self.put_once(n)
            if outcome == "full":
                self.police()
                outcome = self.put_once(n)
        return outcome

    def recompute_commit(self):
        """hr_commit_update: the commit seq and commit position from the in-sync readers'
        acks (in slot order, as the C selection sort sees them), both only raised."""
        rs = sorted(self.in_sync(), key=lambda r: r.slot)
        if len(rs) < self.min_in_sync:
            return
        seq, pos = self.last_seq, self.tail
        if self.QUORUM == 0:
            for r in rs:
                seq, pos = min(seq, r.acked), min(pos, r.ack_pos)
        else:
            k = self.QUORUM
            if len(rs) < k:
                return
            acks = [(r.acked, r.ack_pos) for r in rs]
            for i in range(k):                   # k-th largest ack, ties to the first
                best = i
                for j in range(i + 1, len(acks)):
                    if acks[j][0] > acks[best][0]:
                        best = j
                acks[i], acks[best] = acks[best], acks[i]
            if acks[k - 1][0] < seq:
                seq, pos = acks[k - 1]
        self.commit_pos = max(self.commit_pos, pos)
        if seq > self.commit:
            event("commit advances")
            self.commit = seq

    def entry(self, seq):
        e = self.entries[seq - self.entries[0].seq]
        assert e.seq == seq
        return e

    def trim(self):
        low = min(self.gate(), self.free_pos, self.commit_pos)
        while self.entries and self.entries[0].end <= low:
            self.entries.popleft()

    def start_position(self, start):
        """(position, seq before it) a join picks now; seq 0: the seq of the first frame."""
        if start == "tail":
            return self.tail, self.last_seq
        in_sync = self.in_sync()
        if start == "earliest" and in_sync:
            return min(x.ack_pos for x in in_sync), 0
        committed = max(self.commit_pos, self.free_pos)   # never below what the writer may reuse
        if committed < self.tail:
            return committed, 0
        return self.tail, self.last_seq

    def _join_model(self, r, pos, seq_before):
        r.state = "in-sync"
        r.views.clear()
        r.ack_pos = pos
        r.acked = r.delivered = seq_before
        if seq_before or pos == 0:
            r.next_seq = seq_before + 1
        else:
            r.next_seq = next((e.seq for e in self.entries if e.end > pos), self.last_seq + 1)
        r.floor = r.next_seq - 1
        r.slot = r.handle._core.slot             # the commit's tie-breaking follows slot order
        self.members_changed = True
        event(f"join at {'the tail' if pos == self.tail else 'an earlier position'}")

    def stale_start(self, start):
        """The join would start below free_pos: the writer may have reused those bytes, and
        the join gives up (see test_join_after_the_slowest_reader_left)."""
        pos, _ = self.start_position(start)
        if pos < self.free_pos:
            event("join skipped: stale commit position")
            return True
        return False

    def _join_error(self, name):
        """The error a join of ``name`` must raise now, or None."""
        if any(x.name == name for x in self.open_readers()):
            return ValueError, "in use"
        if len(self.open_readers()) >= self.max_readers:
            return LogBufferError, "reader slots are taken"
        return None

    def _add(self, name, start):
        err = self._join_error(name)
        if err is not None:
            with pytest.raises(err[0], match=err[1]) as info:
                self.buf.reader(name, start=start)
            assert type(info.value) in (ValueError, LogBufferError)
            return
        if self.stale_start(start):
            return
        pos, seq_before = self.start_position(start)
        r = MReader(name, self.buf.reader(name, start=start))
        self._join_model(r, pos, seq_before)
        self.readers.append(r)

    def pick(self, i, pool=None):
        pool = self.readers if pool is None else pool
        return pool[i % len(pool)]

    # ------------------------------------------------------------------ writer rules
    @rule(n=sizes, kind=kinds)
    def append(self, n, kind):
        n = min(n, self.max_payload)
        seq = self.last_seq + 1
        data = as_kind(payload(seq, n), kind)
        outcome = self.try_put(n)
        event(f"append: {outcome}")
        if outcome == "ok":
            assert self.buf.append(data, timeout=0) == seq
            self.write(n)
            self.pub_tail = self.tail
        elif outcome == "full":
            with pytest.raises(BufferFull):
                self.buf.append(data, timeout=0)
        else:
            with pytest.raises(NotEnoughInSync):
                self.buf.append(data, timeout=0)
            self.recompute_commit()              # the error path counts the in-sync readers

    @rule(ns=st.lists(sizes, max_size=8), kind=kinds, oversize=st.integers(0, 30))
    def append_many(self, ns, kind, oversize):
        ns = [min(n, self.max_payload) for n in ns]
        first = self.last_seq + 1
        items = [as_kind(payload(first + i, n), kind) for i, n in enumerate(ns)]
        if oversize < len(ns):
            # Every item is checked before any is written: nothing is appended.
            bad = items[:oversize] + [b"\x02" * (self.max_payload + 1)] + items[oversize:]
            limit = self.max_payload
            with pytest.raises(ValueError, match=rf"items\[{oversize}\] .*at most {limit} bytes"):
                self.buf.append_many(bad, timeout=0)
        outcome, done = "ok", len(ns)
        for i, n in enumerate(ns):
            outcome = self.try_put(n)
            if outcome != "ok":
                done = i
                break
            self.write(n)
        self.pub_tail = self.tail                # published at the end, or when it fails
        if outcome == "ok":
            assert self.buf.append_many(items, timeout=0) == self.last_seq
            return
        event(f"append_many: {outcome} after {'some' if done else 'none'}")
        exc = BufferFull if outcome == "full" else NotEnoughInSync
        with pytest.raises(exc) as info:
            self.buf.append_many(items, timeout=0)
        if done:                                 # the exception says how many were appended
            assert re.search(rf"\b{done}\b.*\bup to seq {self.last_seq}\b", str(info.value)), str(info.value)
        if outcome == "few":
            self.recompute_commit()

    @rule(extra=st.integers(1, 100), kind=kinds)
    def append_oversize(self, extra, kind):
        n = self.max_payload + extra
        with pytest.raises(ValueError, match=f"at most {self.max_payload} bytes"):
            self.buf.append(as_kind(b"\x01" * n, kind), timeout=0)

    # ------------------------------------------------------------------ reader rules
    @rule(name=st.sampled_from(NAMES), start=st.sampled_from(STARTS))
    def add_reader(self, name, start):
        self._add(name, start)

    def _expected(self, r, max_entries):
        last = min(self.last_seq, r.next_seq + max_entries - 1)
        return [(s, self.entry(s).data) for s in range(r.next_seq, last + 1)]

    def _delivered(self, r, got):
        if got:
            r.delivered = got[-1][0]
            r.next_seq = r.delivered + 1

    @precondition(lambda self: self.readers)
    @rule(i=st.integers(0, 63), max_entries=st.integers(1, 40))
    def read(self, i, max_entries):
        r = self.pick(i)
        if r.state == "closed":
            with pytest.raises(BufferClosed):
                r.handle.read(max_entries, timeout=0)
            return
        if r.state == "evicted":
            with pytest.raises(ReaderLagged):
                r.handle.read(max_entries, timeout=0)
            return
        want = self._expected(r, max_entries)
        got = r.handle.read(max_entries, timeout=0)
        assert got == want
        self._delivered(r, got)

    @precondition(lambda self: self.readers)
    @rule(i=st.integers(0, 63), max_entries=st.integers(1, 40))
    def read_batch(self, i, max_entries):
        r = self.pick(i)
        if r.state != "in-sync":
            exc = BufferClosed if r.state == "closed" else ReaderLagged
            with pytest.raises(exc):
                r.handle.read_batch(max_entries, timeout=0)
            return
        want = self._expected(r, max_entries)
        batch = r.handle.read_batch(max_entries, timeout=0)
        assert len(batch) == len(want)
        assert batch.last_seq == (want[-1][0] if want else 0)
        got = [(int(s), bytes(v)) for s, v in batch]
        assert got == want
        for k, (s, _) in enumerate(want):
            r.views.append((s, batch[k]))        # checked by the gating invariant until acked
        self._delivered(r, got)

    @precondition(lambda self: self.in_sync())
    @rule(i=st.integers(0, 63), batch=st.booleans())
    def drain(self, i, batch):
        """Read everything published and acknowledge it (what a healthy backup does)."""
        r = self.pick(i, self.in_sync())
        want = self._expected(r, 10**6)
        if batch:
            got = [(int(s), bytes(v)) for s, v in r.handle.read_batch(len(want) + 1, timeout=0)]
        else:
            got = r.handle.read(10**6, timeout=0)
        assert got == want
        self._delivered(r, got)
        if r.delivered > r.acked:
            r.handle.ack(r.delivered)
            r.acked = r.delivered
            r.ack_pos = self.entry(r.acked).end
            r.views.clear()
            self.recompute_commit()

    @precondition(lambda self: self.readers)
    @rule(i=st.integers(0, 63), data=st.data())
    def ack(self, i, data):
        r = self.pick(i)
        h = r.handle
        # Seqs in (acked, floor] were never delivered (a reader that started after them): not
        # drawn here, see test_ack_of_a_seq_never_delivered_to_a_late_reader.
        # The handle's own last ack: a late joiner counts nothing before its first delivered
        # entry as its own (see readers_match).
        acked = max(r.acked, r.floor) if r.delivered > r.floor else r.acked
        valid = [acked] + list(range(acked + 1, r.delivered + 1))
        invalid = [r.delivered + 1, r.delivered + 1 + data.draw(st.integers(0, 10**6)), acked - 1, -1]
        if data.draw(st.booleans(), "valid"):
            seq = data.draw(st.sampled_from(valid), "seq")
        else:
            seq = data.draw(st.sampled_from(invalid), "bad seq")
        if r.state == "closed":
            with pytest.raises(BufferClosed):
                h.ack(seq)
            return
        if seq not in valid:
            with pytest.raises(ValueError, match=r"ack\(-?\d+\)"):
                h.ack(seq)
            return
        if seq == acked:
            h.ack(seq)                           # a no-op, even for an evicted reader
            return
        if r.state == "evicted":
            with pytest.raises(ReaderLagged):
                h.ack(seq)
            return
        h.ack(seq)
        r.acked = seq
        r.ack_pos = self.entry(seq).end
        r.views = [(s, v) for s, v in r.views if s > seq]
        self.recompute_commit()                  # ack recomputes the commit

    @precondition(lambda self: self.readers)
    @rule(i=st.integers(0, 63), bad=st.sampled_from([True, 1.0, "1", None]))
    def ack_wrong_type(self, i, bad):
        r = self.pick(i)
        exc = BufferClosed if r.state == "closed" else TypeError
        with pytest.raises(exc):
            r.handle.ack(bad)

    @precondition(lambda self: self.readers)
    @rule(i=st.integers(0, 63))
    def close_reader(self, i):
        r = self.pick(i)
        r.handle.close()
        if r.state != "closed":
            self.members_changed = True
        r.state = "closed"
        r.views.clear()

    @precondition(lambda self: any(r.state != "closed" for r in self.readers))
    @rule(i=st.integers(0, 63))
    def evict_reader(self, i):
        # Private hook: the public eviction only happens on the writer's timers/limits.
        r = self.pick(i, self.open_readers())
        if self.buf._seg.evict_slot(r.handle._core.slot):
            assert r.state == "in-sync"
            self.mark_evicted(r)
        else:
            assert r.state == "evicted"

    @precondition(lambda self: any(r.state != "in-sync" for r in self.readers))
    @rule(i=st.integers(0, 63), start=st.sampled_from(STARTS))
    def rejoin(self, i, start):
        r = self.pick(i, [x for x in self.readers if x.state != "in-sync"])
        if r.state == "evicted":
            if self.stale_start(start):
                return
            r.state = "closed"                   # rejoin releases the old slot first
            self.members_changed = True
        else:
            err = self._join_error(r.name)
            if err is not None:
                with pytest.raises(err[0], match=err[1]):
                    r.handle.rejoin(start)
                return
            if self.stale_start(start):
                return
        pos, seq_before = self.start_position(start)
        r.handle.rejoin(start)
        self._join_model(r, pos, seq_before)

    # ------------------------------------------------------------------ commit rules
    @rule()
    def read_commit_seq(self):
        self.recompute_commit()                  # the property recomputes
        assert self.buf.commit_seq == self.commit

    @rule(data=st.data())
    def wait_committed(self, data):
        seq = data.draw(st.integers(0, self.last_seq), "seq")
        self.recompute_commit()
        assert self.buf.wait_committed(seq, timeout=0) == (self.commit >= seq)
        with pytest.raises(ValueError, match="has not been appended"):
            self.buf.wait_committed(self.last_seq + 1, timeout=0)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def positions_and_seqs(self):
        if self.buf is None:
            return
        self.trim()
        assert self.buf.last_seq == self.last_seq
        tail, seq = self.buf._seg.published()
        assert (tail, seq) == (self.tail, self.last_seq)
        assert self.tail - self.gate() <= self.capacity

    @invariant()
    def commit_matches(self):
        if self.buf is None:
            return
        stored = self.buf._seg.commit_seq()      # without recomputing
        assert stored == self.commit
        assert self.buf._seg.commit_pos() == self.commit_pos
        assert self.buf._seg.free_pos() == self.free_pos
        assert stored >= self.seen_commit        # never goes backwards
        assert stored <= self.last_seq
        self.seen_commit = stored

    @invariant()
    def readers_match(self):
        if self.buf is None:
            return
        info = {ri.name: ri for ri in self.buf.readers()}
        assert set(info) == {r.name for r in self.open_readers()}
        for r in self.open_readers():
            ri = info[r.name]
            assert (ri.state, ri.in_sync) == (r.state, r.state == "in-sync")
            assert ri.acked_seq == r.acked
            assert ri.lag_entries == max(0, self.last_seq - r.acked)
            assert ri.lag_bytes == max(0, self.tail - r.ack_pos)
            # A reader that joined without knowing the seq counts nothing before its first
            # delivered entry as its own to acknowledge (the slot's ack_seq is unchanged).
            handle_acked = max(r.acked, r.floor) if r.delivered > r.floor else r.acked
            assert (r.handle.acked, r.handle.delivered) == (handle_acked, r.delivered)

    @invariant()
    def unacked_views_intact(self):
        # The writer never overwrites bytes an in-sync reader has not acknowledged.
        for r in self.in_sync() if self.buf is not None else ():
            for s, v in r.views:
                assert bytes(v) == self.entry(s).data, f"entry {s} of reader {r.name} was overwritten"


SETTINGS = settings(max_examples=300, stateful_step_count=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class CommitAll(LogModel):
    QUORUM = 0


class CommitQuorum2(LogModel):
    QUORUM = 2


class CommitQuorum1(LogModel):
    QUORUM = 1


TestCommitAll = CommitAll.TestCase
TestCommitAll.settings = SETTINGS
TestCommitQuorum2 = CommitQuorum2.TestCase
TestCommitQuorum2.settings = SETTINGS
TestCommitQuorum1 = CommitQuorum1.TestCase
TestCommitQuorum1.settings = settings(SETTINGS, max_examples=80)


# ---------------------------------------------------------------------- hand-written cases

# Regressions: before 5e8cfc8 a fresh buffer, and a writer that had already seen the in-sync
# set shrink, accepted appends below min_in_sync.
def test_fresh_buffer_refuses_appends_below_min_in_sync():
    buf = LogBuffer(4096, min_in_sync=1)
    try:
        with pytest.raises(NotEnoughInSync):
            buf.append(b"x", timeout=0)
        assert buf.last_seq == 0
    finally:
        buf.close()


@pytest.mark.parametrize("kind", ["bytes", "bytearray"])
def test_append_after_reader_leaves_refused_below_min_in_sync(kind):
    buf = LogBuffer(4096, min_in_sync=1)
    try:
        r = buf.reader("a")
        assert buf.append(b"1") == 1
        r.close()
        for _ in range(2):                       # every append, not just the first
            with pytest.raises(NotEnoughInSync):
                buf.append(as_kind(b"2", kind), timeout=0)
        assert buf.last_seq == 1
    finally:
        buf.close()


def test_joining_reader_takes_part_in_committing_what_is_not_committed():
    """The default start ("committed") delivers every uncommitted entry and counts for it;
    start="tail" is documented to count earlier entries as acknowledged."""
    buf = LogBuffer(4096, commit=1, min_in_sync=1)
    try:
        a = buf.reader("a")
        for i in range(5):
            buf.append(b"%d" % i)
        late = buf.reader("late")
        assert late.acked == 0
        assert buf.commit_seq == 0                       # nobody acknowledged anything
        assert not buf.wait_committed(5, timeout=0)
        assert [s for s, _ in late.read(10, timeout=0)] == [1, 2, 3, 4, 5]
        late.ack(3)
        assert buf.commit_seq == 3
        t = buf.reader("tail", start="tail")              # counts as having acknowledged 1..5
        assert t.acked == 5
        assert buf.commit_seq == 5
        assert a.acked == 0
    finally:
        buf.close()


@pytest.mark.parametrize("min_in_sync", [0, 1])
def test_join_after_the_slowest_reader_left(min_in_sync):
    buf = LogBuffer(4096, min_in_sync=min_in_sync, max_lag_seconds=None)
    try:
        slow = buf.reader("slow", start="tail")
        keep = buf.reader("fast", start="tail") if min_in_sync == 0 else None
        for i in range(10):
            buf.append(b"x%d" % i)
        if keep is not None:
            keep.ack(keep.read(100, timeout=0)[-1][0])
        slow.close()
        try:
            buf.append(b"y")                             # the writer refreshes: free_pos moves on
        except NotEnoughInSync:
            assert min_in_sync == 1
        for start in ("committed", "earliest"):
            r = buf.reader("new-" + start, start=start)
            assert r.read(100, timeout=0)[-1][0] == buf.last_seq
    finally:
        buf.close()


def test_model_frame_rule_examples():
    """The model's frame and padding rule, by hand (positions from the private published())."""
    buf = LogBuffer(4096, min_in_sync=0, max_lag_seconds=None)
    try:
        r = buf.reader("r")
        for i in range(32):                      # 32 frames of 128 bytes fill the ring exactly
            buf.append(payload(i + 1, 96), timeout=0)
        with pytest.raises(BufferFull):
            buf.append(b"", timeout=0)           # 32 bytes more than the capacity
        r.ack(r.read(1, timeout=0)[0][0])        # frees the first 128 bytes
        assert buf.append(payload(33, 96), timeout=0) == 33
        with pytest.raises(BufferFull):
            buf.append(b"", timeout=0)
        r.ack(r.read(100, timeout=0)[-1][0])
        assert buf._seg.published()[0] == 4096 + 128
        for i in range(30):                      # up to 128 bytes before the end of the ring
            buf.append(payload(34 + i, 96), timeout=0)
        assert buf._seg.published()[0] == 8192 - 128
        # gate = 4096 + 128: a 192-byte frame alone would fit (8064 + 192 - 4224 <= 4096),
        # but with the 128 bytes of padding to the end of the ring it does not.
        with pytest.raises(BufferFull):
            buf.append(payload(64, 129), timeout=0)
        r.ack(r.read(1, timeout=0)[0][0])        # 128 bytes more: now it fits
        assert buf.append(payload(64, 129), timeout=0) == 64
        assert buf._seg.published()[0] == 8192 + 192
        got = r.read(100, timeout=0)
        assert [s for s, _ in got] == list(range(35, 65))
        assert got[-1] == (64, payload(64, 129))
    finally:
        buf.close()
