# Declarations of the C hash kernels in _hashes.h (header-only, all static
# inline).  cimport these from other Cython modules:
#     from hashring._hashes cimport hr_xxh3_64, hr_md5_32
from libc.stdint cimport uint32_t, uint64_t


cdef extern from "_hashes.h" nogil:
    # == XXH3_64bits_withSeed; seed 0 == XXH3_64bits
    uint64_t hr_xxh3_64(const void *data, size_t len, uint64_t seed) noexcept
    # RFC 1321 digest (16 bytes)
    void hr_md5(const void *data, size_t len, unsigned char *out) noexcept
    # first 8 digest bytes, little-endian
    uint64_t hr_md5_64(const void *data, size_t len) noexcept
    # first 4 digest bytes, little-endian (the ketama key hash)
    uint32_t hr_md5_32(const void *data, size_t len) noexcept
    # md5 of 8 messages of at most 55 bytes each: digest words A and B of each
    void hr_md5_x8(const char *const *msg, const size_t *len, uint32_t *a, uint32_t *b) noexcept
    # MurmurHash3_x64_128: out[0] = h1, out[1] = h2
    void hr_murmur3_x64_128(const void *data, size_t len, uint32_t seed,
                            uint64_t *out) noexcept
    # h1 of MurmurHash3_x64_128 with seed 0
    uint64_t hr_murmur3_64(const void *data, size_t len) noexcept
