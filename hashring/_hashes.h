/*
 * hashring/_hashes.h -- hash kernels used by the hashring Cython core.
 *
 * Header-only C99 (gcc/clang extensions used when available).  Every function
 * is `static`; there is no allocation and no mutable global state (only
 * read-only constant tables).  Input is read little-endian through memcpy, so
 * any alignment is fine; big-endian hosts byte-swap after loading.
 *
 * Implemented from the published descriptions:
 *   - XXH3_64bits / XXH3_64bits_withSeed: "xxHash fast digest algorithm",
 *     XXH3 algorithm description (small / medium / large inputs).
 *   - MD5: RFC 1321.
 *   - MurmurHash3_x64_128: Austin Appleby's MurmurHash3 description.
 *
 * Public API:
 *   uint64_t hr_xxh3_64(const void *data, size_t len, uint64_t seed);
 *   void     hr_md5(const void *data, size_t len, unsigned char out[16]);
 *   uint64_t hr_md5_64(const void *data, size_t len);
 *   uint32_t hr_md5_32(const void *data, size_t len);
 *   void     hr_md5_x8(const char *const msg[8], const size_t len[8],
 *                      uint32_t a[8], uint32_t b[8]);   (each len <= 55)
 *   void     hr_murmur3_x64_128(const void *data, size_t len, uint32_t seed,
 *                               uint64_t out[2]);
 *   uint64_t hr_murmur3_64(const void *data, size_t len);
 *
 * `data` may be any pointer (it is never dereferenced when len == 0, but it
 * should still be a valid pointer for portability).
 *
 * Everything prefixed `hr__` / `HR__` is internal.
 */
#ifndef HASHRING_HASHES_H
#define HASHRING_HASHES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Compiler glue                                                            */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
#  define HR__GNUC 1
#  define HR__FORCE_INLINE static inline __attribute__((always_inline, unused))
#  define HR__NOINLINE     static __attribute__((noinline, unused))
#  define HR__UNUSED       __attribute__((unused))
#  define HR__LIKELY(x)    __builtin_expect(!!(x), 1)
#  define HR__UNLIKELY(x)  __builtin_expect(!!(x), 0)
#else
#  define HR__GNUC 0
#  define HR__FORCE_INLINE static inline
#  define HR__NOINLINE     static
#  define HR__UNUSED
#  define HR__LIKELY(x)    (x)
#  define HR__UNLIKELY(x)  (x)
#endif
#define HR__INLINE static inline

/* Byte order.  Little-endian is assumed unless the compiler says otherwise. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__)
#  if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#    define HR__BIG_ENDIAN 1
#  else
#    define HR__BIG_ENDIAN 0
#  endif
#elif defined(__BIG_ENDIAN__) || defined(__ARMEB__) || defined(__MIPSEB__) || \
      defined(__AARCH64EB__) || defined(_MIPSEB)
#  define HR__BIG_ENDIAN 1
#else
#  define HR__BIG_ENDIAN 0
#endif

/* 128-bit multiply support.  Define HR_HASHES_NO_INT128 to force the portable
 * fallback (used for testing it). */
#if defined(__SIZEOF_INT128__) && !defined(HR_HASHES_NO_INT128)
#  define HR__HAVE_INT128 1
__extension__ typedef unsigned __int128 hr__u128;
#else
#  define HR__HAVE_INT128 0
#endif

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

HR__FORCE_INLINE uint32_t hr__bswap32(uint32_t x)
{
#if HR__GNUC
    return __builtin_bswap32(x);
#else
    return ((x << 24) & 0xff000000U) | ((x << 8) & 0x00ff0000U) |
           ((x >> 8) & 0x0000ff00U) | ((x >> 24) & 0x000000ffU);
#endif
}

HR__FORCE_INLINE uint64_t hr__bswap64(uint64_t x)
{
#if HR__GNUC
    return __builtin_bswap64(x);
#else
    return ((uint64_t)hr__bswap32((uint32_t)x) << 32) |
           (uint64_t)hr__bswap32((uint32_t)(x >> 32));
#endif
}

HR__FORCE_INLINE uint32_t hr__rotl32(uint32_t x, unsigned r)
{
    return (x << r) | (x >> ((32U - r) & 31U));
}

HR__FORCE_INLINE uint64_t hr__rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> ((64U - r) & 63U));
}

HR__FORCE_INLINE uint32_t hr__read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if HR__BIG_ENDIAN
    v = hr__bswap32(v);
#endif
    return v;
}

HR__FORCE_INLINE uint64_t hr__read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if HR__BIG_ENDIAN
    v = hr__bswap64(v);
#endif
    return v;
}

