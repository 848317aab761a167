# cython: language_level=3
"""Compiled core of the ring: key hashing doors, the lookup table and its kernels.

Everything here is mechanism. Validation, policy and messages live in ``ring.py``;
this module trusts its callers for shapes and dtypes and only reports per-key errors.

A ring snapshot is a :class:`RingTable`: a sorted ``uint64`` point array, an ``int32``
owner array (both with one sentinel slot at the end: point ``UINT64_MAX``, owner of
point 0, so the wrap-around needs no branch) and a prefix index over the top ``b`` bits
of the hash. A key is owned by the first point whose value is ``>=`` its query value.
The compatibility modes keep their 32-bit ketama points in the top half of the word,
which keeps the prefix index useful and turns uhashring's "first point > h" into a
``>=`` search for ``(h << 32) | 1``.
"""

cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from hashring._hashes cimport hr_md5, hr_md5_32, hr_md5_64, hr_murmur3_64, hr_xxh3_64

import operator

import numpy as np

cdef extern from "Python.h":
    # Borrowed-reference forms, so the collection loop does no refcounting.
    PyObject* PyTuple_GET_ITEM(object, Py_ssize_t)
    bint PyUnicode_Check(PyObject*)
    bint PyBytes_Check(PyObject*)
    bint PyUnicode_IS_COMPACT_ASCII(PyObject*)
    void* PyUnicode_DATA(PyObject*)
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject*)
    object PyUnicode_AsUTF8String(PyObject*)
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


cdef inline uint64_t key_query(const char* p, size_t n, int algo) noexcept nogil:
    cdef uint64_t h
    if algo == 0:
        return hr_xxh3_64(p, n, 0)
    if algo == 1:
        return hr_md5_64(p, n)
    if algo == 2:
        return hr_murmur3_64(p, n)
    h = (<uint64_t>hr_md5_32(p, n)) << 32
    if algo == 4:
        h |= 1
    return h


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
            if type(obj) is not tuple:
                raise TypeError("KeyBatch: K_SEQ needs a tuple")
            self.seq = obj
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
    """Per-call buffers for one batch: query values, key pointers, a UTF-8 buffer."""
    cdef uint64_t* q
    cdef const char** ptrs
    cdef Py_ssize_t* lens
    cdef char* utf8
    cdef list keep

    def __cinit__(self, Py_ssize_t utf8_size):
        self.q = <uint64_t*>malloc(CHUNK * sizeof(uint64_t))
        self.ptrs = <const char**>malloc(CHUNK * sizeof(char*))
        self.lens = <Py_ssize_t*>malloc(CHUNK * sizeof(Py_ssize_t))
        self.utf8 = <char*>malloc(utf8_size if utf8_size > 0 else 1)
        self.keep = []
        if self.q == NULL or self.ptrs == NULL or self.lens == NULL or self.utf8 == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.q)
        free(self.ptrs)
        free(self.lens)
        free(self.utf8)


cdef Py_ssize_t _collect_seq(KeyBatch kb, Py_ssize_t start, Py_ssize_t end, _Scratch s) except -1:
    """With the GIL: point at the UTF-8/bytes data of kb.seq[start:end]."""
    cdef Py_ssize_t i, n
    cdef PyObject* obj
    cdef bint bytes_repr = kb.bytes_repr
    s.keep.clear()
    i = start
    try:
        while i < end:
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
    cdef Py_ssize_t i, j, n, cnt = end - start, bad = -1
    cdef const char* p
    cdef Py_ssize_t w = kb.itemsize
    if kb.kind == K_SEQ:
        _collect_seq(kb, start, end, s)
        with nogil:
            for i in range(cnt):
                s.q[i] = key_query(s.ptrs[i], <size_t>s.lens[i], algo)
        return -1
    with nogil:
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
                n = w
                while n > 0 and p[n - 1] == 0:
                    n -= 1
                s.q[i] = key_query(p, <size_t>n, algo)
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
                s.q[i] = key_query(kb.data + kb.off32[j], <size_t>(kb.off32[j + 1] - kb.off32[j]), algo)
        else:
            for i in range(cnt):
                j = start + i
                s.q[i] = key_query(kb.data + kb.off64[j], <size_t>(kb.off64[j + 1] - kb.off64[j]), algo)
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


cdef char* label_buffer(bytes name) except NULL:
    cdef Py_ssize_t nlen = len(name)
    cdef char* buf = <char*>malloc(nlen + 24)
    if buf == NULL:
        raise MemoryError()
    memcpy(buf, <const char*>name, nlen)
    buf[nlen] = b'-'
    return buf


