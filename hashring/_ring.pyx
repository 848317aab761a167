# cython: language_level=3
"""Compiled core of the ring: key hashing doors, the lookup table and its kernels.

Everything here is mechanism. Validation, policy and messages live in ``ring.py``;
this module trusts its callers for shapes and dtypes and only reports per-key errors.

A ring snapshot is a :class:`RingTable`: a prefix index over the top bits of the hash
and the points in order, either as a ``uint64`` point array beside an ``int32`` owner
array (tables that fit in cache) or packed with their owners into one ``uint64`` entry
each (larger ones); ``_search.h`` describes both and holds the search kernels. A key is
owned by the first point whose value is ``>=`` its query value.
The compatibility modes keep their 32-bit ketama points in the top half of the word,
which keeps the prefix index useful and turns uhashring's "first point > h" into a
``>=`` search for ``(h << 32) | 1``.
"""

cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from hashring._hashes cimport hr_md5, hr_md5_64, hr_md5_x8, hr_murmur3_64, hr_xxh3_64

import operator

import numpy as np

cdef extern from "Python.h":
    # Borrowed-reference forms, so the collection loop does no refcounting.
    PyObject* PyTuple_GET_ITEM(object, Py_ssize_t)
    PyObject* PyList_GET_ITEM(object, Py_ssize_t)
    Py_ssize_t PyList_GET_SIZE(object)
    void Py_INCREF_PTR "Py_INCREF"(PyObject*)
    void Py_DECREF_PTR "Py_DECREF"(PyObject*)
    bint PyUnicode_Check(PyObject*)
    bint PyBytes_Check(PyObject*)
    bint PyUnicode_IS_COMPACT_ASCII(PyObject*)
    void* PyUnicode_DATA(PyObject*)
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject*)
    bint PyUnicode_CheckExact(PyObject*)
    char* PyBytes_AS_STRING(PyObject*)
    Py_ssize_t PyBytes_GET_SIZE(PyObject*)

# Query algorithms: the public hashes, then the two ketama forms.
ALGO_XXH3 = 0
ALGO_MD5 = 1
ALGO_MURMUR3 = 2
ALGO_KETAMA = 3      # md5 u32 << 32: first point >= h
ALGO_UHASHRING = 4   # (md5 u32 << 32) | 1: first point > h

# Kinds of a normalised key batch (see KeyBatch).
cdef enum:
    K_SEQ = 0        # tuple of str/bytes/other objects
    K_FIXED = 1      # numpy 'S': fixed-width, NUL-padded bytes
    K_UCS4 = 2       # numpy 'U': fixed-width, NUL-padded UCS4 code points
    K_OFF32 = 3      # Arrow (binary|string): int32 offsets + data
    K_OFF64 = 4      # Arrow large_(binary|string): int64 offsets + data
    K_HASHES = 5     # pre-hashed uint64 values

KIND_SEQ, KIND_FIXED, KIND_UCS4, KIND_OFF32, KIND_OFF64, KIND_HASHES = range(6)

cdef enum:
    CHUNK = 4096     # keys per GIL round-trip; the query buffer stays in L1/L2


class EmptyRingError(LookupError):
    """A lookup was made on a ring that has no nodes (or no points)."""


cdef inline uint64_t md5_query(uint32_t a, uint32_t b, int algo) noexcept nogil:
    """The query value under md5 (algo 1), ketama (3) or uhashring (4) from the digest's
    first two words A and B: A | B << 32, A << 32, or (A << 32) | 1 (uhashring's "first point
    > h" as a ">=" search)."""
    if algo == 1:
        return (<uint64_t>a) | ((<uint64_t>b) << 32)
    if algo == 3:
        return (<uint64_t>a) << 32
    return ((<uint64_t>a) << 32) | 1


cdef inline uint64_t key_query(const char* p, size_t n, int algo) noexcept nogil:
    cdef uint64_t h
    if algo == 0:
        return hr_xxh3_64(p, n, 0)
    if algo == 2:
        return hr_murmur3_64(p, n)
    h = hr_md5_64(p, n)              # digest words A | B << 32
    return md5_query(<uint32_t>h, <uint32_t>(h >> 32), algo)


cdef extern from *:
    """
    /* Length of a NUL-padded fixed-width key (numpy 'S'): its last eight bytes
     * read as one little-endian word hold the padding in their high bytes, so
     * one count of leading zero bits finds the end without a byte loop. */
    static inline Py_ssize_t hr_fixed_len(const char *p, Py_ssize_t w)
    {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (w >= 8) {
            uint64_t tail;
            memcpy(&tail, p + w - 8, 8);
            if (tail)
                return w - (__builtin_clzll(tail) >> 3);
            w -= 8;
        }
    #endif
        while (w > 0 && p[w - 1] == 0)
            w--;
        return w;
    }
    """
    Py_ssize_t hr_fixed_len(const char* p, Py_ssize_t w) noexcept nogil


cdef void hash_pointers(const char** ptrs, const Py_ssize_t* lens, Py_ssize_t n, int algo,
                        uint64_t* q) noexcept nogil:
    """q[i] = key_query(ptrs[i], lens[i], algo); md5 takes eight short keys at a time."""
    cdef Py_ssize_t i = 0, l
    cdef uint32_t a[8]
    cdef uint32_t b[8]
    cdef bint fits
    if algo != 0 and algo != 2:
        while i + 8 <= n:
            fits = True
            for l in range(8):
                fits = fits and lens[i + l] <= 55
            if fits:
                hr_md5_x8(ptrs + i, <const size_t*>(lens + i), a, b)
                for l in range(8):
                    q[i + l] = md5_query(a[l], b[l], algo)
                i += 8
            else:
                for l in range(8):
                    q[i + l] = key_query(ptrs[i + l], <size_t>lens[i + l], algo)
                i += 8
    while i < n:
        q[i] = key_query(ptrs[i], <size_t>lens[i], algo)
        i += 1


