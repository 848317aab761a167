# cython: language_level=3
"""Private Python layer over the C hash kernels in ``_hashes.h``.

Every function takes any C-contiguous bytes-like object (bytes, bytearray,
memoryview, numpy uint8 array, ...).  Used by the tests and by the pure-Python
parts of the package; the batch code cimports the C functions directly.
"""
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint32_t, uint64_t

# (the C declarations come from _hashes.pxd, which Cython reads implicitly)

__all__ = ["xxh3_64", "md5", "md5_64", "md5_32", "murmur3_128", "murmur3_64"]

# Inputs longer than this are hashed with the GIL released.
cdef enum:
    _NOGIL_THRESHOLD = 4096

# Stand-in pointer for empty inputs: an empty memoryview has no element 0,
# so &data[0] is only taken when len > 0.
cdef unsigned char _EMPTY[1]
_EMPTY[0] = 0


cdef uint64_t _seed64(object seed) except? 0xFFFFFFFFFFFFFFFF:
    seed = PyNumber_Index(seed)
    if not (0 <= seed <= 0xFFFFFFFFFFFFFFFF):
        raise ValueError(f"seed must be in [0, 2**64), got {seed!r}")
    return <uint64_t>seed


cdef uint32_t _seed32(object seed) except? 0xFFFFFFFF:
    seed = PyNumber_Index(seed)
    if not (0 <= seed <= 0xFFFFFFFF):
        raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
    return <uint32_t>seed


def xxh3_64(const unsigned char[::1] data not None, seed=0):
    """XXH3-64 of *data* (== xxhash.xxh3_64_intdigest(data, seed=seed))."""
    cdef uint64_t s = _seed64(seed)
    cdef size_t n = <size_t>data.shape[0]
    cdef const void *p = <const void *>_EMPTY
    if n > 0:
        p = <const void *>&data[0]
    cdef uint64_t h
    if n > _NOGIL_THRESHOLD:
        with nogil:
            h = hr_xxh3_64(p, n, s)
    else:
        h = hr_xxh3_64(p, n, s)
    return h


def md5(const unsigned char[::1] data not None):
    """16-byte MD5 digest of *data* (== hashlib.md5(data).digest())."""
    cdef size_t n = <size_t>data.shape[0]
    cdef const void *p = <const void *>_EMPTY
    if n > 0:
        p = <const void *>&data[0]
    cdef unsigned char out[16]
    if n > _NOGIL_THRESHOLD:
        with nogil:
            hr_md5(p, n, out)
    else:
        hr_md5(p, n, out)
    return (<char *>out)[:16]


def md5_64(const unsigned char[::1] data not None):
    """First 8 bytes of the MD5 digest as a little-endian unsigned int."""
    cdef size_t n = <size_t>data.shape[0]
    cdef const void *p = <const void *>_EMPTY
    if n > 0:
        p = <const void *>&data[0]
    cdef uint64_t h
    if n > _NOGIL_THRESHOLD:
        with nogil:
            h = hr_md5_64(p, n)
    else:
        h = hr_md5_64(p, n)
    return h


def md5_32(const unsigned char[::1] data not None):
    """First 4 bytes of the MD5 digest as a little-endian unsigned int
    (the ketama key hash)."""
    cdef size_t n = <size_t>data.shape[0]
    cdef const void *p = <const void *>_EMPTY
    if n > 0:
        p = <const void *>&data[0]
    cdef uint32_t h
    if n > _NOGIL_THRESHOLD:
        with nogil:
            h = hr_md5_32(p, n)
    else:
        h = hr_md5_32(p, n)
    return h


def murmur3_128(const unsigned char[::1] data not None, seed=0):
    """MurmurHash3_x64_128 of *data* as ``(h1, h2)`` unsigned 64-bit ints
    (== mmh3.hash64(data, seed=seed, x64arch=True, signed=False))."""
    cdef uint32_t s = _seed32(seed)
    cdef size_t n = <size_t>data.shape[0]
    cdef const void *p = <const void *>_EMPTY
    if n > 0:
        p = <const void *>&data[0]
    cdef uint64_t out[2]
    if n > _NOGIL_THRESHOLD:
        with nogil:
            hr_murmur3_x64_128(p, n, s, out)
    else:
        hr_murmur3_x64_128(p, n, s, out)
    return (out[0], out[1])


def murmur3_64(const unsigned char[::1] data not None):
    """h1 of MurmurHash3_x64_128(data, seed=0)."""
    cdef size_t n = <size_t>data.shape[0]
    cdef const void *p = <const void *>_EMPTY
    if n > 0:
        p = <const void *>&data[0]
    cdef uint64_t h
    if n > _NOGIL_THRESHOLD:
        with nogil:
            h = hr_murmur3_64(p, n)
    else:
        h = hr_murmur3_64(p, n)
    return h
