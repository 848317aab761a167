"""LogBuffer: a lock-free replicated log buffer, in one process or across processes.

One writer (the primary) appends entries; up to ``max_readers`` readers (the backups) read
them through their own cursors and acknowledge what they have made durable; an entry is
committed once the readers the policy requires have acknowledged it. Readers that lag
too far or whose process died stop gating the writer and leave the in-sync set.

Buffers are private to a process (``name=None``) or live in a named shared-memory segment
(``/dev/shm/hashring-log-<name>``) that other processes attach to by name. The last
process to close a segment removes it; a segment left behind by processes that were
killed is removed by the next process that creates or attaches to a log buffer.
"""

from __future__ import annotations

import fcntl
import mmap
import numbers
import operator
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass


from . import _logbuf
from ._logbuf import monotonic_ns

__all__ = [
    "LogBuffer", "LogReader", "EntryBatch", "ReaderInfo",
    "LogBufferError", "BufferFull", "NotEnoughInSync", "ReaderLagged", "StaleEpoch", "WriterAlive",
    "BufferClosed", "SegmentError", "CorruptEntry",
]

SHM_DIR = "/dev/shm"
PREFIX = "hashring-log-"
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}\Z")
_MAX_CAPACITY = 1 << 40


class LogBufferError(Exception):
    """Base class of the log buffer's errors."""


class BufferFull(LogBufferError, TimeoutError):
    """No room for the entry before the timeout: the slowest in-sync reader is too far behind."""


class NotEnoughInSync(LogBufferError):
    """Fewer readers are in sync than ``min_in_sync``: appends are refused."""


class ReaderLagged(LogBufferError):
    """This reader fell behind (or its slot was reclaimed) and was evicted: resync, then rejoin()."""


class StaleEpoch(LogBufferError):
    """Another writer took over the buffer with a higher epoch."""


class WriterAlive(LogBufferError):
    """``attach(writer=True)`` without ``force``: the current writer's process is alive
    (it holds the writer lock). Stop it or wait for it to let go, then try again."""


class BufferClosed(LogBufferError, ValueError):
    """The buffer or reader was closed."""


class SegmentError(LogBufferError, OSError):
    """A shared segment is missing, not a log buffer, or damaged."""


class CorruptEntry(LogBufferError):
    """An entry failed its checks (only after a forced writer takeover)."""


# ------------------------------------------------------------------ processes

def _proc_start(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: fields follow the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):            # a zombie has finished
        return None
    return int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """Is the process (pid, start time) still running? Start time defeats pid reuse."""
    if pid <= 0:
        return False
    now = _proc_start(pid)
    return now is not None and (start == 0 or now == start)


_SELF_PID = os.getpid()
_SELF_START = _proc_start(_SELF_PID) or 0


def _self():
    global _SELF_PID, _SELF_START
    pid = os.getpid()
    if pid != _SELF_PID:                   # after a fork
        _SELF_PID, _SELF_START = pid, _proc_start(pid) or 0
    return _SELF_PID, _SELF_START


# ------------------------------------------------------------------ segments

def _path(name: str) -> str:
    return os.path.join(SHM_DIR, PREFIX + name)


def _check_name(name, what="name"):
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not _NAME_RE.match(name):
        raise ValueError(f"{what} {name!r} must be 1-200 characters of letters, digits, '.', '_' or '-'")
    return name


def _map_file(fd: int, size: int):
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def _segment_alive(seg) -> bool:
    """Does any process still use this segment (attached, writing or reading)?"""
    procs = [(pid, start) for _, pid, start in seg.attachments()]
    pid, start = seg.writer_info()[1:]
    procs.append((pid, start))
    for i in range(seg.settings()["max_readers"]):
        s = seg.slot(i)
        if s["state"] != _logbuf.SLOT_FREE:
            procs.append((s["pid"], s["start"]))
    return any(_alive(p, st) for p, st in procs if p)