cdef inline uint64_t prehashed_query(uint64_t h, int algo) noexcept nogil:
    if algo < 3:
        return h
    if algo == 3:
        return h << 32
    return (h << 32) | 1


cdef inline Py_ssize_t utf8_from_ucs4(const uint32_t* src, Py_ssize_t n, char* dst) noexcept nogil:
    """Encode n code points as UTF-8 into dst; -1 on a surrogate or out-of-range value."""
    cdef Py_ssize_t i, k = 0
    cdef uint32_t c
    for i in range(n):
        c = src[i]
        if c < 0x80:
            dst[k] = <char>c
            k += 1
        elif c < 0x800:
            dst[k] = <char>(0xC0 | (c >> 6))
            dst[k + 1] = <char>(0x80 | (c & 0x3F))
            k += 2
        elif c < 0x10000:
            if 0xD800 <= c <= 0xDFFF:
                return -1
            dst[k] = <char>(0xE0 | (c >> 12))
            dst[k + 1] = <char>(0x80 | ((c >> 6) & 0x3F))
            dst[k + 2] = <char>(0x80 | (c & 0x3F))
            k += 3
        elif c < 0x110000:
            dst[k] = <char>(0xF0 | (c >> 18))
            dst[k + 1] = <char>(0x80 | ((c >> 12) & 0x3F))
            dst[k + 2] = <char>(0x80 | ((c >> 6) & 0x3F))
            dst[k + 3] = <char>(0x80 | (c & 0x3F))
            k += 4
        else:
            return -1
    return k


def key_bytes(key, bint bytes_repr=False):
    """The bytes a single key hashes as (the slow, general door).

    str -> UTF-8; bytes-like -> its bytes; int (not bool) -> its decimal digits.
    ``bytes_repr`` is uhashring's rule: every key is ``str(key)``, so bytes hash their repr.
    """
    if isinstance(key, memoryview):
        if bytes_repr:
            raise TypeError("key: memoryview keys are not accepted in uhashring mode (uhashring hashes str(key))")
        return key.tobytes()
    if isinstance(key, (str, bytes, bytearray)):
        text = str(key) if bytes_repr else key
    elif key is None or isinstance(key, bool):
        raise TypeError(f"key must be str, bytes, bytearray, memoryview or int, not {type(key).__name__}")
    else:
        try:
            text = str(operator.index(key))
        except TypeError:
            raise TypeError(f"key must be str, bytes, bytearray, memoryview or int, not {type(key).__name__}") from None
    if not isinstance(text, str):
        return bytes(text)
    try:
        return (<str>text).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"key {key!r} is not valid Unicode (cannot be UTF-8 encoded): {exc.reason}") from None


ctypedef fused offset_t:
    int32_t
    int64_t


cdef Py_ssize_t _first_bad_offset(const offset_t[::1] off, Py_ssize_t n, Py_ssize_t nbytes) noexcept:
    """-1 if off[0..n] rises within [0, nbytes]; else the index of a key that breaks it."""
    cdef Py_ssize_t i
    if off[0] < 0 or off[n] > nbytes:
        return 0
    with nogil:
        for i in range(n):
            if off[i + 1] < off[i]:
                return i
    return -1


cdef class KeyBatch:
    """A batch of keys normalised to one of the KIND_* layouts; built by ring.py.

    The batch holds references to every buffer it points into, so the pointers stay
    valid while the GIL is released.
    """
    def __cinit__(self, int kind, object obj, Py_ssize_t length, Py_ssize_t itemsize=0,
                  object offsets=None, bint bytes_repr=False, Py_ssize_t base=0):
        cdef const uint8_t[::1] u8
        cdef const uint32_t[::1] u32
        cdef const int32_t[::1] o32
        cdef const int64_t[::1] o64
        cdef const uint64_t[::1] h64
        cdef Py_ssize_t bad = -1, nbytes
        if length < 0 or itemsize < 0:
            raise ValueError("KeyBatch: negative length or itemsize")
        self.kind = kind
        self.length = length
        self.itemsize = itemsize
        self.bytes_repr = bytes_repr
        self.base = base
        self.data = NULL
        if kind == K_SEQ:
            if type(obj) is not tuple and type(obj) is not list:
                raise TypeError("KeyBatch: K_SEQ needs a tuple or a list")
            if len(obj) != length:
                raise ValueError("KeyBatch: length differs from the sequence's")
            self.seq = obj
            self.seq_is_list = type(obj) is list
        elif kind == K_FIXED or kind == K_OFF32 or kind == K_OFF64:
            u8 = obj
            self.owner_data = obj
            nbytes = u8.shape[0]
            if nbytes > 0:
                self.data = <const char*>&u8[0]
            if kind == K_FIXED and nbytes < length * itemsize:
                raise ValueError("KeyBatch: data buffer too short")
            # Arrow offsets come from outside (IPC files, the C data interface): every key
            # must lie inside the data buffer before the kernels read it without checks.
            if kind == K_OFF32:
                o32 = offsets
                if o32.shape[0] < length + 1:
                    raise ValueError("KeyBatch: offsets too short")
                self.off32 = &o32[0]
                bad = _first_bad_offset(o32, length, nbytes)
            elif kind == K_OFF64:
                o64 = offsets
                if o64.shape[0] < length + 1:
                    raise ValueError("KeyBatch: offsets too short")
                self.off64 = &o64[0]
                bad = _first_bad_offset(o64, length, nbytes)
            if bad >= 0:
                raise ValueError(f"keys: invalid Arrow offsets (near keys[{base + bad}]): "
                                 f"they must rise and stay inside the data buffer")
            self.owner_offsets = offsets
        elif kind == K_UCS4:
            u32 = obj
            self.owner_data = obj
            if u32.shape[0] < length * itemsize:
                raise ValueError("KeyBatch: data buffer too short")
            if u32.shape[0] > 0:
                self.ucs4 = &u32[0]
        elif kind == K_HASHES:
            h64 = obj
            self.owner_data = obj
            if h64.shape[0] < length:
                raise ValueError("KeyBatch: hash buffer too short")
            if h64.shape[0] > 0:
                self.hashes = &h64[0]
        else:
            raise ValueError(f"KeyBatch: unknown kind {kind}")


