/*
 * hashring/_search.h -- the ring's search kernels.
 *
 * A table is a prefix index over the top `bits` bits of the hash (bucket b,
 * the points whose top bits are b, starts at bkt[b]) and the points in order,
 * in one of two layouts:
 *
 *  - full (tables that fit in the core's cache): the points as they are, and
 *    the owners in a second array;
 *  - packed (larger tables): one 64-bit entry a point holding the point's low
 *    (64 - bits) bits, shifted up, and the owner's index in the owner_bits
 *    below them (such a table has bits >= owner_bits, so nothing is lost).
 *    Within a bucket entries compare as their points do, and the owner comes
 *    with the point: a lookup reads the index and one or two lines of entries,
 *    a third less memory than the full layout.
 *
 * The answer for q is the first point >= q: bkt[b] plus the number of the
 * bucket's points below q.  A bucket holds about two points, so the kernels
 * count four (or eight) at once and finish a crowded bucket one by one.  After
 * the last point come HR_POINT_PAD sentinels (UINT64_MAX in the full layout,
 * the owner of point 0 in both), so a key past the last point wraps without a
 * branch.
 *
 *   hr_first_at_least(t, q)            index of the first point >= q (n if none)
 *   hr_owner(t, i)                     owner of the point at index i (i <= n)
 *   hr_lookup_many(t, q, out, n)       out[i] = owner of q[i], for a batch
 *   hr_search_best()                   the fastest kernel this CPU runs;
 *                                      hr_search_kernel selects the one used
 *
 * On x86-64 the compares are vector compares: four points with AVX2, eight
 * with AVX-512.  The kernel is chosen at run time, so the extension is still
 * built for the baseline CPU.
 */
#ifndef HASHRING_SEARCH_H
#define HASHRING_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#define HR_POINT_PAD 8          /* sentinels after the last entry: the widest probe */
#define HR_PREFETCH_BLOCK 64    /* keys whose table reads are in flight together */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HR_SEARCH_AVX2 1
#include <immintrin.h>
#endif

typedef struct {
    const uint64_t *entry;      /* n + HR_POINT_PAD points (full) or entries (packed) */
    const int32_t *own;         /* full layout: n + 1 owners; packed: NULL */
    const uint32_t *bkt;        /* 2**bits + 1 bucket starts */
    int shift;                  /* 64 - bits: q >> shift is q's bucket */
    int owner_bits;             /* packed layout */
    uint64_t low_mask;          /* packed: the point bits an entry keeps, 2**shift - 1 */
    uint64_t owner_mask;        /* packed: 2**owner_bits - 1 */
    ptrdiff_t n;                /* points */
} hr_table;

static inline int32_t hr_owner(const hr_table *t, ptrdiff_t i)
{
    return t->own ? t->own[i] : (int32_t)(t->entry[i] & t->owner_mask);
}

/* q as an entry with owner 0: below it are exactly the bucket's points < q. */
static inline uint64_t hr__probe(const hr_table *t, uint64_t q)
{
    return (q & t->low_mask) << t->owner_bits;
}

/* lo advanced past the c of `width` probed entries below the probe; when all
 * were (a crowded bucket: rare) the rest of the bucket is walked. */
static inline ptrdiff_t hr__advance(const uint64_t *e, ptrdiff_t lo, ptrdiff_t cnt, int c, int width,
                                    uint64_t probe)
{
    if (c == width) {
        while (c < cnt && e[lo + c] < probe)
            c++;
    }
    return lo + c;
}

/* Full layout: the points after the bucket are larger than the bucket's, so the
 * probe need not know where the bucket ends. */
static inline ptrdiff_t hr__full_scalar(const uint64_t *pts, ptrdiff_t lo, uint64_t q)
{
    const uint64_t *p = pts + lo;
    return hr__advance(pts, lo, PTRDIFF_MAX, (p[0] < q) + (p[1] < q) + (p[2] < q) + (p[3] < q), 4, q);
}

/* Packed layout: only the bucket's cnt entries compare as points. */
static inline ptrdiff_t hr__packed_scalar(const hr_table *t, ptrdiff_t lo, ptrdiff_t cnt, uint64_t q)
{
    const uint64_t *e = t->entry + lo, probe = hr__probe(t, q);
    /* & not &&: no branch; entries past the bucket are still inside the table. */
    int c = ((cnt > 0) & (e[0] < probe)) + ((cnt > 1) & (e[1] < probe)) + ((cnt > 2) & (e[2] < probe))
            + ((cnt > 3) & (e[3] < probe));
    return hr__advance(t->entry, lo, cnt, c, 4, probe);
}

static inline ptrdiff_t hr_first_at_least(const hr_table *t, uint64_t q)
{
    const uint32_t *b = t->bkt + (q >> t->shift);
    if (t->own)
        return hr__full_scalar(t->entry, b[0], q);
    return hr__packed_scalar(t, b[0], (ptrdiff_t)b[1] - b[0], q);
}

/* The batch loops, written once and instantiated per compare kernel.  A full
 * (cached) table is searched key by key; for a packed one each block of keys
 * reads its buckets, then its entries, with the next level's lines prefetched,
 * so the cache misses of a block overlap instead of queueing behind each other. */
