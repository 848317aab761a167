# cython: language_level=3
"""Compiled core of the log buffer: the mapping, the writer and the readers.

Mechanism only: ``log.py`` validates arguments, owns segment files and names, turns status
codes into exceptions, and decides when to evict a reader (``police``). Waits release the
GIL and back off: spin briefly, then yield, then sleep, so that more waiting processes
than cores do not starve the ones doing work.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, strncpy

import numpy as np

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int nanosleep(const timespec* req, timespec* rem)
    int CLOCK_MONOTONIC

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "Python.h":
    int PyObject_GetBuffer(object obj, Py_buffer* view, int flags) except -1
    void PyBuffer_Release(Py_buffer* view)
    enum:
        PyBUF_SIMPLE
    PyObject* PyList_GET_ITEM(object, Py_ssize_t)
    bint PyBytes_CheckExact(PyObject*)
    char* PyBytes_AS_STRING(PyObject*)
    Py_ssize_t PyBytes_GET_SIZE(PyObject*)

STATUS_NAMES = {HR_OK: "ok", HR_FULL: "full", HR_STALE: "stale", HR_EMPTY: "empty",
                HR_LAGGED: "lagged", HR_CORRUPT: "corrupt", HR_CLOSED: "closed", HR_FEW: "few"}
OK, FULL, STALE, EMPTY, LAGGED, CORRUPT, CLOSED, FEW = (HR_OK, HR_FULL, HR_STALE, HR_EMPTY,
                                                         HR_LAGGED, HR_CORRUPT, HR_CLOSED, HR_FEW)
SLOT_FREE, SLOT_CLAIMING, SLOT_ACTIVE, SLOT_EVICTED = (HR_SLOT_FREE, HR_SLOT_CLAIMING,
                                                      HR_SLOT_ACTIVE, HR_SLOT_EVICTED)
FRAME_HEADER = HR_FRAME_HEADER
MAX_READERS = HR_MAX_READERS
NAME_MAX = HR_NAME_MAX - 1


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


def monotonic_ns():
    """CLOCK_MONOTONIC in ns: the clock of the heartbeats in the shared segment."""
    return now_ns()


cdef inline void backoff(uint64_t round) noexcept nogil:
    """Spin a little, then yield the core, then sleep up to 1 ms."""
    cdef timespec ts
    cdef uint64_t ns
    if round < 64:
        hr_cpu_relax()
    elif round < 96:
        sched_yield()
    else:
        ns = 20000ULL << (round - 96 if round - 96 < 6 else 6)
        ts.tv_sec = 0
        ts.tv_nsec = <long>(ns if ns < 1000000 else 1000000)
        nanosleep(&ts, NULL)


cdef inline uint64_t deadline_after(double timeout) noexcept nogil:
    if timeout < 0:
        return 0xFFFFFFFFFFFFFFFFULL
    return now_ns() + <uint64_t>(timeout * 1e9)


POLICE_INTERVAL_NS = 5_000_000


def segment_size(uint64_t capacity, uint32_t max_readers):
    """Bytes of a segment: header, reader slots and the data region."""
    return hr_segment_size(capacity, max_readers)


cdef class Segment:
    """One mapping of a log segment (shared or private)."""

    def __cinit__(self, mapping, uint64_t pid):
        self.mapping = mapping
        self.view = memoryview(mapping)
        self.size = len(self.view)
        self.pid = pid
        self.attach_index = -1
        cdef unsigned char[::1] mv = self.view
        self.log.base = &mv[0]
        # The attachment table is usable before the header exists: a creator registers
        # first, so a concurrent sweep never takes its new segment for an abandoned one.
        self.log.attach = <hr_proc_t*>(self.log.base + 1024)

    def init(self, uint64_t capacity, uint32_t max_readers, int quorum, uint32_t min_in_sync,
             uint64_t max_lag_bytes, uint64_t max_lag_ns, uint64_t start):
        hr_log_init(self.log.base, capacity, max_readers, quorum, min_in_sync, max_lag_bytes,
                    max_lag_ns, self.pid, start)
        hr_log_bind(&self.log, self.log.base)

    def bind(self):
        """Check the header of an existing segment; returns 0 or a negative reason."""
        cdef int rc = hr_log_validate(self.log.base, self.size)
        if rc == 0:
            hr_log_bind(&self.log, self.log.base)
        return rc

    def register(self, uint64_t start, int index=-1):
        """Put this process in the attachment table; False when it is full."""
        cdef uint32_t i
        for i in range(<uint32_t>HR_MAX_ATTACH):
            if hr_cas64(&self.log.attach[i].pid, 0, self.pid):
                self.log.attach[i].start = start
                self.attach_index = i
                return True
        return False

    def unregister(self):
        if self.attach_index >= 0:
            self.log.attach[self.attach_index].start = 0
            hr_store_rel64(&self.log.attach[self.attach_index].pid, 0)
            self.attach_index = -1

    def attachments(self):
        """[(index, pid, start)] of the processes in the attachment table."""
        cdef uint32_t i
        cdef uint64_t p
        out = []
        for i in range(<uint32_t>HR_MAX_ATTACH):
            p = hr_load_acq64(&self.log.attach[i].pid)
            if p:
                out.append((i, p, self.log.attach[i].start))
        return out

    def clear_attachment(self, int i, uint64_t pid):
        """Remove a dead process's entry."""
        hr_cas64(&self.log.attach[i].pid, pid, 0)

    def settings(self):
        h = self.log.hdr
        return dict(capacity=h.capacity, max_readers=h.max_readers, quorum=h.quorum,
                    min_in_sync=h.min_in_sync, max_lag_bytes=h.max_lag_bytes,
                    max_lag_ns=h.max_lag_ns, creator_pid=h.creator_pid, creator_start=h.creator_start)

    def writer_info(self):
        return (hr_load_acq64(&self.log.wblock.epoch), self.log.wblock.pid, self.log.wblock.start)

    def published(self):
        """(tail, seq) of the last publish."""
        cdef hr_pub_t p = hr_published(&self.log)
        return (p.tail, p.seq)

    def commit_update(self):
        """Recompute the commit seq from the acks; returns (commit_seq, in_sync readers)."""
        cdef uint32_t n = 0
        cdef uint64_t c = hr_commit_update(&self.log, &n)
        return (c, n)

    def commit_seq(self):
        return hr_load_acq64(self.log.commit)

    def commit_pos(self):
        """A frame boundary at or before the end of the committed prefix."""
        return hr_load_acq64(self.log.commit_pos)

    def free_pos(self):
        return hr_load_acq64(self.log.free_pos)

    def slot(self, int i):
        """A snapshot of reader slot i as a dict."""
        cdef hr_slot_t* s = &self.log.slots[i]
        cdef uint32_t word = hr_load_acq32(&s.state)
        return dict(index=i, state=word & 0xFF, word=word, pid=s.pid, start=s.start,
                    ack_pos=hr_load_acq64(&s.ack_pos), ack_seq=hr_load_acq64(&s.ack_seq),
                    heartbeat_ns=s.heartbeat_ns, joined_seq=s.joined_seq, caught_up_ns=s.caught_up_ns,
                    name=s.name[:HR_NAME_MAX].split(b"\0", 1)[0].decode("utf-8", "replace"))

    def claim_slot(self, int i, uint32_t word):
        """Claim slot i if its state word is still word (as read by slot())."""
        return bool(hr_slot_claim(&self.log, i, word))

    def name_slot(self, int i, bytes name, uint64_t start):
        """Label a claimed slot with its name and owner (so a dead joiner can be reclaimed)."""
        cdef hr_slot_t* s = &self.log.slots[i]
        strncpy(s.name, name, HR_NAME_MAX - 1)
        s.name[HR_NAME_MAX - 1] = 0
        s.pid = self.pid
        s.start = start

    def activate_slot(self, int i, uint64_t pos, uint64_t seq_before, uint64_t start):
        """Returns free_pos after activation (join again if it is above pos)."""
        return hr_slot_activate(&self.log, i, pos, seq_before, self.pid, start, now_ns())

    def release_slot(self, int i):
        hr_slot_release(&self.log, i)

    def free_slot_if(self, int i, uint32_t word):
        """Free slot i only if its state word is still word; True if it was freed."""
        return bool(hr_slot_free_if(&self.log, i, word))

    def evict_slot(self, int i, word=None):
        """Evict in-sync reader i (only if its state word is still word, when given)."""
        cdef uint32_t w = hr_load_acq32(&self.log.slots[i].state) if word is None else word
        return bool(hr_slot_evict(&self.log, i, w))

    def wait_committed(self, uint64_t seq, double timeout, police):
        """Wait (GIL released) until the commit seq reaches seq; False on timeout, None if
        the segment was closed meanwhile."""
        cdef uint64_t deadline = deadline_after(timeout), round = 0, next_police = 0, t
        cdef uint32_t n
        self.waiters += 1
        try:
            while True:
                if self.closing:
                    return None
                if hr_commit_update(&self.log, &n) >= seq:
                    return True
                t = now_ns()
                if t >= deadline:
                    return False
                if t >= next_police:
                    police()
                    next_police = t + POLICE_INTERVAL_NS
                with nogil:
                    backoff(round)
                round += 1
        finally:
            self.waiters -= 1

    def close(self):
        """Unmap-safe close: waits (GIL released) until threads waiting on it have left."""
        self.closing = 1
        while self.waiters > 0:
            with nogil:
                backoff(96)
        self.unregister()
        try:
            self.view.release()
        except BufferError:     # zero-copy batches still point into it: leave it mapped
            pass
        self.view = None