def sweep_stale_segments(grace_seconds: float = 10.0) -> list[str]:
    """Remove log segments that no live process uses; returns the names removed.

    Called by every create and attach, so segments of killed processes do not pile up.
    """
    removed = []
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return removed
    me = _self()
    for entry in entries:
        if not entry.startswith(PREFIX):
            continue
        path = os.path.join(SHM_DIR, entry)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if st.st_size < 4096:
                stale = time.time() - st.st_mtime > grace_seconds
            else:
                mapping = _map_file(fd, st.st_size)
                seg = _logbuf.Segment(mapping, me[0])
                try:
                    if seg.bind() != 0:
                        stale = time.time() - st.st_mtime > grace_seconds
                    else:
                        stale = not _segment_alive(seg)
                finally:
                    seg.close()
                    mapping.close()
            if stale:
                os.unlink(path)
                removed.append(entry[len(PREFIX):])
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
    return removed


def _register(seg, start) -> bool:
    """Enter this process in the attachment table, first clearing entries of dead processes."""
    for index, pid, pstart in seg.attachments():
        if not _alive(pid, pstart):
            seg.clear_attachment(index, pid)
    return seg.register(start)


def _finalize(seg, mapping, path, writer, readers, lock_fd):
    """Release everything a handle holds: its reader slots, its attachment, the mapping."""
    for r in list(readers):
        r.close()
    if writer is not None:
        writer.close()
    if lock_fd is not None:
        os.close(lock_fd)            # releases the writer lock
    if path is not None:
        seg.unregister()
        try:
            if not _segment_alive(seg):
                os.unlink(path)
        except (OSError, ValueError):
            pass
    seg.close()
    try:
        mapping.close()
    except BufferError:        # a zero-copy batch still points into it; the OS unmaps at exit
        pass


# ------------------------------------------------------------------ public classes

@dataclass(frozen=True)
class ReaderInfo:
    """A reader as the buffer sees it."""

    name: str
    slot: int
    pid: int
    state: str              # "in-sync", "evicted" or "joining"
    in_sync: bool
    acked_seq: int
    lag_entries: int        # published entries not yet acknowledged
    lag_bytes: int
    last_ack_age: float     # seconds since its last read or ack


class EntryBatch:
    """A zero-copy batch from ``LogReader.read_batch``: payloads are views into the buffer.

    The views stay valid until the reader acknowledges past them; copy what you keep.
    """

    __slots__ = ("seqs", "starts", "lengths", "_data")

    def __init__(self, seqs, starts, lengths, data):
        self.seqs, self.starts, self.lengths, self._data = seqs, starts, lengths, data

    def __len__(self):
        return len(self.seqs)

    def __getitem__(self, i):
        start = int(self.starts[i])
        return self._data[start:start + int(self.lengths[i])]

    def __iter__(self):
        for i in range(len(self.seqs)):
            yield int(self.seqs[i]), self[i]

    @property
    def last_seq(self) -> int:
        """Seq of the last entry (0 for an empty batch)."""
        return int(self.seqs[-1]) if len(self.seqs) else 0


_positive_timeout = _logbuf.timeout_seconds    # the compiled writer validates timeouts the same way