HR__FORCE_INLINE void hr__write32(uint8_t *p, uint32_t v)
{
#if HR__BIG_ENDIAN
    v = hr__bswap32(v);
#endif
    memcpy(p, &v, sizeof v);
}

HR__FORCE_INLINE void hr__write64(uint8_t *p, uint64_t v)
{
#if HR__BIG_ENDIAN
    v = hr__bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

/* Little-endian value of n bytes at p, 1 <= n <= 8, without a byte loop.
 * For n >= 4 two (possibly overlapping) 32-bit loads are merged: the bytes
 * they share are identical, so OR-ing them is exact. */
HR__FORCE_INLINE uint64_t hr__read_partial64(const uint8_t *p, size_t n)
{
    if (n >= 4) {
        uint64_t lo = hr__read32(p);
        uint64_t hi = hr__read32(p + n - 4);
        return lo | (hi << (8U * (unsigned)(n - 4)));
    }
    return (uint64_t)p[0] |
           ((uint64_t)p[n >> 1] << (8U * (unsigned)(n >> 1))) |
           ((uint64_t)p[n - 1] << (8U * (unsigned)(n - 1)));
}

/* 64x64 -> 128 multiply, returning low ^ high. */
HR__FORCE_INLINE uint64_t hr__mul128_fold64(uint64_t a, uint64_t b)
{
#if HR__HAVE_INT128
    hr__u128 prod = (hr__u128)a * (hr__u128)b;
    return (uint64_t)prod ^ (uint64_t)(prod >> 64);
#else
    /* Schoolbook on 32-bit halves.  `mid` cannot overflow:
     * (2^32-1) + (2^32-1) + (2^32-1)^2 == 2^64 - 1. */
    uint64_t a_lo = a & 0xffffffffU, a_hi = a >> 32;
    uint64_t b_lo = b & 0xffffffffU, b_hi = b >> 32;
    uint64_t ll = a_lo * b_lo;
    uint64_t hl = a_hi * b_lo;
    uint64_t lh = a_lo * b_hi;
    uint64_t hh = a_hi * b_hi;
    uint64_t mid = (ll >> 32) + (hl & 0xffffffffU) + lh;
    uint64_t high = hh + (hl >> 32) + (mid >> 32);
    uint64_t low = (mid << 32) | (ll & 0xffffffffU);
    return low ^ high;
#endif
}

/* ------------------------------------------------------------------------ */
/* XXH3-64                                                                  */
/* ------------------------------------------------------------------------ */

#define HR__P32_1 0x9E3779B1U
#define HR__P32_2 0x85EBCA77U
#define HR__P32_3 0xC2B2AE3DU
#define HR__P64_1 0x9E3779B185EBCA87ULL
#define HR__P64_2 0xC2B2AE3D27D4EB4FULL
#define HR__P64_3 0x165667B19E3779F9ULL
#define HR__P64_4 0x85EBCA77C2B2AE63ULL
#define HR__P64_5 0x27D4EB2F165667C5ULL
#define HR__PMX_1 0x165667919E3779F9ULL
#define HR__PMX_2 0x9FB21C651E98DF25ULL

#define HR__XXH3_SECRET_SIZE 192
#define HR__XXH3_STRIPE_LEN 64
#define HR__XXH3_STRIPES_PER_BLOCK ((HR__XXH3_SECRET_SIZE - HR__XXH3_STRIPE_LEN) / 8)
#define HR__XXH3_BLOCK_LEN (HR__XXH3_STRIPE_LEN * HR__XXH3_STRIPES_PER_BLOCK)

/* The default 192-byte secret (spec: "defaultSecret"). */
static const uint8_t hr__xxh3_secret[HR__XXH3_SECRET_SIZE] HR__UNUSED = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* Shorthand: 64/32-bit little-endian word of the default secret at byte
 * offset `off` (constant-folded by the compiler). */
#define HR__S64(off) hr__read64(hr__xxh3_secret + (off))
#define HR__S32(off) hr__read32(hr__xxh3_secret + (off))

/* avalanche_XXH64 */
HR__FORCE_INLINE uint64_t hr__xxh64_avalanche(uint64_t h)
{
    h ^= h >> 33;
    h *= HR__P64_2;
    h ^= h >> 29;
    h *= HR__P64_3;
    h ^= h >> 32;
    return h;
}

/* avalanche (XXH3) */
HR__FORCE_INLINE uint64_t hr__xxh3_avalanche(uint64_t h)
{
    h ^= h >> 37;
    h *= HR__PMX_1;
    h ^= h >> 32;
    return h;
}

/* -- 0..16 bytes --------------------------------------------------------- */

HR__FORCE_INLINE uint64_t hr__xxh3_len_1to3(const uint8_t *p, size_t len, uint64_t seed)
{
    uint32_t combined = (uint32_t)p[len - 1]
                      | ((uint32_t)len << 8)
                      | ((uint32_t)p[0] << 16)
                      | ((uint32_t)p[len >> 1] << 24);
    uint64_t flip = (uint64_t)(HR__S32(0) ^ HR__S32(4)) + seed;
    return hr__xxh64_avalanche(flip ^ (uint64_t)combined);
}

HR__FORCE_INLINE uint64_t hr__xxh3_len_4to8(const uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t first = hr__read32(p);
    uint64_t last = hr__read32(p + len - 4);
    uint64_t mseed = seed ^ ((uint64_t)hr__bswap32((uint32_t)seed) << 32);
    uint64_t flip = (HR__S64(8) ^ HR__S64(16)) - mseed;
    uint64_t v = (last | (first << 32)) ^ flip;
    v ^= hr__rotl64(v, 49) ^ hr__rotl64(v, 24);
    v *= HR__PMX_2;
    v ^= (v >> 35) + (uint64_t)len;
    v *= HR__PMX_2;
    v ^= v >> 28;
    return v;
}

HR__FORCE_INLINE uint64_t hr__xxh3_len_9to16(const uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t lo = ((HR__S64(24) ^ HR__S64(32)) + seed) ^ hr__read64(p);
    uint64_t hi = ((HR__S64(40) ^ HR__S64(48)) - seed) ^ hr__read64(p + len - 8);
    uint64_t v = (uint64_t)len + hr__bswap64(lo) + hi + hr__mul128_fold64(lo, hi);
    return hr__xxh3_avalanche(v);
}

HR__FORCE_INLINE uint64_t hr__xxh3_len_0to16(const uint8_t *p, size_t len, uint64_t seed)
{
    if (len > 8)
        return hr__xxh3_len_9to16(p, len, seed);
    if (len >= 4)
        return hr__xxh3_len_4to8(p, len, seed);
    if (len)
        return hr__xxh3_len_1to3(p, len, seed);
    return hr__xxh64_avalanche(seed ^ HR__S64(56) ^ HR__S64(64));
}

/* -- 17..240 bytes ------------------------------------------------------- */

/* mixStep: one 16-byte data chunk against 16 bytes of secret. */
HR__FORCE_INLINE uint64_t hr__xxh3_mix16(const uint8_t *p, const uint8_t *s, uint64_t seed)
{
    uint64_t a = hr__read64(p) ^ (hr__read64(s) + seed);
    uint64_t b = hr__read64(p + 8) ^ (hr__read64(s + 8) - seed);
    return hr__mul128_fold64(a, b);
}

/* N chunks from the front paired with N chunks from the back; the spec's
 * loop over i = N-1 .. 0 written out (additions commute). */
HR__FORCE_INLINE uint64_t hr__xxh3_len_17to128(const uint8_t *p, size_t len, uint64_t seed)
{
    const uint8_t *s = hr__xxh3_secret;
    const uint8_t *end = p + len;
    uint64_t acc = (uint64_t)len * HR__P64_1;
    if (len > 32) {
        if (len > 64) {
            if (len > 96) {
                acc += hr__xxh3_mix16(p + 48, s + 96, seed);
                acc += hr__xxh3_mix16(end - 64, s + 112, seed);
            }
            acc += hr__xxh3_mix16(p + 32, s + 64, seed);
            acc += hr__xxh3_mix16(end - 48, s + 80, seed);
        }
        acc += hr__xxh3_mix16(p + 16, s + 32, seed);
        acc += hr__xxh3_mix16(end - 32, s + 48, seed);
    }
    acc += hr__xxh3_mix16(p, s, seed);
    acc += hr__xxh3_mix16(end - 16, s + 16, seed);
    return hr__xxh3_avalanche(acc);
}

HR__NOINLINE uint64_t hr__xxh3_len_129to240(const uint8_t *p, size_t len, uint64_t seed)
{
    const uint8_t *s = hr__xxh3_secret;
    size_t nchunks = len >> 4;
    size_t i;
    uint64_t acc = (uint64_t)len * HR__P64_1;
    for (i = 0; i < 8; i++)
        acc += hr__xxh3_mix16(p + 16 * i, s + 16 * i, seed);
    acc = hr__xxh3_avalanche(acc);
    for (i = 8; i < nchunks; i++)
        acc += hr__xxh3_mix16(p + 16 * i, s + 16 * (i - 8) + 3, seed);
    /* last 16 bytes against secret[136 - 17 ..] */
    acc += hr__xxh3_mix16(p + len - 16, s + 119, seed);
    return hr__xxh3_avalanche(acc);
}

/* -- > 240 bytes --------------------------------------------------------- */

/* One 64-byte stripe into the 8 accumulators. */
HR__FORCE_INLINE void hr__xxh3_accumulate_stripe(uint64_t acc[8], const uint8_t *in,
                                                 const uint8_t *s)
{
    int i;
    for (i = 0; i < 8; i++) {
        uint64_t d = hr__read64(in + 8 * i);
        uint64_t k = d ^ hr__read64(s + 8 * i);
        acc[i ^ 1] += d;
        acc[i] += (k & 0xffffffffU) * (k >> 32);
    }
}

HR__FORCE_INLINE void hr__xxh3_accumulate(uint64_t acc[8], const uint8_t *in,
                                          const uint8_t *s, size_t nstripes)
{
    size_t n;
    for (n = 0; n < nstripes; n++)
        hr__xxh3_accumulate_stripe(acc, in + n * HR__XXH3_STRIPE_LEN, s + n * 8);
}

HR__FORCE_INLINE void hr__xxh3_scramble(uint64_t acc[8], const uint8_t *s)
{
    int i;
    for (i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= hr__read64(s + 8 * i);
        a *= HR__P32_1;
        acc[i] = a;
    }
}

HR__FORCE_INLINE uint64_t hr__xxh3_hash_long(const uint8_t *p, size_t len, const uint8_t *s)
{
    uint64_t acc[8] = {
        HR__P32_3, HR__P64_1, HR__P64_2, HR__P64_3,
        HR__P64_4, HR__P32_2, HR__P64_5, HR__P32_1,
    };
    size_t nblocks = (len - 1) / HR__XXH3_BLOCK_LEN;
    size_t b, nstripes, i;
    uint64_t result;

    for (b = 0; b < nblocks; b++) {
        hr__xxh3_accumulate(acc, p + b * HR__XXH3_BLOCK_LEN, s, HR__XXH3_STRIPES_PER_BLOCK);
        hr__xxh3_scramble(acc, s + HR__XXH3_SECRET_SIZE - HR__XXH3_STRIPE_LEN);
    }
    /* last (partial or full) block: all stripes but the final one */
    nstripes = ((len - 1) - nblocks * HR__XXH3_BLOCK_LEN) / HR__XXH3_STRIPE_LEN;
    hr__xxh3_accumulate(acc, p + nblocks * HR__XXH3_BLOCK_LEN, s, nstripes);
    /* the last 64 bytes of input, possibly overlapping the previous stripe */
    hr__xxh3_accumulate_stripe(acc, p + len - HR__XXH3_STRIPE_LEN,
                               s + HR__XXH3_SECRET_SIZE - HR__XXH3_STRIPE_LEN - 7);

    /* finalMerge(len * PRIME64_1, 11) */
    result = (uint64_t)len * HR__P64_1;
    for (i = 0; i < 4; i++)
        result += hr__mul128_fold64(acc[2 * i] ^ hr__read64(s + 11 + 16 * i),
                                    acc[2 * i + 1] ^ hr__read64(s + 11 + 16 * i + 8));
    return hr__xxh3_avalanche(result);
}

HR__NOINLINE uint64_t hr__xxh3_long_default(const uint8_t *p, size_t len)
{
    return hr__xxh3_hash_long(p, len, hr__xxh3_secret);
}

HR__NOINLINE uint64_t hr__xxh3_long_seeded(const uint8_t *p, size_t len, uint64_t seed)
{
    uint8_t secret[HR__XXH3_SECRET_SIZE];
    int i;
    for (i = 0; i < HR__XXH3_SECRET_SIZE / 16; i++) {
        hr__write64(secret + 16 * i, HR__S64(16 * i) + seed);
        hr__write64(secret + 16 * i + 8, HR__S64(16 * i + 8) - seed);
    }
    return hr__xxh3_hash_long(p, len, secret);
}

/* XXH3_64bits_withSeed(data, len, seed); seed 0 == XXH3_64bits. */
HR__FORCE_INLINE uint64_t hr_xxh3_64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *)data;
    if (HR__LIKELY(len <= 16))
        return hr__xxh3_len_0to16(p, len, seed);
    if (HR__LIKELY(len <= 128))
        return hr__xxh3_len_17to128(p, len, seed);
    if (len <= 240)
        return hr__xxh3_len_129to240(p, len, seed);
    if (seed == 0)
        return hr__xxh3_long_default(p, len);
    return hr__xxh3_long_seeded(p, len, seed);
}

