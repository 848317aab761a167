# cython: language_level=3
"""Declarations of the log buffer's C data path (_logbuf.h) and the compiled classes."""

from cpython.object cimport PyObject
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t


cdef extern from "_logbuf.h" nogil:
    enum:
        HR_FRAME_ALIGN
        HR_FRAME_HEADER
        HR_MAX_READERS
        HR_MAX_ATTACH
        HR_NAME_MAX
        HR_SLOT_FREE
        HR_SLOT_CLAIMING
        HR_SLOT_ACTIVE
        HR_SLOT_EVICTED
        HR_OK
        HR_FULL
        HR_STALE
        HR_EMPTY
        HR_LAGGED
        HR_CORRUPT
        HR_CLOSED
        HR_FEW

    ctypedef struct hr_static_t:
        uint64_t magic
        uint32_t version
        uint32_t max_readers
        uint64_t capacity
        uint64_t data_offset
        uint64_t total_size
        int32_t quorum
        uint32_t min_in_sync
        uint64_t max_lag_bytes
        uint64_t max_lag_ns
        uint64_t creator_pid
        uint64_t creator_start
        uint64_t ready

    ctypedef struct hr_proc_t:
        uint64_t pid
        uint64_t start

    ctypedef struct hr_writer_block_t:
        uint64_t epoch
        uint64_t pid
        uint64_t start
        uint64_t members

    ctypedef struct hr_pub_t:
        uint64_t tail
        uint64_t seq

    ctypedef struct hr_slot_t:
        uint32_t state
        uint64_t pid
        uint64_t start
        uint64_t ack_pos
        uint64_t ack_seq
        uint64_t heartbeat_ns
        uint64_t joined_seq
        uint64_t caught_up_ns
        char name[64]

    ctypedef struct hr_log_t:
        unsigned char* base
        hr_static_t* hdr
        hr_proc_t* attach
        hr_writer_block_t* wblock
        uint64_t* tail
        uint64_t* commit
        uint64_t* commit_pos
        uint64_t* free_pos
        hr_slot_t* slots
        unsigned char* data
        uint64_t capacity
        uint64_t mask
        uint32_t max_readers

    ctypedef struct hr_writer_t:
        uint64_t epoch
        uint64_t tail
        uint64_t seq
        uint64_t pub_tail
        uint64_t gate
        uint32_t in_sync

    ctypedef struct hr_entry_t:
        uint64_t seq
        uint64_t epoch
        const unsigned char* payload
        uint32_t len
        uint64_t end

    uint64_t hr_frame_size(uint64_t payload_len)
    uint64_t hr_segment_size(uint64_t capacity, uint32_t max_readers)
    void hr_log_bind(hr_log_t* L, void* base)
    void hr_log_init(void* base, uint64_t capacity, uint32_t max_readers, int32_t quorum,
                     uint32_t min_in_sync, uint64_t max_lag_bytes, uint64_t max_lag_ns,
                     uint64_t pid, uint64_t start)
    int hr_log_validate(const void* base, uint64_t size)
    hr_pub_t hr_published(const hr_log_t* L)
    void hr_writer_refresh(hr_log_t* L, hr_writer_t* w)
    int hr_writer_attach(hr_log_t* L, hr_writer_t* w, uint64_t epoch, uint64_t pid, uint64_t start)
    int hr_writer_put(hr_log_t* L, hr_writer_t* w, const void* payload, uint32_t len)
    int hr_writer_publish(hr_log_t* L, hr_writer_t* w)
    int hr_slot_claim(hr_log_t* L, uint32_t i, uint32_t from_state)
    uint64_t hr_slot_activate(hr_log_t* L, uint32_t i, uint64_t pos, uint64_t seq_before,
                              uint64_t pid, uint64_t start, uint64_t now_ns)
    void hr_slot_release(hr_log_t* L, uint32_t i)
    int hr_slot_free_if(hr_log_t* L, uint32_t i, uint32_t word)
    int hr_slot_evict(hr_log_t* L, uint32_t i, uint32_t word)
    int hr_reader_peek(const hr_log_t* L, uint64_t pos, uint64_t tail, uint64_t expect_seq, hr_entry_t* e)
    int hr_reader_status(hr_log_t* L, uint32_t i, uint64_t pid)
    void hr_reader_ack(hr_log_t* L, uint32_t i, uint64_t seq, uint64_t end_pos, uint64_t now_ns,
                       int caught_up)
    uint64_t hr_commit_update(hr_log_t* L, uint32_t* in_sync_out)

cdef extern from "_atomics.h" nogil:
    uint64_t hr_load_acq64(const uint64_t* p)
    uint32_t hr_load_acq32(const uint32_t* p)
    int hr_cas64(uint64_t* p, uint64_t expected, uint64_t desired)
    void hr_store_rel64(uint64_t* p, uint64_t v)
    void hr_cpu_relax()


cdef class Segment:
    cdef hr_log_t log
    cdef object mapping          # the mmap object (kept open while the segment is used)
    cdef object view             # a memoryview export that pins the mapping
    cdef readonly uint64_t size
    cdef int attach_index
    cdef uint64_t pid
    cdef int closing             # set by close(): waits return at once
    cdef int waiters             # threads inside a wait on this mapping


cdef class Writer:
    cdef Segment seg
    cdef hr_writer_t w
    cdef bint busy
    cdef readonly bint closed
    cdef uint64_t max_payload
    cdef object police           # callable run (with the GIL) while blocked
    cdef object fail             # callable raising the exception for a failed append
    cdef int _enter(self) except -1
    cdef int _check_item(self, PyObject* obj) except -1
    cdef int _put(self, PyObject* obj, Py_ssize_t index, double timeout) except -1
    cdef int _wait_put(self, const void* p, uint32_t n, double timeout) except -1


cdef class Reader:
    cdef Segment seg
    cdef readonly int slot
    cdef readonly object name
    cdef uint64_t pos            # next frame to read
    cdef uint64_t next_seq       # expected seq of that frame (0: not known yet)
    cdef uint64_t drained_pos    # position the last read that reached the tail ended at
    cdef readonly uint64_t acked
    cdef readonly uint64_t delivered
    cdef object ends             # numpy uint64 ring: end position of delivered seqs
    cdef uint64_t* ends_p
    cdef uint64_t ends_mask
    cdef bint busy
    cdef readonly bint closed
    cdef object __weakref__

    cdef int _wait_data(self, hr_entry_t* e, double timeout) except -1
    cdef int _wait_loop(self, hr_entry_t* e, uint64_t deadline) except -1
    cdef _finish(self, int rc, bint got_some, uint64_t pos0, uint64_t seq0, uint64_t delivered0,
                 result, empty)
    cdef void _deliver(self, hr_entry_t* e) noexcept