cdef class _Scratch:
    """Per-call buffers for one batch: query values, key pointers, a UTF-8 buffer, and
    references to the chunk's keys while the GIL is released over their data."""
    cdef uint64_t* q
    cdef const char** ptrs
    cdef Py_ssize_t* lens
    cdef char* utf8
    cdef PyObject** refs
    cdef Py_ssize_t n_refs
    cdef list keep

    def __cinit__(self, Py_ssize_t utf8_size):
        self.q = <uint64_t*>malloc(CHUNK * sizeof(uint64_t))
        self.ptrs = <const char**>malloc(CHUNK * sizeof(char*))
        self.lens = <Py_ssize_t*>malloc(CHUNK * sizeof(Py_ssize_t))
        self.utf8 = <char*>malloc(utf8_size if utf8_size > 0 else 1)
        self.refs = <PyObject**>malloc(CHUNK * sizeof(PyObject*))
        self.n_refs = 0
        self.keep = []
        if (self.q == NULL or self.ptrs == NULL or self.lens == NULL or self.utf8 == NULL
                or self.refs == NULL):
            raise MemoryError()

    cdef void release(self) noexcept:
        """Drop the references taken on the last chunk's keys (needs the GIL)."""
        cdef Py_ssize_t i
        for i in range(self.n_refs):
            Py_DECREF_PTR(self.refs[i])
        self.n_refs = 0
        self.keep.clear()

    def __dealloc__(self):
        if self.refs != NULL:
            self.release()
        free(self.q)
        free(self.ptrs)
        free(self.lens)
        free(self.utf8)
        free(self.refs)


cdef Py_ssize_t _collect_seq(KeyBatch kb, Py_ssize_t start, Py_ssize_t end, _Scratch s) except -1:
    """With the GIL: point at the UTF-8/bytes data of kb.seq[start:end].

    A list is read in place, not copied: each chunk's keys are referenced until they
    are hashed (another thread may drop them from the list meanwhile), and a list
    that changes size during the call is refused.
    """
    cdef Py_ssize_t i, n
    cdef PyObject* obj
    cdef bint bytes_repr = kb.bytes_repr
    cdef bint is_list = kb.seq_is_list
    s.release()
    i = start
    try:
        while i < end:
            if is_list:
                # Checked per key: a key's own __index__/__str__ (or a thread it lets
                # run) may have shrunk the list since the last one.
                if PyList_GET_SIZE(kb.seq) != kb.length:
                    raise RuntimeError(f"keys: the list changed size during the call "
                                       f"({kb.length} -> {len(kb.seq)})")
                obj = PyList_GET_ITEM(kb.seq, i)
                Py_INCREF_PTR(obj)
                s.refs[s.n_refs] = obj
                s.n_refs += 1
            else:
                obj = PyTuple_GET_ITEM(kb.seq, i)
            if PyUnicode_Check(obj) and PyUnicode_IS_COMPACT_ASCII(obj) and (
                    not bytes_repr or PyUnicode_CheckExact(obj)):
                s.ptrs[i - start] = <const char*>PyUnicode_DATA(obj)
                s.lens[i - start] = PyUnicode_GET_LENGTH(obj)
            elif PyBytes_Check(obj) and not bytes_repr:
                s.ptrs[i - start] = PyBytes_AS_STRING(obj)
                s.lens[i - start] = PyBytes_GET_SIZE(obj)
            else:
                b = key_bytes(<object>obj, bytes_repr)
                s.keep.append(b)
                s.ptrs[i - start] = PyBytes_AS_STRING(<PyObject*>b)
                s.lens[i - start] = PyBytes_GET_SIZE(<PyObject*>b)
            i += 1
    except (TypeError, ValueError) as exc:
        item = kb.seq[i]
        if isinstance(item, str) and isinstance(exc, ValueError):
            raise ValueError(f"keys[{kb.base + i}]: {item!r} is not valid Unicode (cannot be UTF-8 encoded)") from None
        raise type(exc)(f"keys[{kb.base + i}]: {exc}") from None
    return 0


