# cython: language_level=3
"""C-level view of the ring snapshot, for other compiled modules of the package."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


cdef class KeyBatch:
    cdef readonly int kind
    cdef readonly Py_ssize_t length
    cdef readonly bint bytes_repr
    cdef readonly Py_ssize_t base     # index of this batch's first key in the caller's batch
    cdef object seq                 # K_SEQ: a tuple or an exact list
    cdef bint seq_is_list
    cdef object owner_data          # the objects backing the raw pointers below
    cdef object owner_offsets
    cdef const char* data
    cdef const uint32_t* ucs4
    cdef const int32_t* off32
    cdef const int64_t* off64
    cdef const uint64_t* hashes
    cdef Py_ssize_t itemsize


cdef extern from "_search.h":
    ctypedef struct hr_table:
        const uint64_t* entry
        const int32_t* own
        const uint32_t* bkt
        int shift
        int owner_bits
        uint64_t low_mask
        uint64_t owner_mask
        Py_ssize_t n


cdef class RingTable:
    cdef readonly tuple names
    cdef readonly Py_ssize_t n_points
    cdef readonly int algo
    cdef readonly int bits
    cdef object memory              # TableMemory behind the two arrays
    cdef object _entries            # uint64[P + POINT_PAD]: points, or packed entries (_search.h)
    cdef object _owners             # int32[P + 1] (full layout), else None
    cdef object _buckets            # uint32[2**bits + 1]
    cdef hr_table tab
    cdef bint bytes_repr
    cdef readonly bint packed       # packed layout (tables that do not fit in cache)

    cdef int _check(self) except -1
    cdef uint64_t _query(self, key) except? 0
    cdef object _node(self, key)
    cdef list _nodes(self, key, Py_ssize_t n)


cdef class RingLookups:
    cdef public RingTable _table

    cdef RingTable _get_table(self)