def vnode_points(bytes name, Py_ssize_t count, int algo):
    """Native points of one node: H(name + b"-" + str(j)) for j in range(count)."""
    cdef Py_ssize_t j, nlen = len(name)
    out = np.empty(count, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef char* buf = label_buffer(name)
    with nogil:
        for j in range(count):
            o[j] = key_query(buf, write_label(buf, nlen, <uint64_t>j), algo)
    free(buf)
    return out


def ketama_points(bytes name, Py_ssize_t groups):
    """libketama's points of one server: 4 little-endian u32 per md5(name-k), stored << 32."""
    cdef Py_ssize_t j, r, nlen = len(name)
    cdef unsigned char dg[16]
    out = np.empty(4 * groups, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef char* buf = label_buffer(name)
    with nogil:
        for j in range(groups):
            hr_md5(buf, write_label(buf, nlen, <uint64_t>j), dg)
            for r in range(4):
                o[4 * j + r] = (<uint64_t>(dg[4 * r] | (dg[4 * r + 1] << 8) | (dg[4 * r + 2] << 16)
                                            | (<uint32_t>dg[4 * r + 3] << 24))) << 32
    free(buf)
    return out


cdef inline Py_ssize_t ring_pos(const uint64_t* pts, const uint32_t* bkt, int shift,
                                uint64_t q) noexcept nogil:
    """Index of the first point >= q (P, the sentinel, when q is past the last point).

    The prefix bucket starts at most a few points before the answer; the fixed probes
    compile to compare-and-add with no branch, the loop after them is rarely entered.
    """
    cdef Py_ssize_t lo = bkt[q >> shift]
    lo += pts[lo] < q
    lo += pts[lo] < q
    lo += pts[lo] < q
    lo += pts[lo] < q
    while pts[lo] < q:
        lo += 1
    return lo


cdef extern from "Python.h":
    object PyBytes_FromStringAndSize(const char*, Py_ssize_t)


def _frozen_array(Py_ssize_t nbytes, dtype):
    """A read-only array over a new bytes object (its flag can never be set writable)."""
    return np.frombuffer(PyBytes_FromStringAndSize(NULL, nbytes), dtype=dtype)


cdef inline void* _array_data(arr):
    # The bytes object behind a frozen array is ours alone until the table is built.
    return <void*>PyBytes_AS_STRING(<PyObject*>arr.base)


cdef class RingTable:
    """An immutable ring snapshot: sorted points, owners and a prefix index."""
    def __cinit__(self, points, owners, tuple names, int algo):
        """points: sorted uint64[P]; owners: int32[P] indices into names."""
        cdef Py_ssize_t P = len(points), nb, i, j
        cdef int bits
        cdef uint64_t top
        points = np.ascontiguousarray(points, dtype=np.uint64)
        owners = np.ascontiguousarray(owners, dtype=np.int32)
        if owners.shape != (P,) or points.ndim != 1:
            raise ValueError("RingTable: points and owners must be 1-d arrays of one length")
        # The kernels trust these invariants; a table from elsewhere (unpickling) is checked.
        if P and (owners.min() < 0 or owners.max() >= len(names)):
            raise ValueError("RingTable: an owner index is outside names")
        if P > 1 and np.any(points[1:] < points[:-1]):
            raise ValueError("RingTable: points must be sorted")
        if P >= 0xFFFFFFFF:
            raise ValueError("RingTable: too many points")
        self.names = names
        self.n_points = P
        self.algo = algo
        self.bytes_repr = algo == ALGO_UHASHRING
        # 0.5..1 bucket per point: the bucket table costs at most 4 bytes per point.
        bits = 1
        while (1 << (bits + 1)) <= P and bits < 40:
            bits += 1
        nb = (<Py_ssize_t>1) << bits
        # Backed by bytes objects, so no one can make them writable again: lookups index
        # these tables without bounds checks.
        pts = _frozen_array((P + 1) * 8, np.uint64)
        own = _frozen_array((P + 1) * 4, np.int32)
        bkt = _frozen_array((nb + 1) * 4, np.uint32)
        cdef uint64_t* pv = <uint64_t*>_array_data(pts)
        cdef int32_t* ov = <int32_t*>_array_data(own)
        cdef uint32_t* bv = <uint32_t*>_array_data(bkt)
        cdef const uint64_t[::1] src_p = points
        cdef const int32_t[::1] src_o = owners
        if P:
            memcpy(pv, &src_p[0], P * sizeof(uint64_t))
            memcpy(ov, &src_o[0], P * sizeof(int32_t))
        pv[P] = 0xFFFFFFFFFFFFFFFFULL
        ov[P] = ov[0] if P else 0
        self.bits = bits
        self.shift = 64 - bits
        with nogil:
            i = 0
            for j in range(nb):
                top = (<uint64_t>j) << self.shift
                while i < P and pv[i] < top:
                    i += 1
                bv[j] = <uint32_t>i
            bv[nb] = <uint32_t>P
        self._points = pts
        self._owners = own
        self._buckets = bkt
        self.pts = pv
        self.own = ov
        self.bkt = bv

    @property
    def points(self):
        """Sorted ring points (read-only uint64 array; compat modes store u32 << 32)."""
        return self._points[:self.n_points]

    @property
    def owners(self):
        """Owner index (into names) of each point (read-only int32 array)."""
        return self._owners[:self.n_points]

    @property
    def nbytes(self):
        """Bytes held by the lookup structures."""
        return self._points.nbytes + self._owners.nbytes + self._buckets.nbytes

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

    def get_node(self, key):
        """Name of the node that owns key."""
        self._check()
        cdef uint64_t q = self._query(key)
        return self.names[self.own[ring_pos(self.pts, self.bkt, self.shift, q)]]

    cdef Py_ssize_t _walk(self, uint64_t q, Py_ssize_t n, int32_t* out, uint8_t* seen) noexcept nogil:
        """The first n distinct owners from q's point on; returns how many were found."""
        cdef Py_ssize_t P = self.n_points
        cdef Py_ssize_t i = ring_pos(self.pts, self.bkt, self.shift, q)
        cdef Py_ssize_t steps, found = 0, k
        cdef int32_t o
        if i == P:
            i = 0
        for steps in range(P):
            o = self.own[i]
            if not seen[o]:
                seen[o] = 1
                out[found] = o
                found += 1
                if found == n:
                    break
            i += 1
            if i == P:
                i = 0
        for k in range(found):
            seen[out[k]] = 0
        return found

    def get_nodes(self, key, Py_ssize_t n):
        """The preference list: n distinct node names in ring order from key's point."""
        self._check()
        if n < 1:
            raise ValueError(f"n must be >= 1, not {n}")
        cdef uint64_t q = self._query(key)
        cdef Py_ssize_t found, k
        cdef int32_t small[64]
        cdef int32_t* out = small
        cdef uint8_t* seen = <uint8_t*>malloc(len(self.names) + 1)
        if seen == NULL:
            raise MemoryError()
        memset(seen, 0, len(self.names) + 1)
        if n > 64:
            out = <int32_t*>malloc(n * sizeof(int32_t))
            if out == NULL:
                free(seen)
                raise MemoryError()
        found = self._walk(q, n, out, seen)
        result = [self.names[out[k]] for k in range(found)]
        free(seen)
        if out != small:
            free(out)
        return result

    def map_batch(self, KeyBatch kb, int32_t[::1] out):
        """Owner index of every key of the batch into out."""
        self._check()
        cdef Py_ssize_t start, end, bad, i, m = kb.length
        if out.shape[0] != m:
            raise ValueError("map_batch: out has the wrong length")
        cdef _Scratch s = _Scratch(_utf8_scratch_size(kb))
        cdef const uint64_t* q
        cdef int algo = self.algo
        for start in range(0, m, CHUNK):
            end = min(start + CHUNK, m)
            if kb.kind == K_HASHES and algo < 3:
                q = kb.hashes + start       # native pre-hashed: search the input in place
            else:
                bad = _fill_queries(kb, start, end, algo, s)
                if bad >= 0:
                    _raise_bad(kb, bad)
                q = s.q
            with nogil:
                for i in range(end - start):
                    out[start + i] = self.own[ring_pos(self.pts, self.bkt, self.shift, q[i])]

    def map_nodes_batch(self, KeyBatch kb, Py_ssize_t n, int32_t[:, ::1] out):
        """Preference list of n distinct owners for every key into out[m, n]."""
        self._check()
        cdef Py_ssize_t start, end, bad, i, m = kb.length, found, short = -1
        if n < 1 or out.shape[0] != m or out.shape[1] != n:
            raise ValueError("map_nodes_batch: n < 1 or out has the wrong shape")
        cdef _Scratch s = _Scratch(_utf8_scratch_size(kb))
        cdef uint8_t* seen = <uint8_t*>malloc(len(self.names) + 1)
        if seen == NULL:
            raise MemoryError()
        memset(seen, 0, len(self.names) + 1)
        try:
            for start in range(0, m, CHUNK):
                end = min(start + CHUNK, m)
                bad = _fill_queries(kb, start, end, self.algo, s)
                if bad >= 0:
                    _raise_bad(kb, bad)
                with nogil:
                    for i in range(end - start):
                        found = self._walk(s.q[i], n, &out[start + i, 0], seen)
                        if found < n:
                            short = found
                            break
                if short >= 0:
                    raise ValueError(f"n={n} exceeds the {short} nodes that own points on the ring")
        finally:
            free(seen)


def key_query_value(bytes data, int algo):
    """The query value of one key's bytes under algo (the public hash64 for algo < 3)."""
    return key_query(<const char*>data, <size_t>len(data), algo)
