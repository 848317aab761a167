/* Acquire/release atomics for words shared between threads and processes.
 *
 * Only 4- and 8-byte lock-free atomics are used: they are address-free, so they work in
 * memory that several processes map at different addresses. */
#ifndef HASHRING_ATOMICS_H
#define HASHRING_ATOMICS_H

#include <stdint.h>

_Static_assert(__atomic_always_lock_free(8, 0), "hashring needs lock-free 64-bit atomics");
_Static_assert(__atomic_always_lock_free(4, 0), "hashring needs lock-free 32-bit atomics");

static inline uint64_t hr_load_acq64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t hr_load_rlx64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void hr_store_rel64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void hr_store_rlx64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint32_t hr_load_acq32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void hr_store_rel32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline int hr_cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline int hr_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline uint64_t hr_add64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }

/* Raise *p to at least v; never lowers it. Returns the value left in *p. */
static inline uint64_t hr_max64(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    }
    return cur < v ? v : cur;
}

static inline void hr_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void hr_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void hr_fence_seq(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline void hr_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