#undef HR__S64
#undef HR__S32

/* ------------------------------------------------------------------------ */
/* MD5 (RFC 1321)                                                           */
/* ------------------------------------------------------------------------ */

/* F, G, H, I auxiliary functions; F and G in the equivalent xor/and form. */
#define HR__MD5_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define HR__MD5_G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define HR__MD5_H(x, y, z) ((x) ^ (y) ^ (z))
#define HR__MD5_I(x, y, z) ((y) ^ ((x) | ~(z)))
/* a = b + ((a + f(b,c,d) + X[k] + T[i]) <<< s) */
#define HR__MD5_STEP(f, a, b, c, d, xk, t, s)                   \
    do {                                                        \
        (a) += f((b), (c), (d)) + (xk) + (uint32_t)(t);         \
        (a) = hr__rotl32((a), (s));                             \
        (a) += (b);                                             \
    } while (0)

HR__INLINE void hr__md5_block(uint32_t st[4], const uint8_t *blk)
{
    uint32_t x[16];
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    int i;
    for (i = 0; i < 16; i++)
        x[i] = hr__read32(blk + 4 * i);

    /* round 1 */
    HR__MD5_STEP(HR__MD5_F, a, b, c, d, x[ 0], 0xd76aa478U,  7);
    HR__MD5_STEP(HR__MD5_F, d, a, b, c, x[ 1], 0xe8c7b756U, 12);
    HR__MD5_STEP(HR__MD5_F, c, d, a, b, x[ 2], 0x242070dbU, 17);
    HR__MD5_STEP(HR__MD5_F, b, c, d, a, x[ 3], 0xc1bdceeeU, 22);
    HR__MD5_STEP(HR__MD5_F, a, b, c, d, x[ 4], 0xf57c0fafU,  7);
    HR__MD5_STEP(HR__MD5_F, d, a, b, c, x[ 5], 0x4787c62aU, 12);
    HR__MD5_STEP(HR__MD5_F, c, d, a, b, x[ 6], 0xa8304613U, 17);
    HR__MD5_STEP(HR__MD5_F, b, c, d, a, x[ 7], 0xfd469501U, 22);
    HR__MD5_STEP(HR__MD5_F, a, b, c, d, x[ 8], 0x698098d8U,  7);
    HR__MD5_STEP(HR__MD5_F, d, a, b, c, x[ 9], 0x8b44f7afU, 12);
    HR__MD5_STEP(HR__MD5_F, c, d, a, b, x[10], 0xffff5bb1U, 17);
    HR__MD5_STEP(HR__MD5_F, b, c, d, a, x[11], 0x895cd7beU, 22);
    HR__MD5_STEP(HR__MD5_F, a, b, c, d, x[12], 0x6b901122U,  7);
    HR__MD5_STEP(HR__MD5_F, d, a, b, c, x[13], 0xfd987193U, 12);
    HR__MD5_STEP(HR__MD5_F, c, d, a, b, x[14], 0xa679438eU, 17);
    HR__MD5_STEP(HR__MD5_F, b, c, d, a, x[15], 0x49b40821U, 22);
    /* round 2 */
    HR__MD5_STEP(HR__MD5_G, a, b, c, d, x[ 1], 0xf61e2562U,  5);
    HR__MD5_STEP(HR__MD5_G, d, a, b, c, x[ 6], 0xc040b340U,  9);
    HR__MD5_STEP(HR__MD5_G, c, d, a, b, x[11], 0x265e5a51U, 14);
    HR__MD5_STEP(HR__MD5_G, b, c, d, a, x[ 0], 0xe9b6c7aaU, 20);
    HR__MD5_STEP(HR__MD5_G, a, b, c, d, x[ 5], 0xd62f105dU,  5);
    HR__MD5_STEP(HR__MD5_G, d, a, b, c, x[10], 0x02441453U,  9);
    HR__MD5_STEP(HR__MD5_G, c, d, a, b, x[15], 0xd8a1e681U, 14);
    HR__MD5_STEP(HR__MD5_G, b, c, d, a, x[ 4], 0xe7d3fbc8U, 20);
    HR__MD5_STEP(HR__MD5_G, a, b, c, d, x[ 9], 0x21e1cde6U,  5);
    HR__MD5_STEP(HR__MD5_G, d, a, b, c, x[14], 0xc33707d6U,  9);
    HR__MD5_STEP(HR__MD5_G, c, d, a, b, x[ 3], 0xf4d50d87U, 14);
    HR__MD5_STEP(HR__MD5_G, b, c, d, a, x[ 8], 0x455a14edU, 20);
    HR__MD5_STEP(HR__MD5_G, a, b, c, d, x[13], 0xa9e3e905U,  5);
    HR__MD5_STEP(HR__MD5_G, d, a, b, c, x[ 2], 0xfcefa3f8U,  9);
    HR__MD5_STEP(HR__MD5_G, c, d, a, b, x[ 7], 0x676f02d9U, 14);
    HR__MD5_STEP(HR__MD5_G, b, c, d, a, x[12], 0x8d2a4c8aU, 20);
    /* round 3 */
    HR__MD5_STEP(HR__MD5_H, a, b, c, d, x[ 5], 0xfffa3942U,  4);
    HR__MD5_STEP(HR__MD5_H, d, a, b, c, x[ 8], 0x8771f681U, 11);
    HR__MD5_STEP(HR__MD5_H, c, d, a, b, x[11], 0x6d9d6122U, 16);
    HR__MD5_STEP(HR__MD5_H, b, c, d, a, x[14], 0xfde5380cU, 23);
    HR__MD5_STEP(HR__MD5_H, a, b, c, d, x[ 1], 0xa4beea44U,  4);
    HR__MD5_STEP(HR__MD5_H, d, a, b, c, x[ 4], 0x4bdecfa9U, 11);
    HR__MD5_STEP(HR__MD5_H, c, d, a, b, x[ 7], 0xf6bb4b60U, 16);
    HR__MD5_STEP(HR__MD5_H, b, c, d, a, x[10], 0xbebfbc70U, 23);
    HR__MD5_STEP(HR__MD5_H, a, b, c, d, x[13], 0x289b7ec6U,  4);
    HR__MD5_STEP(HR__MD5_H, d, a, b, c, x[ 0], 0xeaa127faU, 11);
    HR__MD5_STEP(HR__MD5_H, c, d, a, b, x[ 3], 0xd4ef3085U, 16);
    HR__MD5_STEP(HR__MD5_H, b, c, d, a, x[ 6], 0x04881d05U, 23);
    HR__MD5_STEP(HR__MD5_H, a, b, c, d, x[ 9], 0xd9d4d039U,  4);
    HR__MD5_STEP(HR__MD5_H, d, a, b, c, x[12], 0xe6db99e5U, 11);
    HR__MD5_STEP(HR__MD5_H, c, d, a, b, x[15], 0x1fa27cf8U, 16);
    HR__MD5_STEP(HR__MD5_H, b, c, d, a, x[ 2], 0xc4ac5665U, 23);
    /* round 4 */
    HR__MD5_STEP(HR__MD5_I, a, b, c, d, x[ 0], 0xf4292244U,  6);
    HR__MD5_STEP(HR__MD5_I, d, a, b, c, x[ 7], 0x432aff97U, 10);
    HR__MD5_STEP(HR__MD5_I, c, d, a, b, x[14], 0xab9423a7U, 15);
    HR__MD5_STEP(HR__MD5_I, b, c, d, a, x[ 5], 0xfc93a039U, 21);
    HR__MD5_STEP(HR__MD5_I, a, b, c, d, x[12], 0x655b59c3U,  6);
    HR__MD5_STEP(HR__MD5_I, d, a, b, c, x[ 3], 0x8f0ccc92U, 10);
    HR__MD5_STEP(HR__MD5_I, c, d, a, b, x[10], 0xffeff47dU, 15);
    HR__MD5_STEP(HR__MD5_I, b, c, d, a, x[ 1], 0x85845dd1U, 21);
    HR__MD5_STEP(HR__MD5_I, a, b, c, d, x[ 8], 0x6fa87e4fU,  6);
    HR__MD5_STEP(HR__MD5_I, d, a, b, c, x[15], 0xfe2ce6e0U, 10);
    HR__MD5_STEP(HR__MD5_I, c, d, a, b, x[ 6], 0xa3014314U, 15);
    HR__MD5_STEP(HR__MD5_I, b, c, d, a, x[13], 0x4e0811a1U, 21);
    HR__MD5_STEP(HR__MD5_I, a, b, c, d, x[ 4], 0xf7537e82U,  6);
    HR__MD5_STEP(HR__MD5_I, d, a, b, c, x[11], 0xbd3af235U, 10);
    HR__MD5_STEP(HR__MD5_I, c, d, a, b, x[ 2], 0x2ad7d2bbU, 15);
    HR__MD5_STEP(HR__MD5_I, b, c, d, a, x[ 9], 0xeb86d391U, 21);

    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
}