#define HR__LOOKUP_LOOPS(ATTR, NAME, FULL, PACKED)                                          \
    ATTR static void NAME(const hr_table *t, const uint64_t *q, int32_t *out, ptrdiff_t n)    \
    {                                                                                         \
        uint32_t lo[HR_PREFETCH_BLOCK], cnt[HR_PREFETCH_BLOCK];                               \
        const uint32_t *bkt = t->bkt;                                                         \
        const int shift = t->shift;                                                           \
        ptrdiff_t s, i, m;                                                                    \
        if (t->own) {                                                                         \
            for (i = 0; i < n; i++)                                                           \
                out[i] = t->own[FULL(t->entry, bkt[q[i] >> shift], q[i])];                    \
            return;                                                                           \
        }                                                                                     \
        for (s = 0; s < n; s += m) {                                                          \
            m = n - s < HR_PREFETCH_BLOCK ? n - s : HR_PREFETCH_BLOCK;                        \
            for (i = 0; i < m; i++)                                                           \
                __builtin_prefetch(&bkt[q[s + i] >> shift]);                                  \
            for (i = 0; i < m; i++) {                                                         \
                const uint32_t *b = bkt + (q[s + i] >> shift);                                \
                lo[i] = b[0];                                                                 \
                cnt[i] = b[1] - b[0];                                                         \
                __builtin_prefetch(&t->entry[lo[i]]);                                         \
                __builtin_prefetch(&t->entry[lo[i] + 4]);   /* the probe may cross a line */  \
            }                                                                                 \
            for (i = 0; i < m; i++)                                                           \
                out[s + i] = (int32_t)(t->entry[PACKED(t, lo[i], cnt[i], q[s + i])] & t->owner_mask); \
        }                                                                                     \
    }

HR__LOOKUP_LOOPS(, hr__lookup_scalar, hr__full_scalar, hr__packed_scalar)

#ifdef HR_SEARCH_AVX2
/* AVX2 has only a signed 64-bit compare: flipping the sign bit of both sides
 * turns it into the unsigned one. */
__attribute__((target("avx2"))) static inline ptrdiff_t
hr__full_avx2(const uint64_t *pts, ptrdiff_t lo, uint64_t q)
{
    const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ULL);
    __m256i p = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(pts + lo)), sign);
    __m256i k = _mm256_set1_epi64x((long long)(q ^ 0x8000000000000000ULL));
    return hr__advance(pts, lo, PTRDIFF_MAX,
                       __builtin_popcount(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k, p)))), 4, q);
}

__attribute__((target("avx2"))) static inline ptrdiff_t
hr__packed_avx2(const hr_table *t, ptrdiff_t lo, ptrdiff_t cnt, uint64_t q)
{
    const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ULL);
    const uint64_t probe = hr__probe(t, q);
    __m256i e = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(t->entry + lo)), sign);
    __m256i below = _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(probe ^ 0x8000000000000000ULL)), e);
    __m256i inside = _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)cnt), _mm256_set_epi64x(3, 2, 1, 0));
    int c = __builtin_popcount(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_and_si256(below, inside))));
    return hr__advance(t->entry, lo, cnt, c, 4, probe);
}

HR__LOOKUP_LOOPS(__attribute__((target("avx2"))), hr__lookup_avx2, hr__full_avx2, hr__packed_avx2)

__attribute__((target("avx512f"))) static inline ptrdiff_t
hr__full_avx512(const uint64_t *pts, ptrdiff_t lo, uint64_t q)
{
    __mmask8 below = _mm512_cmplt_epu64_mask(_mm512_loadu_si512((const void *)(pts + lo)),
                                             _mm512_set1_epi64((long long)q));
    return hr__advance(pts, lo, PTRDIFF_MAX, __builtin_popcount((unsigned)below), 8, q);
}

/* Eight points span two cache lines: worth it on a cached table, while from
 * memory (the packed layout, prefetched) the four-entry compare is faster. */
HR__LOOKUP_LOOPS(__attribute__((target("avx512f,avx2"))), hr__lookup_avx512, hr__full_avx512, hr__packed_avx2)
#endif

#undef HR__LOOKUP_LOOPS

#define HR_KERNEL_SCALAR 0
#define HR_KERNEL_AVX2 1
#define HR_KERNEL_AVX512 2

/* The batch kernel in use.  Set at import to the best this CPU runs, and by
 * the tests to run each on the same input. */
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

static inline void hr_lookup_many(const hr_table *t, const uint64_t *q, int32_t *out, ptrdiff_t n)
{
#ifdef HR_SEARCH_AVX2
    if (hr_search_kernel == HR_KERNEL_AVX512) {
        hr__lookup_avx512(t, q, out, n);
        return;
    }
    if (hr_search_kernel == HR_KERNEL_AVX2) {
        hr__lookup_avx2(t, q, out, n);
        return;
    }
#endif
    hr__lookup_scalar(t, q, out, n);
}

#endif /* HASHRING_SEARCH_H */