cdef Py_ssize_t _fill_queries(KeyBatch kb, Py_ssize_t start, Py_ssize_t end, int algo,
                              _Scratch s) except -2:
    """Fill s.q[0:end-start] with query values. Returns -1, or the index of a bad key."""
    cdef Py_ssize_t bad
    if kb.kind == K_SEQ:
        _collect_seq(kb, start, end, s)
        with nogil:
            hash_pointers(s.ptrs, s.lens, end - start, algo, s.q)
        s.release()
        return -1
    with nogil:
        bad = _fill_raw(kb, start, end, algo, s)
    return bad


cdef Py_ssize_t _fill_raw(KeyBatch kb, Py_ssize_t start, Py_ssize_t end, int algo,
                          _Scratch s) noexcept nogil:
    """_fill_queries for the kinds read from buffers (all but K_SEQ), without the GIL."""
    cdef Py_ssize_t i, j, n, cnt = end - start, bad = -1
    cdef const char* p
    cdef Py_ssize_t w = kb.itemsize
    if kb.kind == K_HASHES:
        for i in range(cnt):
            s.q[i] = prehashed_query(kb.hashes[start + i], algo)
        if algo >= 3:
            for i in range(cnt):
                if kb.hashes[start + i] > 0xFFFFFFFFULL:
                    bad = start + i
                    break
    elif kb.kind == K_FIXED:
        for i in range(cnt):
            p = kb.data + (start + i) * w
            s.ptrs[i] = p
            s.lens[i] = hr_fixed_len(p, w)
        hash_pointers(s.ptrs, s.lens, cnt, algo, s.q)
    elif kb.kind == K_UCS4:
        for i in range(cnt):
            j = (start + i) * w
            n = w
            while n > 0 and kb.ucs4[j + n - 1] == 0:
                n -= 1
            n = utf8_from_ucs4(kb.ucs4 + j, n, s.utf8)
            if n < 0:
                bad = start + i
                break
            s.q[i] = key_query(s.utf8, <size_t>n, algo)
    elif kb.kind == K_OFF32:
        for i in range(cnt):
            j = start + i
            s.ptrs[i] = kb.data + kb.off32[j]
            s.lens[i] = kb.off32[j + 1] - kb.off32[j]
        hash_pointers(s.ptrs, s.lens, cnt, algo, s.q)
    else:
        for i in range(cnt):
            j = start + i
            s.ptrs[i] = kb.data + kb.off64[j]
            s.lens[i] = kb.off64[j + 1] - kb.off64[j]
        hash_pointers(s.ptrs, s.lens, cnt, algo, s.q)
    return bad


cdef inline Py_ssize_t _utf8_scratch_size(KeyBatch kb):
    return 4 * kb.itemsize if kb.kind == K_UCS4 and kb.length > 0 else 0


def _raise_bad(KeyBatch kb, Py_ssize_t bad):
    if kb.kind == K_HASHES:
        raise ValueError(f"hashes[{kb.base + bad}]: a ketama-mode pre-hashed key must be a 32-bit value (< 2**32)")
    raise ValueError(f"keys[{kb.base + bad}]: not valid Unicode (a surrogate or out-of-range code point)")


def hash_batch(KeyBatch kb, int algo, uint64_t[::1] out):
    """Hash every key of the batch into out (the public hash64_many)."""
    cdef Py_ssize_t start, end, bad, m = kb.length
    if out.shape[0] != m:
        raise ValueError("hash_batch: out has the wrong length")
    cdef _Scratch s = _Scratch(_utf8_scratch_size(kb))
    for start in range(0, m, CHUNK):
        end = min(start + CHUNK, m)
        bad = _fill_queries(kb, start, end, algo, s)
        if bad >= 0:
            _raise_bad(kb, bad)
        memcpy(&out[start], s.q, (end - start) * sizeof(uint64_t))


def route_batch(KeyBatch kb, uint64_t partitions, const int32_t[::1] primary_of, const int64_t[::1] epoch_of,
                int64_t[::1] out_part, int32_t[::1] out_primary, int64_t[::1] out_epoch):
    """Failover routes of every key: partition = (top 32 bits of xxh3) * partitions >> 32,
    then the partition's primary and epoch, in one pass (FailoverController.route_many)."""
    cdef Py_ssize_t start, end, bad, i, m = kb.length
    cdef int64_t p
    if out_part.shape[0] != m or out_primary.shape[0] != m or out_epoch.shape[0] != m:
        raise ValueError("route_batch: an output has the wrong length")
    if partitions == 0 or partitions > <uint64_t>primary_of.shape[0] or partitions > <uint64_t>epoch_of.shape[0]:
        raise ValueError("route_batch: the partition tables are shorter than partitions")
    cdef _Scratch s = _Scratch(_utf8_scratch_size(kb))
    for start in range(0, m, CHUNK):
        end = min(start + CHUNK, m)
        bad = _fill_queries(kb, start, end, ALGO_XXH3, s)
        if bad >= 0:
            _raise_bad(kb, bad)
        with nogil:
            for i in range(end - start):
                p = <int64_t>(((s.q[i] >> 32) * partitions) >> 32)
                out_part[start + i] = p
                out_primary[start + i] = primary_of[p]
                out_epoch[start + i] = epoch_of[p]


cdef inline size_t write_label(char* buf, Py_ssize_t nlen, uint64_t j) noexcept nogil:
    """buf holds name + b"-"; append the decimal digits of j and return the label length."""
    cdef char digits[24]
    cdef int d = 0, k
    while True:
        digits[d] = <char>(48 + j % 10)
        d += 1
        j //= 10
        if j == 0:
            break
    for k in range(d):
        buf[nlen + 1 + k] = digits[d - 1 - k]
    return <size_t>(nlen + 1 + d)