#undef HR__MD5_STEP
#undef HR__MD5_F
#undef HR__MD5_G
#undef HR__MD5_H
#undef HR__MD5_I

/* MD5 of eight short messages at once.  One MD5 is a single chain of 64
 * dependent steps; running eight independent chains side by side keeps the
 * core busy (and lets the compiler use vector lanes), about 2.5x the speed of
 * eight calls in a row.  Each message must fit one block (len <= 55). */
#define HR__MD5_LANES 8
static const uint32_t hr__md5_t[64] = {
    0xd76aa478U, 0xe8c7b756U, 0x242070dbU, 0xc1bdceeeU, 0xf57c0fafU, 0x4787c62aU, 0xa8304613U, 0xfd469501U,
    0x698098d8U, 0x8b44f7afU, 0xffff5bb1U, 0x895cd7beU, 0x6b901122U, 0xfd987193U, 0xa679438eU, 0x49b40821U,
    0xf61e2562U, 0xc040b340U, 0x265e5a51U, 0xe9b6c7aaU, 0xd62f105dU, 0x02441453U, 0xd8a1e681U, 0xe7d3fbc8U,
    0x21e1cde6U, 0xc33707d6U, 0xf4d50d87U, 0x455a14edU, 0xa9e3e905U, 0xfcefa3f8U, 0x676f02d9U, 0x8d2a4c8aU,
    0xfffa3942U, 0x8771f681U, 0x6d9d6122U, 0xfde5380cU, 0xa4beea44U, 0x4bdecfa9U, 0xf6bb4b60U, 0xbebfbc70U,
    0x289b7ec6U, 0xeaa127faU, 0xd4ef3085U, 0x04881d05U, 0xd9d4d039U, 0xe6db99e5U, 0x1fa27cf8U, 0xc4ac5665U,
    0xf4292244U, 0x432aff97U, 0xab9423a7U, 0xfc93a039U, 0x655b59c3U, 0x8f0ccc92U, 0xffeff47dU, 0x85845dd1U,
    0x6fa87e4fU, 0xfe2ce6e0U, 0xa3014314U, 0x4e0811a1U, 0xf7537e82U, 0xbd3af235U, 0x2ad7d2bbU, 0xeb86d391U,
};

