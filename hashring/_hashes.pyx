# cython: language_level=3
"""Private Python layer over the C hash kernels in ``_hashes.h``.

Every function takes any C-contiguous bytes-like object (bytes, bytearray,
memoryview, numpy uint8 array, ...). Used by the tests; the batch code cimports
the C functions directly. The GIL is released around each hash, so long inputs
hashed from several threads run in parallel.
"""
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint32_t, uint64_t

# (the C declarations come from _hashes.pxd, which Cython reads implicitly)

__all__ = ["xxh3_64", "md5", "md5_64", "md5_32", "murmur3_128", "murmur3_64"]

# Stand-in pointer for empty inputs: an empty memoryview has no element 0.
cdef unsigned char _EMPTY[1]
_EMPTY[0] = 0


cdef inline const void* _start(const unsigned char[::1] data) noexcept:
    return <const void*>&data[0] if data.shape[0] > 0 else <const void*>_EMPTY


cdef uint64_t _seed(object seed, uint64_t top) except? 0xFFFFFFFFFFFFFFFF:
    seed = PyNumber_Index(seed)
    if not (0 <= seed <= top):
        raise ValueError(f"seed must be in [0, {top + 1:#x}), got {seed!r}")
    return <uint64_t>seed


def xxh3_64(const unsigned char[::1] data not None, seed=0):
    """XXH3-64 of *data* (== xxhash.xxh3_64_intdigest(data, seed=seed))."""
    cdef uint64_t s = _seed(seed, 0xFFFFFFFFFFFFFFFF), h
    cdef const void* p = _start(data)
    with nogil:
        h = hr_xxh3_64(p, <size_t>data.shape[0], s)
    return h


def md5(const unsigned char[::1] data not None):
    """16-byte MD5 digest of *data* (== hashlib.md5(data).digest())."""
    cdef unsigned char out[16]
    cdef const void* p = _start(data)
    with nogil:
        hr_md5(p, <size_t>data.shape[0], out)
    return (<char*>out)[:16]


def md5_64(const unsigned char[::1] data not None):
    """First 8 bytes of the MD5 digest as a little-endian unsigned int."""
    cdef uint64_t h
    cdef const void* p = _start(data)
    with nogil:
        h = hr_md5_64(p, <size_t>data.shape[0])
    return h


def md5_32(const unsigned char[::1] data not None):
    """First 4 bytes of the MD5 digest as a little-endian unsigned int (the ketama key hash)."""
    cdef uint32_t h
    cdef const void* p = _start(data)
    with nogil:
        h = hr_md5_32(p, <size_t>data.shape[0])
    return h


def murmur3_128(const unsigned char[::1] data not None, seed=0):
    """MurmurHash3_x64_128 of *data* as ``(h1, h2)`` unsigned 64-bit ints
    (== mmh3.hash64(data, seed=seed, x64arch=True, signed=False))."""
    cdef uint32_t s = <uint32_t>_seed(seed, 0xFFFFFFFF)
    cdef uint64_t out[2]
    cdef const void* p = _start(data)
    with nogil:
        hr_murmur3_x64_128(p, <size_t>data.shape[0], s, out)
    return (out[0], out[1])


def murmur3_64(const unsigned char[::1] data not None):
    """h1 of MurmurHash3_x64_128(data, seed=0)."""
    cdef uint64_t h
    cdef const void* p = _start(data)
    with nogil:
        h = hr_murmur3_64(p, <size_t>data.shape[0])
    return h