class _Policy:
    """Decisions the compiled writer asks for: whom to evict, and what to raise.

    Kept apart from LogBuffer so the compiled objects never hold the buffer itself
    (its finalizer must be able to run when the user drops it)."""

    def __init__(self, seg):
        self.seg = seg
        settings = seg.settings()
        self.capacity = settings["capacity"]
        self.max_readers = settings["max_readers"]
        self.min_in_sync = settings["min_in_sync"]
        self.max_lag_bytes = settings["max_lag_bytes"]
        self.max_lag_ns = settings["max_lag_ns"]
        self.claiming = {}                # slot -> (pid, ns first seen claiming)
        self.watch = {}                   # slot -> (state word, tail seen, ns behind since)
        self.writer_epoch = 0

    def police(self):
        """Evict readers of dead processes and readers that lag beyond the limits.

        Runs (with the GIL) while the writer is blocked or a commit is awaited. Every change
        is a compare-and-swap from the state observed, so a slot taken over meanwhile by a
        new reader is left alone.
        """
        seg = self.seg
        tail, _ = seg.published()
        now = monotonic_ns()
        for i in range(self.max_readers):
            s = seg.slot(i)
            state = s["state"]
            if state == _logbuf.SLOT_FREE:
                self.claiming.pop(i, None)
                continue
            if state == _logbuf.SLOT_CLAIMING:
                # A joiner labels its slot just after claiming it: only a slot stuck in this
                # state for a second under the same dead owner is abandoned.
                seen = self.claiming.get(i)
                if seen is None or seen[0] != s["pid"]:
                    self.claiming[i] = (s["pid"], now)
                elif now - seen[1] > 1_000_000_000 and not _alive(s["pid"], s["start"]):
                    seg.free_slot_if(i, s["word"])
                    self.claiming.pop(i, None)
                continue
            self.claiming.pop(i, None)
            if not _alive(s["pid"], s["start"]):
                seg.free_slot_if(i, s["word"])        # reclaimed: its process is gone
                continue
            if state != _logbuf.SLOT_ACTIVE:
                continue
            behind = tail - s["ack_pos"]
            if not behind:
                self.watch.pop(i, None)
                continue
            # Lagging: too many unacknowledged bytes, or behind for max_lag_seconds. Behind
            # since: when first seen behind here, restarted whenever it has caught up with
            # the tail seen at the previous look, or (the reader's own stamp) acknowledged
            # everything it had read up to the tail.
            seen = self.watch.get(i)
            if seen is None or seen[0] != s["word"] or s["ack_pos"] >= seen[1]:
                since = now
            else:
                since = seen[2]
            self.watch[i] = (s["word"], tail, since)
            since = max(since, s["caught_up_ns"])
            if (self.max_lag_bytes and behind > self.max_lag_bytes) or (
                    self.max_lag_ns and now - since > self.max_lag_ns):
                seg.evict_slot(i, s["word"])
                self.watch.pop(i, None)

    def fail(self, rc, index, last_seq, item):
        """Raise the exception for a failed append (index: the failing item of a batch)."""
        what = "data" if index < 0 else f"items[{index}]"
        extra = f" ({index} entries of the batch were appended, up to seq {last_seq})" if index > 0 else ""
        if rc == -4:
            raise TypeError(f"{what} must be bytes-like, not {type(item).__name__}")
        if rc == -3:
            size = memoryview(item).nbytes
            raise ValueError(f"{what} is {size} bytes, too large: an entry holds at most "
                             f"{min(self.capacity // 2, 0xFFFFFFE0) - 32} bytes in a buffer of "
                             f"capacity {self.capacity} (half the ring, less its 32-byte header)")
        if rc == _logbuf.CLOSED:
            raise BufferClosed("the log buffer is closed")
        if rc == _logbuf.FULL:
            raise BufferFull("the buffer is full: the slowest in-sync reader has not acknowledged "
                             "enough entries before the timeout" + extra)
        if rc == _logbuf.FEW:
            _, n = self.seg.commit_update()
            raise NotEnoughInSync(f"{n} readers in sync, fewer than min_in_sync={self.min_in_sync}: "
                                  "appends are refused" + extra)
        if rc == _logbuf.STALE:
            raise StaleEpoch(f"this writer's epoch {self.writer_epoch} was superseded by epoch "
                             f"{self.seg.writer_info()[0]}: another writer took over" + extra)
        raise LogBufferError(f"append failed ({_logbuf.STATUS_NAMES.get(rc, rc)})" + extra)