cpdef double timeout_seconds(timeout) except -2.0:
    """None -> -1 (no limit); otherwise a finite number of seconds >= 0."""
    cdef double t
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool):
        raise TypeError("timeout must be a number of seconds or None, not bool")
    try:
        t = timeout
    except TypeError:
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}") from None
    if not t >= 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
    return t if t < 1e9 else 1e9


cdef class Writer:
    """The single writer of a segment.

    ``fail(status, index, last_seq, item)`` raises the exception for a failed append
    (log.py decides the message); ``police()`` runs while the writer is blocked.
    """

    def __cinit__(self, Segment seg, uint64_t epoch, uint64_t start, police, fail):
        self.seg = seg
        self.police = police
        self.fail = fail
        # A frame of at most half the ring always fits once the readers catch up, whatever
        # padding the wrap needs; lengths are 32-bit in the frame header.
        self.max_payload = min(seg.log.capacity // 2, 0xFFFFFFE0ULL) - HR_FRAME_HEADER
        rc = hr_writer_attach(&seg.log, &self.w, epoch, seg.pid, start)
        if rc != HR_OK:
            raise ValueError(f"epoch {epoch} is not above the segment's epoch")

    @property
    def epoch(self):
        return self.w.epoch

    @property
    def seq(self):
        return self.w.seq

    cdef int _enter(self) except -1:
        """Take the writer for this thread (appends from several threads are serialised)."""
        if self.closed:
            self.fail(HR_CLOSED, -1, 0, None)
        while self.busy:
            with nogil:
                sched_yield()
            if self.closed:
                self.fail(HR_CLOSED, -1, 0, None)
        self.busy = True
        return 0

    cdef int _check_item(self, PyObject* obj) except -1:
        cdef Py_buffer buf
        if PyBytes_CheckExact(obj):
            return -3 if <uint64_t>PyBytes_GET_SIZE(obj) > self.max_payload else HR_OK
        try:
            PyObject_GetBuffer(<object>obj, &buf, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            return -4
        rc = -3 if <uint64_t>buf.len > self.max_payload else HR_OK
        PyBuffer_Release(&buf)
        return rc

    cdef int _put(self, PyObject* obj, Py_ssize_t index, double timeout) except -1:
        """Write one entry (waiting for room); returns the status."""
        cdef Py_buffer buf
        cdef int rc
        if PyBytes_CheckExact(obj):
            if <uint64_t>PyBytes_GET_SIZE(obj) > self.max_payload:
                return -3
            rc = hr_writer_put(&self.seg.log, &self.w, PyBytes_AS_STRING(obj), <uint32_t>PyBytes_GET_SIZE(obj))
            if rc == HR_FULL:
                rc = self._wait_put(PyBytes_AS_STRING(obj), <uint32_t>PyBytes_GET_SIZE(obj), timeout)
            return rc
        try:
            PyObject_GetBuffer(<object>obj, &buf, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            return -4
        try:
            if <uint64_t>buf.len > self.max_payload:
                return -3
            rc = hr_writer_put(&self.seg.log, &self.w, buf.buf, <uint32_t>buf.len)
            if rc == HR_FULL:
                rc = self._wait_put(buf.buf, <uint32_t>buf.len, timeout)
            return rc
        finally:
            PyBuffer_Release(&buf)

    cdef int _wait_put(self, const void* p, uint32_t n, double timeout) except -1:
        """Publish what is written, then wait (GIL released) for room for one frame."""
        cdef uint64_t deadline = deadline_after(timeout), round = 0, t, next_police = 0
        cdef int rc = hr_writer_publish(&self.seg.log, &self.w)
        if rc != HR_OK:
            return rc
        self.seg.waiters += 1
        try:
            while True:
                if self.seg.closing:
                    return HR_CLOSED
                rc = hr_writer_put(&self.seg.log, &self.w, p, n)
                if rc != HR_FULL:
                    return rc
                t = now_ns()
                if t >= next_police:
                    self.police()           # may evict dead or lagging readers
                    next_police = t + POLICE_INTERVAL_NS
                    continue
                if t >= deadline:
                    return HR_FULL
                with nogil:
                    backoff(round)
                round += 1
        finally:
            self.seg.waiters -= 1

    def append(self, data, timeout=None):
        """Append one entry (bytes-like); returns its seq."""
        cdef double t = timeout_seconds(timeout)
        cdef int rc
        self._enter()
        try:
            rc = self._put(<PyObject*>data, 0, t)
            if rc == HR_OK:
                rc = hr_writer_publish(&self.seg.log, &self.w)
            if rc != HR_OK:
                self.fail(rc, -1, self.w.seq, data)
            return self.w.seq
        finally:
            self.busy = False

    def append_many(self, items, timeout=None):
        """Append every entry of a list, publishing once per run that fits; returns the last seq."""
        cdef double t = timeout_seconds(timeout)
        cdef Py_ssize_t i, m
        cdef int rc = HR_OK
        if type(items) is not list:
            try:
                items = list(items)
            except TypeError:
                raise TypeError(f"items must be an iterable of bytes-like objects, not {type(items).__name__}") from None
        m = len(items)
        for i in range(m):                  # check every item first: a bad one writes nothing
            rc = self._check_item(PyList_GET_ITEM(items, i))
            if rc != HR_OK:
                self.fail(rc, i, self.w.seq, items[i])
        self._enter()
        try:
            for i in range(m):
                rc = self._put(PyList_GET_ITEM(items, i), i, t)
                if rc != HR_OK:
                    if hr_writer_publish(&self.seg.log, &self.w) != HR_OK:
                        rc = HR_STALE
                    self.fail(rc, i, self.w.seq, items[i])
            rc = hr_writer_publish(&self.seg.log, &self.w)
            if rc != HR_OK:
                self.fail(rc, m, self.w.seq, None)
            return self.w.seq
        finally:
            self.busy = False

    def close(self):
        """Leave the writer role (the epoch stays: a new writer must still raise it)."""
        if not self.closed:
            self.closed = True
            hr_cas64(&self.seg.log.wblock.pid, self.seg.pid, 0)


cdef class Reader:
    """One reader slot, used from one thread at a time."""

    def __cinit__(self, Segment seg, int slot, name, uint64_t pos, uint64_t seq_before):
        cdef uint64_t n = 1
        self.seg = seg
        self.slot = slot
        self.name = name
        self.pos = pos
        self.drained_pos = pos
        self.next_seq = seq_before + 1 if seq_before or pos == 0 else 0
        self.acked = seq_before
        self.delivered = seq_before
        # Delivered-but-unacked entries can fill the ring at 32 bytes each at most.
        while n < seg.log.capacity // HR_FRAME_ALIGN + 1:
            n <<= 1
        self.ends = np.zeros(n, dtype=np.uint64)
        cdef uint64_t[::1] e = self.ends
        self.ends_p = &e[0]
        self.ends_mask = n - 1

    @property
    def position(self):
        return self.pos

    def status(self):
        return hr_reader_status(&self.seg.log, self.slot, self.seg.pid)

    cdef int _wait_data(self, hr_entry_t* e, double timeout) except -1:
        cdef uint64_t deadline = deadline_after(timeout), round = 0, tail
        cdef int rc
        cdef Segment seg = self.seg
        seg.waiters += 1
        try:
            return self._wait_loop(e, deadline)
        finally:
            seg.waiters -= 1

    cdef int _wait_loop(self, hr_entry_t* e, uint64_t deadline) except -1:
        cdef uint64_t round = 0, tail
        cdef int rc
        cdef Segment seg = self.seg
        with nogil:
            while True:
                if seg.closing:
                    rc = HR_CLOSED
                    break
                tail = hr_load_acq64(self.seg.log.tail)
                rc = hr_reader_peek(&self.seg.log, self.pos, tail, self.next_seq, e)
                if rc != HR_EMPTY:
                    break
                rc = hr_reader_status(&self.seg.log, self.slot, self.seg.pid)
                if rc != HR_OK:
                    break
                if now_ns() >= deadline:
                    rc = HR_EMPTY
                    break
                backoff(round)
                round += 1
        return rc

    def read(self, Py_ssize_t max_entries, double timeout):
        """Up to max_entries (seq, bytes); waits up to timeout for the first. (status, list)"""
        cdef hr_entry_t e
        cdef int rc
        cdef uint64_t tail, pos0 = self.pos, seq0 = self.next_seq, delivered0 = self.delivered
        cdef list out = []
        if self.busy:
            return (-1, out)
        rc = hr_reader_status(&self.seg.log, self.slot, self.seg.pid)
        if rc != HR_OK:
            return (rc, out)
        self.busy = True
        try:
            rc = self._wait_data(&e, timeout)
            while rc == HR_OK:
                out.append((e.seq, PyBytes_FromStringAndSize(<const char*>e.payload, e.len)))
                self._deliver(&e)
                if len(out) >= max_entries:
                    break
                tail = hr_load_acq64(self.seg.log.tail)
                rc = hr_reader_peek(&self.seg.log, self.pos, tail, self.next_seq, &e)
            return self._finish(rc, len(out) > 0, pos0, seq0, delivered0, out, [])
        finally:
            self.busy = False

    cdef _finish(self, int rc, bint got_some, uint64_t pos0, uint64_t seq0, uint64_t delivered0,
                 result, empty):
        """Validate a read after copying: an evicted reader's copies may hold reused bytes."""
        cdef int status = hr_reader_status(&self.seg.log, self.slot, self.seg.pid)
        if status != HR_OK:
            self.pos, self.next_seq, self.delivered = pos0, seq0, delivered0
            return (status, empty)
        if rc == HR_EMPTY:
            self.drained_pos = self.pos     # it has read everything published
            rc = HR_OK
        elif rc == HR_CORRUPT and got_some:
            rc = HR_OK        # a bad frame after good ones is reported by the next read
        return (rc, result if rc == HR_OK else empty)

    cdef void _deliver(self, hr_entry_t* e) noexcept:
        if self.next_seq == 0:          # joined without knowing the seq: nothing before this
            self.acked = e.seq - 1
        self.ends_p[e.seq & self.ends_mask] = e.end
        self.pos = e.end
        self.next_seq = e.seq + 1
        self.delivered = e.seq

    def read_batch(self, Py_ssize_t max_entries, double timeout):
        """Zero-copy: (status, seqs, starts, lengths) with payload offsets into the data region."""
        cdef hr_entry_t e
        cdef int rc
        cdef Py_ssize_t k = 0, room
        cdef uint64_t tail, pos0 = self.pos, seq0 = self.next_seq, delivered0 = self.delivered
        cdef uint64_t[::1] sv
        cdef int64_t[::1] stv, lv
        if self.busy:
            return (-1, None, None, None)
        rc = hr_reader_status(&self.seg.log, self.slot, self.seg.pid)
        if rc != HR_OK:
            return (rc, None, None, None)
        self.busy = True
        try:
            rc = self._wait_data(&e, timeout)
            # Size the arrays by what is published (an entry takes 32 bytes at least).
            tail = hr_load_acq64(self.seg.log.tail)
            room = <Py_ssize_t>min(<uint64_t>max_entries, (tail - self.pos) // HR_FRAME_ALIGN + 1)
            seqs = np.empty(room, dtype=np.uint64)
            starts = np.empty(room, dtype=np.int64)
            lengths = np.empty(room, dtype=np.int64)
            sv, stv, lv = seqs, starts, lengths
            with nogil:
                while rc == HR_OK:
                    sv[k] = e.seq
                    stv[k] = e.payload - self.seg.log.data
                    lv[k] = e.len
                    k += 1
                    if self.next_seq == 0:
                        self.acked = e.seq - 1
                    self.ends_p[e.seq & self.ends_mask] = e.end
                    self.pos = e.end
                    self.next_seq = e.seq + 1
                    self.delivered = e.seq
                    if k >= room:
                        break
                    rc = hr_reader_peek(&self.seg.log, self.pos, tail, self.next_seq, &e)
            rc, arrays = self._finish(rc, k > 0, pos0, seq0, delivered0,
                                      (seqs[:k], starts[:k], lengths[:k]), (None, None, None))
            return (rc,) + arrays
        finally:
            self.busy = False

    def data_view(self):
        """A read-only memoryview of the data region (payloads of read_batch point into it)."""
        return self.seg.view[self.seg.log.hdr.data_offset:self.seg.log.hdr.data_offset + self.seg.log.capacity].toreadonly()

    def ack(self, uint64_t seq):
        """Acknowledge every delivered entry up to seq. Returns the status."""
        cdef int rc = hr_reader_status(&self.seg.log, self.slot, self.seg.pid)
        if rc != HR_OK:
            return rc
        cdef uint64_t end = self.ends_p[seq & self.ends_mask]
        hr_reader_ack(&self.seg.log, self.slot, seq, end, now_ns(), end >= self.drained_pos)
        self.acked = seq
        hr_commit_update(&self.seg.log, NULL)
        return HR_OK

    def close(self):
        if not self.closed:
            self.closed = True
            if hr_reader_status(&self.seg.log, self.slot, self.seg.pid) in (HR_OK, HR_LAGGED):
                hr_slot_release(&self.seg.log, self.slot)

    def __dealloc__(self):
        # A reader dropped without close() must not keep gating the writer.
        if not self.closed and self.seg is not None and self.seg.view is not None:
            if hr_reader_status(&self.seg.log, self.slot, self.seg.pid) in (HR_OK, HR_LAGGED):
                hr_slot_release(&self.seg.log, self.slot)
