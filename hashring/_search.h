/*
 * hashring/_search.h -- the ring's search kernels.
 *
 * A table is a sorted uint64 point array (followed by HR_POINT_PAD copies of
 * UINT64_MAX), an int32 owner array (one sentinel slot at index P holding the
 * owner of point 0) and a prefix index: bkt[q >> shift] is the first point
 * whose top bits are >= q's.  The answer for q is the first point >= q; the
 * bucket leaves it a few points away, and since the points are sorted the
 * number of the next four that are < q is exactly the distance to it.
 *
 *   hr_first_at_least(pts, lo, q)       that index, from a bucket's start lo
 *   hr_lookup_many(..., q, out, n, cached)
 *                                       out[i] = owner of q[i] for a batch
 *   hr_search_best()                    the fastest kernel this CPU runs;
 *                                       hr_search_kernel selects the one used
 *
 * On x86-64 the compares are vector compares: four points with AVX2, eight
 * with AVX-512 (which has the unsigned compare, and leaves a crowded bucket's
 * slow path to one key in a thousand).  The kernel is chosen at run time, so
 * the extension is still built for the baseline CPU.
 */
#ifndef HASHRING_SEARCH_H
#define HASHRING_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#define HR_POINT_PAD 8          /* sentinels after the last point: the widest probe */
#define HR_PREFETCH_BLOCK 64    /* keys whose table reads are in flight together */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HR_SEARCH_AVX2 1
#include <immintrin.h>
#endif

/* lo advanced past the c of `width` probed points that are < q; when all were
 * (a crowded bucket: rare) the rest is walked one by one. */
static inline ptrdiff_t hr__advance(const uint64_t *pts, ptrdiff_t lo, int c, int width, uint64_t q)
{
    lo += c;
    if (c == width) {
        while (pts[lo] < q)
            lo++;
    }
    return lo;
}

static inline ptrdiff_t hr_first_at_least(const uint64_t *pts, ptrdiff_t lo, uint64_t q)
{
    const uint64_t *p = pts + lo;
    return hr__advance(pts, lo, (p[0] < q) + (p[1] < q) + (p[2] < q) + (p[3] < q), 4, q);
}

/* The batch loops, written once and instantiated per compare kernel.  A table
 * that fits in the core's cache is searched key by key; for a larger one each
 * block of keys walks bucket, points and owner in three passes with the next
 * level's lines prefetched, so the cache misses of a block overlap instead of
 * queueing behind each other. */
#define HR__LOOKUP_LOOPS(ATTR, NAME, FIRST, FIRST_FAR)                                            \
    ATTR static void NAME(const uint64_t *pts, const int32_t *own, const uint32_t *bkt,  \
                          int shift, const uint64_t *q, int32_t *out, ptrdiff_t n,         \
                          int cached)                                                      \
    {                                                                                      \
        uint32_t lo[HR_PREFETCH_BLOCK], pos[HR_PREFETCH_BLOCK];                            \
        ptrdiff_t s, i, m;                                                                 \
        if (cached) {                                                                      \
            for (i = 0; i < n; i++)                                                        \
                out[i] = own[FIRST(pts, bkt[q[i] >> shift], q[i])];                        \
            return;                                                                        \
        }                                                                                  \
        for (s = 0; s < n; s += m) {                                                       \
            m = n - s < HR_PREFETCH_BLOCK ? n - s : HR_PREFETCH_BLOCK;                     \
            for (i = 0; i < m; i++)                                                        \
                __builtin_prefetch(&bkt[q[s + i] >> shift]);                               \
            for (i = 0; i < m; i++) {                                                      \
                lo[i] = bkt[q[s + i] >> shift];                                            \
                __builtin_prefetch(&pts[lo[i]]);                                           \
                __builtin_prefetch(&pts[lo[i] + 3]);   /* the probe may cross a line */   \
            }                                                                              \
            for (i = 0; i < m; i++) {                                                      \
                pos[i] = (uint32_t)FIRST_FAR(pts, lo[i], q[s + i]);                        \
                __builtin_prefetch(&own[pos[i]]);                                          \
            }                                                                              \
            for (i = 0; i < m; i++)                                                        \
                out[s + i] = own[pos[i]];                                                  \
        }                                                                                  \
    }

HR__LOOKUP_LOOPS(, hr__lookup_scalar, hr_first_at_least, hr_first_at_least)

#ifdef HR_SEARCH_AVX2
/* AVX2 has only a signed 64-bit compare: flipping the sign bit of both sides
 * turns it into the unsigned one. */
__attribute__((target("avx2"))) static inline ptrdiff_t
hr__first_at_least_avx2(const uint64_t *pts, ptrdiff_t lo, uint64_t q)
{
    const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ULL);
    __m256i p = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(pts + lo)), sign);
    __m256i k = _mm256_set1_epi64x((long long)(q ^ 0x8000000000000000ULL));
    return hr__advance(pts, lo, __builtin_popcount(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k, p)))),
                       4, q);
}

HR__LOOKUP_LOOPS(__attribute__((target("avx2"))), hr__lookup_avx2, hr__first_at_least_avx2,
                 hr__first_at_least_avx2)

__attribute__((target("avx512f"))) static inline ptrdiff_t
hr__first_at_least_avx512(const uint64_t *pts, ptrdiff_t lo, uint64_t q)
{
    __mmask8 below = _mm512_cmplt_epu64_mask(_mm512_loadu_si512((const void *)(pts + lo)),
                                             _mm512_set1_epi64((long long)q));
    return hr__advance(pts, lo, __builtin_popcount((unsigned)below), 8, q);
}

/* Eight points span two cache lines; where they come from memory (prefetched,
 * one line) the four-point compare is the faster one. */
HR__LOOKUP_LOOPS(__attribute__((target("avx512f,avx2"))), hr__lookup_avx512, hr__first_at_least_avx512,
                 hr__first_at_least_avx2)
#endif

#undef HR__LOOKUP_LOOPS

#define HR_KERNEL_SCALAR 0
#define HR_KERNEL_AVX2 1
#define HR_KERNEL_AVX512 2

/* The batch kernel in use.  Set by hr_search_init at import (the best this
 * CPU runs), and by the tests to run each on the same input. */
static int hr_search_kernel = HR_KERNEL_SCALAR;

/* The best kernel this CPU runs. */
static int hr_search_best(void)
{
#ifdef HR_SEARCH_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return HR_KERNEL_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return HR_KERNEL_AVX2;
#endif
    return HR_KERNEL_SCALAR;
}

static inline void hr_lookup_many(const uint64_t *pts, const int32_t *own, const uint32_t *bkt,
                                  int shift, const uint64_t *q, int32_t *out, ptrdiff_t n,
                                  int cached)
{
#ifdef HR_SEARCH_AVX2
    if (hr_search_kernel == HR_KERNEL_AVX512) {
        hr__lookup_avx512(pts, own, bkt, shift, q, out, n, cached);
        return;
    }
    if (hr_search_kernel == HR_KERNEL_AVX2) {
        hr__lookup_avx2(pts, own, bkt, shift, q, out, n, cached);
        return;
    }
#endif
    hr__lookup_scalar(pts, own, bkt, shift, q, out, n, cached);
}

#endif /* HASHRING_SEARCH_H */