/* Word order of the message in each round, and the rotations (RFC 1321 3.4). */
#define HR__MD5_K(i) ((i) < 16 ? (i) : (i) < 32 ? (5 * (i) + 1) & 15 : (i) < 48 ? (3 * (i) + 5) & 15 : (7 * (i)) & 15)
static const int hr__md5_r[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};

HR__INLINE void hr_md5_x8(const char *const msg[HR__MD5_LANES], const size_t len[HR__MD5_LANES],
                          uint32_t a_out[HR__MD5_LANES], uint32_t b_out[HR__MD5_LANES])
{
    uint32_t x[16][HR__MD5_LANES];
    uint32_t a[HR__MD5_LANES], b[HR__MD5_LANES], c[HR__MD5_LANES], d[HR__MD5_LANES];
    uint8_t blk[64];
    int i, l, w;

    for (l = 0; l < HR__MD5_LANES; l++) {
        memset(blk, 0, sizeof blk);
        memcpy(blk, msg[l], len[l]);
        blk[len[l]] = 0x80;
        hr__write64(blk + 56, (uint64_t)len[l] << 3);
        for (w = 0; w < 16; w++)
            x[w][l] = hr__read32(blk + 4 * w);
        a[l] = 0x67452301U;
        b[l] = 0xefcdab89U;
        c[l] = 0x98badcfeU;
        d[l] = 0x10325476U;
    }
    /* Fully unrolled by the compiler: i, and so the round, the word and the
     * rotation, are constants in every copy of the body. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 64
#endif
    for (i = 0; i < 64; i++) {
        const int k = HR__MD5_K(i), s = hr__md5_r[i >> 4][i & 3];
        for (l = 0; l < HR__MD5_LANES; l++) {
            uint32_t f;
            if (i < 16)
                f = d[l] ^ (b[l] & (c[l] ^ d[l]));
            else if (i < 32)
                f = c[l] ^ (d[l] & (b[l] ^ c[l]));
            else if (i < 48)
                f = b[l] ^ c[l] ^ d[l];
            else
                f = c[l] ^ (b[l] | ~d[l]);
            f += a[l] + x[k][l] + hr__md5_t[i];
            a[l] = d[l];
            d[l] = c[l];
            c[l] = b[l];
            b[l] += hr__rotl32(f, s);
        }
    }
    for (l = 0; l < HR__MD5_LANES; l++) {
        a_out[l] = a[l] + 0x67452301U;
        b_out[l] = b[l] + 0xefcdab89U;
    }
}

/* One-shot MD5 leaving the final state words A, B, C, D in st. */
HR__INLINE void hr__md5_state(const void *data, size_t len, uint32_t st[4])
{
    const uint8_t *p = (const uint8_t *)data;
    size_t nfull = len / 64, rem = len % 64, padlen, i;
    uint8_t tail[128];

    st[0] = 0x67452301U;
    st[1] = 0xefcdab89U;
    st[2] = 0x98badcfeU;
    st[3] = 0x10325476U;
    for (i = 0; i < nfull; i++)
        hr__md5_block(st, p + 64 * i);

    /* Padding: 0x80, zeros up to 56 mod 64, then the bit length (mod 2^64)
     * as a little-endian 64-bit value.  One or two final blocks. */
    padlen = rem < 56 ? 64 : 128;
    if (rem)
        memcpy(tail, p + 64 * nfull, rem);
    tail[rem] = 0x80;
    memset(tail + rem + 1, 0, padlen - 8 - rem - 1);
    hr__write64(tail + padlen - 8, (uint64_t)len << 3);
    hr__md5_block(st, tail);
    if (padlen == 128)
        hr__md5_block(st, tail + 64);
}

HR__INLINE void hr_md5(const void *data, size_t len, unsigned char out[16])
{
    uint32_t st[4];
    hr__md5_state(data, len, st);
    hr__write32(out, st[0]);
    hr__write32(out + 4, st[1]);
    hr__write32(out + 8, st[2]);
    hr__write32(out + 12, st[3]);
}

/* First 8 digest bytes read little-endian == A | B << 32. */
HR__INLINE uint64_t hr_md5_64(const void *data, size_t len)
{
    uint32_t st[4];
    hr__md5_state(data, len, st);
    return (uint64_t)st[0] | ((uint64_t)st[1] << 32);
}

/* First 4 digest bytes read little-endian == A (the ketama key hash). */
HR__INLINE uint32_t hr_md5_32(const void *data, size_t len)
{
    uint32_t st[4];
    hr__md5_state(data, len, st);
    return st[0];
}

/* ------------------------------------------------------------------------ */
/* MurmurHash3_x64_128                                                      */
/* ------------------------------------------------------------------------ */

#define HR__MM3_C1 0x87c37b91114253d5ULL
#define HR__MM3_C2 0x4cf5ad432745937fULL

HR__FORCE_INLINE uint64_t hr__mm3_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

HR__FORCE_INLINE uint64_t hr__mm3_k1(uint64_t k1)
{
    k1 *= HR__MM3_C1;
    k1 = hr__rotl64(k1, 31);
    k1 *= HR__MM3_C2;
    return k1;
}

HR__FORCE_INLINE uint64_t hr__mm3_k2(uint64_t k2)
{
    k2 *= HR__MM3_C2;
    k2 = hr__rotl64(k2, 33);
    k2 *= HR__MM3_C1;
    return k2;
}

HR__INLINE void hr_murmur3_x64_128(const void *data, size_t len, uint32_t seed, uint64_t out[2])
{
    const uint8_t *p = (const uint8_t *)data;
    size_t nblocks = len / 16, rem = len & 15, i;
    uint64_t h1 = seed, h2 = seed;

    /* body: 16-byte blocks */
    for (i = 0; i < nblocks; i++) {
        const uint8_t *blk = p + 16 * i;
        h1 ^= hr__mm3_k1(hr__read64(blk));
        h1 = hr__rotl64(h1, 27);
        h1 += h2;
        h1 = h1 * 5 + 0x52dce729U;
        h2 ^= hr__mm3_k2(hr__read64(blk + 8));
        h2 = hr__rotl64(h2, 31);
        h2 += h1;
        h2 = h2 * 5 + 0x38495ab5U;
    }

    /* tail: bytes 0..7 form k1, bytes 8..14 form k2 (little-endian) */
    if (rem) {
        const uint8_t *t = p + 16 * nblocks;
        if (rem > 8) {
            h2 ^= hr__mm3_k2(hr__read_partial64(t + 8, rem - 8));
            h1 ^= hr__mm3_k1(hr__read64(t));
        } else {
            h1 ^= hr__mm3_k1(hr__read_partial64(t, rem));
        }
    }

    /* finalization */
    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2;
    h2 += h1;
    h1 = hr__mm3_fmix64(h1);
    h2 = hr__mm3_fmix64(h2);
    h1 += h2;
    h2 += h1;
    out[0] = h1;
    out[1] = h2;
}

/* h1 of MurmurHash3_x64_128 with seed 0. */
HR__INLINE uint64_t hr_murmur3_64(const void *data, size_t len)
{
    uint64_t out[2];
    hr_murmur3_x64_128(data, len, 0, out);
    return out[0];
}

#endif /* HASHRING_HASHES_H */