class LogBuffer:
    """A bounded log with one writer and up to ``max_readers`` acknowledging readers.

    ``capacity_bytes``: a power of two >= 4096 (each entry takes 32 bytes of header plus
    its payload, rounded up to 32). ``commit``: ``"all"`` (every in-sync reader must
    acknowledge) or an int k (k acknowledgements). ``min_in_sync``: appends are refused
    while fewer readers are in sync. ``max_lag_bytes`` / ``max_lag_seconds``: a reader
    further behind, or not caught up for longer, is evicted when it blocks the writer.
    """

    def __init__(self, capacity_bytes: int, max_readers: int = 8, name: str | None = None,
                 commit="all", min_in_sync: int = 1, max_lag_bytes: int | None = None,
                 max_lag_seconds: float | None = 5.0):
        capacity = self._check_capacity(capacity_bytes)
        max_readers = _int_in("max_readers", max_readers, 1, _logbuf.MAX_READERS)
        if commit == "all":
            quorum = 0
        elif isinstance(commit, numbers.Integral) and not isinstance(commit, bool):
            quorum = _int_in("commit", commit, 1, max_readers)
        else:
            raise ValueError(f"commit must be 'all' or a quorum size (int), not {commit!r}")
        min_in_sync = _int_in("min_in_sync", min_in_sync, 0, max_readers)
        if max_lag_bytes is None:
            max_lag_bytes = 0
        else:
            max_lag_bytes = _int_in("max_lag_bytes", max_lag_bytes, 1, capacity)
        if max_lag_seconds is None:
            lag_ns = 0
        else:
            if isinstance(max_lag_seconds, bool) or not isinstance(max_lag_seconds, numbers.Real) \
                    or not (0 < max_lag_seconds < 1e9):
                raise ValueError(f"max_lag_seconds must be a positive number of seconds or None, "
                                 f"not {max_lag_seconds!r}")
            lag_ns = max(1, int(max_lag_seconds * 1e9))
        pid, start = _self()
        size = _logbuf.segment_size(capacity, max_readers)
        path = lock_fd = None
        if name is None:
            mapping = mmap.mmap(-1, size)
        else:
            _check_name(name)
            sweep_stale_segments()
            path = _path(name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise FileExistsError(f"a log buffer named {name!r} exists; use LogBuffer.attach({name!r})") from None
            try:
                os.ftruncate(fd, size)
                mapping = _map_file(fd, size)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)    # the writer's lifetime lock
            except BaseException:
                os.unlink(path)
                os.close(fd)
                raise
            lock_fd = fd
        seg = _logbuf.Segment(mapping, pid)
        if path is not None:
            _register(seg, start)
        seg.init(capacity, max_readers, quorum, min_in_sync, max_lag_bytes, lag_ns, start)
        self._open(seg, mapping, name, path, writer_epoch=1, lock_fd=lock_fd)

    @staticmethod
    def _check_capacity(capacity_bytes) -> int:
        capacity = _int_in("capacity_bytes", capacity_bytes, 4096, _MAX_CAPACITY)
        if capacity & (capacity - 1):
            raise ValueError(f"capacity_bytes must be a power of two, not {capacity}")
        return capacity

    def _open(self, seg, mapping, name, path, writer_epoch, lock_fd=None):
        self._seg = seg
        self._mapping = mapping
        self._name = name
        self._path = path
        self._policy = policy = _Policy(seg)
        self._capacity = policy.capacity
        self._max_readers = policy.max_readers
        self._min_in_sync = policy.min_in_sync
        self._readers = weakref.WeakSet()
        self._writer = None
        self._lock = threading.Lock()
        self._closed = False
        if writer_epoch is not None:
            self._writer = _logbuf.Writer(seg, writer_epoch, _self()[1], policy.police, policy.fail)
            policy.writer_epoch = writer_epoch
            # The hot calls go straight to the compiled writer (it validates and raises).
            self.append = self._writer.append
            self.append_many = self._writer.append_many
        self._finalizer = weakref.finalize(self, _finalize, seg, mapping, path, self._writer, self._readers,
                                           lock_fd)

    @classmethod
    def attach(cls, name: str, *, writer: bool = False, epoch: int | None = None,
               force: bool = False) -> LogBuffer:
        """Attach to the shared buffer ``name`` created by another process.

        With ``writer=True`` this handle takes over as the writer under ``epoch`` (default:
        the current epoch + 1); the previous writer's next append raises ``StaleEpoch``.
        A live writer holds a lock on the segment: taking over from it needs
        ``force=True``, which is safe only if the old writer is not inside an append at
        that moment (stop it first, or let a controller fence it); a dead writer's lock is
        gone, and nothing it was writing was ever published.
        """
        _check_name(name)
        sweep_stale_segments()
        path = _path(name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise SegmentError(f"no log buffer named {name!r} (no {path})") from None
        lock_fd = None
        try:
            size = os.fstat(fd).st_size
            if size < 4096:
                raise SegmentError(f"{path} is not a log buffer segment (size {size})")
            if writer:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    lock_fd = fd
                except BlockingIOError:
                    if not force:
                        raise WriterAlive(
                            f"the writer of {name!r} is alive (it holds the writer lock): stop it first, "
                            "or pass force=True to fence it by epoch") from None
            mapping = _map_file(fd, size)
        finally:
            if lock_fd is None:
                os.close(fd)
        pid, start = _self()
        seg = _logbuf.Segment(mapping, pid)

        def give_up(exc):
            seg.close()
            mapping.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise exc

        rc = seg.bind()
        if rc != 0:
            reason = {-1: "bad magic or version", -2: "not initialised", -3: "inconsistent header"}[rc]
            give_up(SegmentError(f"{path} is not a usable log buffer segment ({reason})"))
        if not _register(seg, start):
            give_up(SegmentError(f"too many processes are attached to {name!r}"))
        self = cls.__new__(cls)
        writer_epoch = None
        if writer:
            current = seg.writer_info()[0]
            if epoch is None:
                writer_epoch = current + 1
            else:
                try:
                    writer_epoch = _int_in("epoch", epoch, 1, 2**63)
                except (TypeError, ValueError) as exc:
                    give_up(exc)
                if writer_epoch <= current:
                    give_up(StaleEpoch(f"epoch {writer_epoch} is not above the buffer's epoch {current}"))
        try:
            self._open(seg, mapping, name, path, writer_epoch, lock_fd)
        except ValueError as exc:
            give_up(StaleEpoch(str(exc)))
        return self

    # --- properties -------------------------------------------------------------
    name = property(lambda self: self._name, doc="The shared segment's name (None: private).")
    capacity = property(lambda self: self._capacity, doc="Capacity of the data region in bytes.")
    max_readers = property(lambda self: self._max_readers)

    @property
    def epoch(self) -> int:
        """The buffer's current writer epoch."""
        self._check_open()
        return self._seg.writer_info()[0]

    @property
    def is_writer(self) -> bool:
        return self._writer is not None

    @property
    def last_seq(self) -> int:
        """Seq of the last published entry."""
        self._check_open()
        return self._seg.published()[1]

    @property
    def commit_seq(self) -> int:
        """Seq up to which every entry is committed (never goes backwards)."""
        self._check_open()
        return self._seg.commit_update()[0]

    # --- writing ----------------------------------------------------------------------
    def _writer_or_raise(self):
        self._check_open()
        if self._writer is None:
            raise LogBufferError("this handle is not the writer (attach with writer=True to take over)")
        return self._writer

    def append(self, data, timeout: float | None = None) -> int:
        """Append one entry (bytes-like); returns its seq.

        Blocks (GIL released) while the buffer is full, up to ``timeout`` seconds
        (None: no limit), then raises ``BufferFull``. Raises ``NotEnoughInSync`` while
        fewer than ``min_in_sync`` readers are in sync.
        """
        return self._writer_or_raise().append(data, timeout)

    def append_many(self, items, timeout: float | None = None) -> int:
        """Append many entries, publishing them together; returns the last seq.

        Every item is checked first, so a bad item appends nothing. If the buffer stays
        full past ``timeout`` (or readers drop below ``min_in_sync``) in the middle of the
        batch, the entries before that point stay appended; the exception says how many.
        """
        return self._writer_or_raise().append_many(items, timeout)

    def wait_committed(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until ``seq`` is committed; False if the timeout passes first."""
        self._check_open()
        seq = _int_in("seq", seq, 0, 2**64 - 1)
        if seq > self.last_seq:
            raise ValueError(f"seq {seq} has not been appended (last seq is {self.last_seq})")
        done = self._seg.wait_committed(seq, _positive_timeout(timeout), self._policy.police)
        if done is None:
            raise BufferClosed("the log buffer was closed while waiting for a commit")
        return done

    # --- readers ------------------------------------------------------------------
    def reader(self, name: str, start: str = "committed") -> LogReader:
        """Join as reader ``name`` (up to 63 bytes of UTF-8).

        ``start="committed"`` (default): from the end of the committed prefix, so the reader
        receives every entry that is not committed yet (a backup must, for "committed" to
        mean "held by the backups"); ``"earliest"``: from the oldest entry still held for
        the other in-sync readers; ``"tail"``: only entries appended from now on; the
        reader then takes no part in committing earlier ones (they count as acknowledged
        by it). A reader of the same name whose process died is taken over, resuming
        after its last acknowledgement.
        """
        self._check_open()
        if not isinstance(name, str):
            raise TypeError(f"reader name must be a str, not {type(name).__name__}")
        encoded = name.encode("utf-8", "strict")
        if not encoded or len(encoded) > _logbuf.NAME_MAX or b"\0" in encoded:
            raise ValueError(f"reader name {name!r} must be 1-{_logbuf.NAME_MAX} bytes of UTF-8 without NUL")
        if start not in ("committed", "earliest", "tail"):
            raise ValueError(f"start must be 'committed', 'earliest' or 'tail', not {start!r}")
        with self._lock:
            return self._join(name, encoded, start)

    def _join(self, name, encoded, start):
        seg = self._seg
        pid, pstart = _self()
        resume = None
        for i in range(self._max_readers):
            s = seg.slot(i)
            if s["state"] == _logbuf.SLOT_FREE or s["name"] != name:
                continue
            if _alive(s["pid"], s["start"]):
                raise ValueError(f"reader name {name!r} is in use (pid {s['pid']})")
            # Its process is gone: take the slot over, resuming after its last ack.
            if seg.claim_slot(i, s["word"]):
                resume = (i, s if s["state"] == _logbuf.SLOT_ACTIVE else None)
                break
        if resume is None:
            for i in range(self._max_readers):
                s = seg.slot(i)
                if s["state"] == _logbuf.SLOT_FREE and seg.claim_slot(i, s["word"]):
                    resume = (i, None)
                    break
            else:
                raise LogBufferError(f"all {self._max_readers} reader slots are taken")
        slot, previous = resume
        seg.name_slot(slot, encoded, pstart)
        for _ in range(100):
            if previous is not None:
                pos, seq_before = previous["ack_pos"], previous["ack_seq"]
            else:
                pos, seq_before = self._start_position(start)
            free = seg.activate_slot(slot, pos, seq_before, pstart)
            if free <= pos:
                break
            previous = None                # the writer moved on: take a later position
        else:
            seg.release_slot(slot)
            raise LogBufferError("could not join: the writer kept overtaking the start position")
        reader = LogReader(self, _logbuf.Reader(seg, slot, name, pos, seq_before))
        self._readers.add(reader._core)
        return reader

    def _start_position(self, start):
        """(position, seq before it); seq 0: the reader takes the seq of the first frame."""
        tail, seq = self._seg.published()
        if start == "tail":
            return tail, seq
        # As last computed (a lower one only re-delivers), and never below what the writer
        # may already reuse.
        committed = max(self._seg.commit_pos(), self._seg.free_pos())
        if start == "committed":
            return (committed, 0) if committed < tail else (tail, seq)
        best = None
        for i in range(self._max_readers):
            s = self._seg.slot(i)
            if s["state"] == _logbuf.SLOT_ACTIVE and (best is None or s["ack_pos"] < best[0]):
                best = (s["ack_pos"], s["ack_seq"])
        if best is None:
            return (committed, 0) if committed < tail else (tail, seq)
        return best[0], 0

    def readers(self) -> list[ReaderInfo]:
        """Every reader slot in use: position, lag and whether it is in sync."""
        self._check_open()
        tail, last = self._seg.published()
        now = monotonic_ns()
        names = {_logbuf.SLOT_ACTIVE: "in-sync", _logbuf.SLOT_EVICTED: "evicted", _logbuf.SLOT_CLAIMING: "joining"}
        out = []
        for i in range(self._max_readers):
            s = self._seg.slot(i)
            if s["state"] == _logbuf.SLOT_FREE:
                continue
            out.append(ReaderInfo(
                name=s["name"], slot=i, pid=s["pid"], state=names[s["state"]],
                in_sync=s["state"] == _logbuf.SLOT_ACTIVE, acked_seq=s["ack_seq"],
                lag_entries=max(0, last - s["ack_seq"]), lag_bytes=max(0, tail - s["ack_pos"]),
                last_ack_age=max(0.0, (now - s["heartbeat_ns"]) / 1e9),
            ))
        return out

    # --- lifecycle ------------------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise BufferClosed("the log buffer is closed")

    def close(self):
        """Close this handle: its readers leave; the last process out removes the segment."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        where = f"name={self._name!r}" if self._name else "private"
        state = "closed" if self._closed else f"last_seq={self.last_seq}, commit_seq={self.commit_seq}"
        return (f"<LogBuffer {where} capacity={self._capacity} readers<={self._max_readers} "
                f"epoch={self.epoch if not self._closed else '?'} {state}>")


class LogReader:
    """A reader's cursor: read entries, then acknowledge them."""

    __slots__ = ("_buffer", "_core", "__weakref__")

    def __init__(self, buffer: LogBuffer, core):
        self._buffer = buffer
        self._core = core

    name = property(lambda self: self._core.name)
    acked = property(lambda self: self._core.acked, doc="Last acknowledged seq.")
    delivered = property(lambda self: self._core.delivered, doc="Last seq returned by read.")

    def _check(self):
        if self._core.closed:
            raise BufferClosed(f"reader {self.name!r} is closed")
        self._buffer._check_open()

    def _raise(self, rc):
        if self._core.closed or self._buffer._closed:
            raise BufferClosed(f"reader {self.name!r} was closed")
        if rc == _logbuf.LAGGED:
            raise ReaderLagged(f"reader {self.name!r} lagged behind and was evicted (the writer no longer "
                               "waits for it): resync from a snapshot, then call rejoin()")
        if rc == _logbuf.CLOSED:
            raise ReaderLagged(f"reader {self.name!r} lost its slot (reclaimed as dead); call rejoin()")
        if rc == _logbuf.CORRUPT:
            raise CorruptEntry(f"reader {self.name!r}: the entry after seq {self.delivered} failed its checks")
        raise LogBufferError(f"read failed ({_logbuf.STATUS_NAMES.get(rc, rc)})")

    def read(self, max_entries: int = 1024, timeout: float | None = 0.0) -> list:
        """Up to ``max_entries`` entries as ``[(seq, bytes)]``, in order.

        Waits up to ``timeout`` seconds for the first one (0: don't wait; None: no limit).
        """
        self._check()
        max_entries = _int_in("max_entries", max_entries, 1, 2**31)
        rc, out = self._core.read(max_entries, _positive_timeout(timeout))
        if rc == -1:
            raise RuntimeError(f"reader {self.name!r} is in use by another thread")
        if rc != _logbuf.OK:
            self._raise(rc)
        return out

    def read_batch(self, max_entries: int = 1024, timeout: float | None = 0.0) -> EntryBatch:
        """Like ``read``, without copying: payloads are views valid until acknowledged."""
        self._check()
        max_entries = _int_in("max_entries", max_entries, 1, 2**31)
        rc, seqs, starts, lengths = self._core.read_batch(max_entries, _positive_timeout(timeout))
        if rc == -1:
            raise RuntimeError(f"reader {self.name!r} is in use by another thread")
        if rc != _logbuf.OK:
            self._raise(rc)
        return EntryBatch(seqs, starts, lengths, self._core.data_view())

    def ack(self, seq: int) -> None:
        """Acknowledge every delivered entry up to ``seq`` (made durable by this reader)."""
        self._check()
        if isinstance(seq, bool):
            raise TypeError("seq must be an int, not bool")
        try:
            seq = operator.index(seq)
        except TypeError:
            raise TypeError(f"seq must be an int, not {type(seq).__name__}") from None
        core = self._core
        if seq > core.delivered:
            raise ValueError(f"ack({seq}): only entries up to seq {core.delivered} were delivered to "
                             f"reader {self.name!r}")
        if seq < core.acked:
            raise ValueError(f"ack({seq}) is lower than reader {self.name!r}'s last ack ({core.acked})")
        if seq == core.acked:
            return
        rc = core.ack(seq)
        if rc != _logbuf.OK:
            self._raise(rc)

    def rejoin(self, start: str = "committed") -> None:
        """After ``ReaderLagged``: join again under the same name (``start`` as in ``reader``)."""
        self._buffer._check_open()
        if start not in ("committed", "earliest", "tail"):
            raise ValueError(f"start must be 'committed', 'earliest' or 'tail', not {start!r}")
        core = self._core
        new = self._buffer.reader(self.name, start) if core.closed else None
        if new is None:
            core.close()
            new = self._buffer.reader(self.name, start)
        self._core = new._core

    def close(self) -> None:
        """Leave: the slot is freed and this reader no longer gates the writer."""
        self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<LogReader {self.name!r} acked={self.acked} delivered={self.delivered}>"


def _int_in(what, value, low, high) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, not {value}")
    return value