def vnode_points(names, counts, int algo):
    """Native points of many nodes, node after node: H(name + b"-" + str(j)), j < count.

    names: a list of UTF-8 names (bytes); counts: an int64 array of points per node.
    """
    cdef const int64_t[::1] cnt = counts
    cdef Py_ssize_t i, j, k = 0, total = 0, nlen, longest = 0
    for i in range(len(names)):
        total += cnt[i]
        longest = max(longest, len(names[i]))
    out = np.empty(total, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef char* buf = <char*>malloc(longest + 24)
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(len(names)):
            name = names[i]
            nlen = len(name)
            memcpy(buf, <const char*>(<bytes>name), nlen)
            buf[nlen] = b'-'
            with nogil:
                for j in range(cnt[i]):
                    o[k] = key_query(buf, write_label(buf, nlen, <uint64_t>j), algo)
                    k += 1
    finally:
        free(buf)
    return out


def ketama_points(bytes name, Py_ssize_t groups):
    """libketama's points of one server: 4 little-endian u32 per md5(name-k), stored << 32."""
    cdef Py_ssize_t j, r, nlen = len(name)
    cdef unsigned char dg[16]
    out = np.empty(4 * groups, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef char* buf = <char*>malloc(nlen + 24)
    if buf == NULL:
        raise MemoryError()
    memcpy(buf, <const char*>name, nlen)
    buf[nlen] = b'-'
    with nogil:
        for j in range(groups):
            hr_md5(buf, write_label(buf, nlen, <uint64_t>j), dg)
            for r in range(4):
                o[4 * j + r] = (<uint64_t>(dg[4 * r] | (dg[4 * r + 1] << 8) | (dg[4 * r + 2] << 16)
                                            | (<uint32_t>dg[4 * r + 3] << 24))) << 32
    free(buf)
    return out


# --- the table's memory ---------------------------------------------------------

cdef extern from "sys/mman.h" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int madvise(void* addr, size_t length, int advice)
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MADV_HUGEPAGE
    void* MAP_FAILED

cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MADV_POPULATE_WRITE
    #define MADV_POPULATE_WRITE 23
    #endif
    """
    int MADV_POPULATE_WRITE

cdef extern from "Python.h":
    int PyBuffer_FillInfo(Py_buffer* view, object exporter, void* buf, Py_ssize_t len,
                          int readonly, int flags) except -1
    int PyBUF_WRITABLE

cdef enum:
    HUGE_PAGE = 2 * 1024 * 1024
    CACHED_TABLE_BYTES = 512 * 1024   # half a typical L2: below it prefetching only costs


@cython.auto_pickle(False)
cdef class TableMemory:
    """One allocation holding a table's arrays, exported to numpy as a read-only buffer.

    Large tables sit in their own 2 MiB-aligned mapping advised for huge pages: a batch
    lookup touches random points, and with 4 KiB pages every one of them is a TLB miss.
    """
    cdef char* data
    cdef char* mapping
    cdef size_t mapped
    cdef Py_ssize_t size

    def __cinit__(self, Py_ssize_t size):
        cdef size_t want, lead
        cdef char* p
        if size < 0:
            raise ValueError("TableMemory: negative size")
        self.size = size
        if size < HUGE_PAGE:
            self.data = <char*>calloc(size if size > 0 else 1, 1)
            if self.data == NULL:
                raise MemoryError()
            return
        want = <size_t>size + HUGE_PAGE
        p = <char*>mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if <void*>p == MAP_FAILED:
            raise MemoryError()
        lead = (HUGE_PAGE - (<size_t>p) % HUGE_PAGE) % HUGE_PAGE
        self.mapping = p
        self.mapped = want
        self.data = p + lead
        madvise(self.data, (<size_t>size + 4095) & ~(<size_t>4095), MADV_HUGEPAGE)
        # Fault the pages in with one call (Linux >= 5.14; elsewhere they fault on first write).
        madvise(self.data, (<size_t>size + 4095) & ~(<size_t>4095), MADV_POPULATE_WRITE)

    def __dealloc__(self):
        if self.mapping != NULL:
            munmap(self.mapping, self.mapped)
        else:
            free(self.data)

    def __getbuffer__(self, Py_buffer* view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("ring tables are read-only")
        PyBuffer_FillInfo(view, self, self.data, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass


# --- lookup kernels (_search.h) ------------------------------------------------------

cdef extern from "_search.h" nogil:
    enum:
        POINT_PAD "HR_POINT_PAD"
    Py_ssize_t hr_first_at_least(const hr_table* t, uint64_t q) noexcept
    int32_t hr_owner(const hr_table* t, Py_ssize_t i) noexcept
    void hr_lookup_many(const hr_table* t, const uint64_t* q, int32_t* out, Py_ssize_t n) noexcept
    int hr_search_best() noexcept
    int hr_search_kernel

SEARCH_KERNELS = ("scalar", "avx2", "avx512")    # by capability: each CPU runs a prefix
cdef int _best_kernel = hr_search_best()
hr_search_kernel = _best_kernel


def _search_kernel(name=None):
    """The batch search kernel in use; tests select each one this CPU runs.

    Returns the name in use, after switching to ``name`` if this CPU runs it.
    """
    global hr_search_kernel
    if name is not None and SEARCH_KERNELS.index(name) <= _best_kernel:
        hr_search_kernel = SEARCH_KERNELS.index(name)
    return SEARCH_KERNELS[hr_search_kernel]


cdef inline Py_ssize_t walk_distinct(const hr_table* t, uint64_t q, Py_ssize_t n,
                                     int32_t* out, uint8_t* seen) noexcept nogil:
    """The first n distinct owners from q's point on, into out; returns how many exist.

    seen (one flag per node, all clear) is needed only for n > 16; below that a scan of
    the few owners found so far is cheaper than touching a flag array.
    """
    cdef Py_ssize_t P = t.n
    cdef Py_ssize_t i = hr_first_at_least(t, q)
    cdef Py_ssize_t steps, found = 0, k
    cdef int32_t o
    cdef bint dup
    if i == P:
        i = 0
    for steps in range(P):
        o = hr_owner(t, i)
        if seen == NULL:
            dup = False
            for k in range(found):
                if out[k] == o:
                    dup = True
                    break
        else:
            dup = seen[o]
            seen[o] = 1
        if not dup:
            out[found] = o
            found += 1
            if found == n:
                break
        i += 1
        if i == P:
            i = 0
    if seen != NULL:
        for k in range(found):
            seen[out[k]] = 0
    return found


cdef enum:
    SMALL_N = 16


# --- the table --------------------------------------------------------------------

cdef class RingTable:
    """An immutable ring snapshot: a prefix index and one entry per point (_search.h).

    ``RingTable(points, owners, names, algo, rank=None)`` sorts the points itself:
    by value, then (with ``rank``, one int per node) by the owner's rank, then by input
    position. Sorting is a counting sort on the prefix index's buckets, so a build,
    and a rebuild after one node changes, is linear in the points.
    """
    def __init__(self, points, owners, tuple names, int algo, rank=None):
        cdef Py_ssize_t P = len(points), nb, i
        if self.memory is not None:
            raise TypeError("RingTable is immutable")
        points = np.ascontiguousarray(points, dtype=np.uint64)
        owners = np.ascontiguousarray(owners, dtype=np.int32)
        if owners.shape != (P,) or points.ndim != 1:
            raise ValueError("RingTable: points and owners must be 1-d arrays of one length")
        # The kernels trust these invariants; a table from elsewhere (unpickling) is checked.
        if P and (owners.min() < 0 or owners.max() >= len(names)):
            raise ValueError("RingTable: an owner index is outside names")
        if P >= 0xFFFFFFFF - POINT_PAD:
            raise ValueError("RingTable: too many points")
        cdef const int64_t[::1] rk
        cdef const int64_t* rank_ptr = NULL
        if rank is not None:
            rank = np.ascontiguousarray(rank, dtype=np.int64)
            if rank.shape != (len(names),):
                raise ValueError("RingTable: rank needs one value per name")
            rk = rank
            if len(names):
                rank_ptr = &rk[0]
        cdef int owner_bits = (len(names) - 1).bit_length() if len(names) > 1 else 0
        cdef int bits = 1
        # 0.5..1 bucket per point: the index costs at most 4 bytes a point.
        while ((<Py_ssize_t>1) << (bits + 1)) <= P and bits < 40:
            bits += 1
        nb = (<Py_ssize_t>1) << bits
        cdef Py_ssize_t off_own = ((P + POINT_PAD) * 8 + 63) & ~63
        cdef Py_ssize_t off_bkt = (off_own + (P + 1) * 4 + 63) & ~63
        # A table that fits in cache keeps points and owners apart (the fastest probe);
        # a larger one packs them, with at least as many prefix bits as an owner needs.
        cdef bint packed = off_bkt + (nb + 1) * 4 > CACHED_TABLE_BYTES
        if packed:
            bits = max(bits, owner_bits)
            nb = (<Py_ssize_t>1) << bits
            off_own = off_bkt = ((P + POINT_PAD) * 8 + 63) & ~63
        mem = TableMemory(off_bkt + (nb + 1) * 4)
        self.memory = mem
        self.names = names
        self.n_points = P
        self.algo = algo
        self.bytes_repr = algo == ALGO_UHASHRING
        self.bits = bits
        self.packed = packed
        self._entries = np.frombuffer(mem, np.uint64, P + POINT_PAD, 0)
        self._owners = None if packed else np.frombuffer(mem, np.int32, P + 1, off_own)
        self._buckets = np.frombuffer(mem, np.uint32, nb + 1, off_bkt)
        cdef char* base = (<TableMemory>mem).data
        cdef uint64_t* ev = <uint64_t*>base
        cdef int32_t* ov = NULL if packed else <int32_t*>(base + off_own)
        cdef uint32_t* bv = <uint32_t*>(base + off_bkt)
        self.tab.entry = ev
        self.tab.own = ov
        self.tab.bkt = bv
        self.tab.shift = 64 - bits
        self.tab.owner_bits = owner_bits if packed else 0
        self.tab.low_mask = ((<uint64_t>1) << (64 - bits)) - 1 if packed else 0xFFFFFFFFFFFFFFFFULL
        self.tab.owner_mask = ((<uint64_t>1) << owner_bits) - 1 if packed else 0
        self.tab.n = P
        cdef const uint64_t[::1] src_p = points
        cdef const int32_t[::1] src_o = owners
        cdef uint64_t* sorted_p = ev
        cdef int32_t* sorted_o = ov
        if packed and P:
            # Sorted first as (point, owner) pairs, then packed in place of the points.
            sorted_o = <int32_t*>malloc(P * sizeof(int32_t))
            if sorted_o == NULL:
                raise MemoryError()
        with nogil:
            if P:
                bucket_sort(&src_p[0], &src_o[0], P, rank_ptr, self.tab.shift, nb, sorted_p, sorted_o, bv)
            else:
                memset(bv, 0, (nb + 1) * 4)
            if packed:
                for i in range(P):
                    ev[i] = ((ev[i] & self.tab.low_mask) << owner_bits) | <uint64_t>sorted_o[i]
                for i in range(POINT_PAD):
                    ev[P + i] = (self.tab.low_mask << owner_bits) | (<uint64_t>sorted_o[0] if P else 0)
            else:
                for i in range(POINT_PAD):
                    ev[P + i] = 0xFFFFFFFFFFFFFFFFULL
                ov[P] = ov[0] if P else 0
        if packed and P:
            free(sorted_o)

    @property
    def points(self):
        """Sorted ring points (read-only uint64 array; compat modes store u32 << 32)."""
        if not self.packed:
            return self._entries[:self.n_points]
        out = np.empty(self.n_points, dtype=np.uint64)
        cdef uint64_t[::1] o = out
        cdef Py_ssize_t b, i, nb = (<Py_ssize_t>1) << self.bits
        cdef int shift = self.tab.shift, ob = self.tab.owner_bits
        with nogil:
            for b in range(nb):
                for i in range(self.tab.bkt[b], self.tab.bkt[b + 1]):
                    o[i] = ((<uint64_t>b) << shift) | (self.tab.entry[i] >> ob)
        out.flags.writeable = False
        return out

    @property
    def owners(self):
        """Owner index (into names) of each point (read-only int32 array)."""
        if not self.packed:
            return self._owners[:self.n_points]
        out = (self._entries[:self.n_points] & np.uint64(self.tab.owner_mask)).astype(np.int32)
        out.flags.writeable = False
        return out

    @property
    def nbytes(self):
        """Bytes held by the lookup structures."""
        return self._entries.nbytes + self._buckets.nbytes + (0 if self.packed else self._owners.nbytes)

    def __reduce__(self):
        return (RingTable, (self.points, self.owners, self.names, self.algo))

    cdef int _check(self) except -1:
        if self.n_points == 0:
            raise EmptyRingError("the ring is empty: no node owns a point (add a node)")
        return 0

    cdef uint64_t _query(self, key) except? 0:
        cdef PyObject* obj = <PyObject*>key
        if PyUnicode_Check(obj) and PyUnicode_IS_COMPACT_ASCII(obj) and (
                not self.bytes_repr or PyUnicode_CheckExact(obj)):
            return key_query(<const char*>PyUnicode_DATA(obj), PyUnicode_GET_LENGTH(obj), self.algo)
        if PyBytes_Check(obj) and not self.bytes_repr:
            return key_query(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj), self.algo)
        b = key_bytes(key, self.bytes_repr)
        return key_query(PyBytes_AS_STRING(<PyObject*>b), PyBytes_GET_SIZE(<PyObject*>b), self.algo)

    cdef object _node(self, key):
        self._check()
        cdef uint64_t q = self._query(key)
        return self.names[hr_owner(&self.tab, hr_first_at_least(&self.tab, q))]

    cdef list _nodes(self, key, Py_ssize_t n):
        """n >= 1 distinct names; raises ValueError when fewer nodes own points."""
        self._check()
        cdef uint64_t q = self._query(key)
        cdef Py_ssize_t found, k
        cdef Py_ssize_t most = min(n, len(self.names))     # no walk finds more
        cdef int32_t small[SMALL_N]
        cdef int32_t* out = small
        cdef uint8_t* seen = NULL
        if most > SMALL_N:
            out = <int32_t*>malloc(most * sizeof(int32_t))
            seen = <uint8_t*>calloc(len(self.names) + 1, 1)
            if out == NULL or seen == NULL:
                free(out)
                free(seen)
                raise MemoryError()
        found = walk_distinct(&self.tab, q, most, out, seen)
        names = self.names
        result = [names[out[k]] for k in range(found)]
        if out != small:
            free(out)
            free(seen)
        if found < n:
            raise ValueError(f"n={n} exceeds the {found} nodes that own points on the ring")
        return result

    def get_node(self, key):
        """Name of the node that owns key."""
        return self._node(key)

    def get_nodes(self, key, Py_ssize_t n):
        """The preference list: n distinct node names in ring order from key's point."""
        if n < 1:
            raise ValueError(f"n must be >= 1, not {n}")
        return self._nodes(key, n)

    def map_batch(self, KeyBatch kb, int32_t[::1] out, Py_ssize_t start=0, Py_ssize_t stop=-1):
        """Owner index of keys [start, stop) of the batch into the same slots of out."""
        self._check()
        cdef Py_ssize_t end, bad, m = kb.length
        if stop < 0:
            stop = m
        if out.shape[0] != m or not 0 <= start <= stop <= m:
            raise ValueError("map_batch: out has the wrong length or the range is outside the batch")
        cdef _Scratch s = _Scratch(_utf8_scratch_size(kb))
        cdef const uint64_t* q
        cdef int algo = self.algo
        bad = -1
        if kb.kind == K_SEQ:            # collecting the keys needs the GIL, chunk by chunk
            for start in range(start, stop, CHUNK):
                end = min(start + CHUNK, stop)
                _fill_queries(kb, start, end, algo, s)
                with nogil:
                    hr_lookup_many(&self.tab, s.q, &out[start], end - start)
            return
        with nogil:                     # buffers: the whole range without the GIL
            while start < stop and bad < 0:
                end = min(start + CHUNK, stop)
                if kb.kind == K_HASHES and algo < 3:
                    q = kb.hashes + start       # native pre-hashed: search the input in place
                else:
                    bad = _fill_raw(kb, start, end, algo, s)
                    q = s.q
                if bad < 0:
                    hr_lookup_many(&self.tab, q, &out[start], end - start)
                start = end
        if bad >= 0:
            _raise_bad(kb, bad)

    def map_nodes_batch(self, KeyBatch kb, Py_ssize_t n, int32_t[:, ::1] out,
                        Py_ssize_t start=0, Py_ssize_t stop=-1):
        """Preference lists of n distinct owners for keys [start, stop) into out[m, n]."""
        self._check()
        cdef Py_ssize_t end, bad, i, m = kb.length, found, short = -1
        if stop < 0:
            stop = m
        if n < 1 or out.shape[0] != m or out.shape[1] != n or not 0 <= start <= stop <= m:
            raise ValueError("map_nodes_batch: n < 1, out has the wrong shape or the range is outside the batch")
        cdef _Scratch s = _Scratch(_utf8_scratch_size(kb))
        cdef uint8_t* seen = NULL
        if n > SMALL_N:
            seen = <uint8_t*>calloc(len(self.names) + 1, 1)
            if seen == NULL:
                raise MemoryError()
        try:
            for start in range(start, stop, CHUNK):
                end = min(start + CHUNK, stop)
                bad = _fill_queries(kb, start, end, self.algo, s)
                if bad >= 0:
                    _raise_bad(kb, bad)
                with nogil:
                    for i in range(end - start):
                        found = walk_distinct(&self.tab, s.q[i], n, &out[start + i, 0], seen)
                        if found < n:
                            short = found
                            break
                if short >= 0:
                    raise ValueError(f"n={n} exceeds the {short} nodes that own points on the ring")
        finally:
            free(seen)


cdef void bucket_sort(const uint64_t* src_p, const int32_t* src_o, Py_ssize_t P,
                      const int64_t* rank, int shift, Py_ssize_t nb,
                      uint64_t* pts, int32_t* own, uint32_t* bkt) noexcept nogil:
    """Sort (point, owner) pairs into pts/own and fill the prefix index bkt[nb + 1].

    Input that is already strictly increasing (a rebuild after one node changed) is
    copied. Otherwise a counting sort on the top bits, stable, leaves about two points
    a bucket, which an insertion sort then orders by (point, rank[owner]).
    """
    cdef Py_ssize_t i, j, b, lo, hi
    cdef uint32_t total = 0, c
    cdef uint64_t p
    cdef int32_t o
    i = 1
    while i < P and src_p[i] > src_p[i - 1]:
        i += 1
    if i >= P:
        memcpy(pts, src_p, P * sizeof(uint64_t))
        memcpy(own, src_o, P * sizeof(int32_t))
        b = 0
        for i in range(P):
            while b <= <Py_ssize_t>(src_p[i] >> shift):
                bkt[b] = <uint32_t>i
                b += 1
        while b <= nb:
            bkt[b] = <uint32_t>P
            b += 1
        return
    memset(bkt, 0, (nb + 1) * sizeof(uint32_t))
    for i in range(P):
        bkt[src_p[i] >> shift] += 1
    for b in range(nb + 1):
        c = bkt[b]
        bkt[b] = total
        total += c
    # bkt[b] is now bucket b's start; advance it while placing, then shift back.
    for i in range(P):
        b = src_p[i] >> shift
        j = bkt[b]
        bkt[b] += 1
        pts[j] = src_p[i]
        own[j] = src_o[i]
    for b in range(nb, 0, -1):
        bkt[b] = bkt[b - 1]
    bkt[0] = 0
    bkt[nb] = <uint32_t>P
    for b in range(nb):
        lo = bkt[b]
        hi = bkt[b + 1]
        for i in range(lo + 1, hi):
            p = pts[i]
            o = own[i]
            j = i
            while j > lo and (pts[j - 1] > p or (
                    pts[j - 1] == p and rank != NULL and rank[own[j - 1]] > rank[o])):
                pts[j] = pts[j - 1]
                own[j] = own[j - 1]
                j -= 1
            pts[j] = p
            own[j] = o


@cython.auto_pickle(False)
cdef class RingLookups:
    """Compiled single-key lookups, shared by HashRing and RingSnapshot (which set
    ``_table``), so a call costs one C method call."""

    cdef RingTable _get_table(self):
        if self._table is None:
            raise TypeError(f"this {type(self).__name__} was not initialised (__init__ was not run)")
        return self._table

    def get_node(self, key):
        """Name of the node that owns ``key``."""
        return self._get_table()._node(key)

    def get_nodes(self, key, n):
        """Preference list: ``n`` distinct node names in ring order, owner first.

        ``n`` larger than the number of nodes raises ``ValueError``.
        """
        cdef RingTable table = self._get_table()
        table._check()
        if type(n) is not int or not 1 <= n <= len(table.names):
            n = self._check_n(n, len(table.names))    # the messages live in ring.py
        return table._nodes(key, n)


def key_query_value(bytes data, int algo):
    """The query value of one key's bytes under algo (the public hash64 for algo < 3)."""
    return key_query(<const char*>data, <size_t>len(data), algo)
