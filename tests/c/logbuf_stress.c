/* Stress test of the log buffer's C data path (hashring/_logbuf.h), outside Python.
 *
 * One writer thread and four reader threads share a private segment laid out by
 * hr_log_init / hr_log_bind, and use exactly the functions the Cython wrapper uses:
 * hr_writer_attach (epoch 1), hr_writer_put + hr_writer_publish (batches of 1..16),
 * hr_slot_claim / hr_slot_activate (all readers join at position 0 before the writer
 * starts), hr_reader_peek / hr_reader_status / hr_reader_ack and hr_commit_update.
 * Waits spin a little, then sched_yield.
 *
 * Every entry's length and bytes are derived from its seq; every reader checks that it
 * sees every seq exactly once, in order, with exact bytes and epoch 1; at the end the
 * published seq and the commit seq are both the last seq.
 *
 *   build: gcc -O2 -pthread -I hashring tests/c/logbuf_stress.c -o logbuf_stress
 *          (or -O1 -g -fsanitize=thread -pthread for ThreadSanitizer)
 *   run:   logbuf_stress [COUNT [CAPACITY_BYTES]]     (default 1000000 entries, 65536 bytes)
 *          logbuf_stress --stale-publish              (see stale_publish() at the end)
 *
 * Exit status 0 on success; otherwise a message on stderr and status 1 (2 for usage). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "_logbuf.h"

#define N_READERS 4
#define MAX_READERS 8
#define MAX_PAYLOAD 240u
#define ACK_EVERY 7u
#define STUCK_SECONDS 120.0

static hr_log_t L;
static uint64_t n_entries;
static uint64_t writer_pid;
static volatile int failed;           /* set once by fail(); threads stop at their next check */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    uint32_t slot;
    uint64_t pid;
    uint64_t seen;                     /* entries delivered */
    uint64_t waits;                    /* EMPTY polls */
} reader_arg_t;

typedef struct {
    uint64_t fulls;                    /* FULL returns */
    uint64_t batches;
} writer_arg_t;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&fail_lock);
    if (!__atomic_load_n(&failed, __ATOMIC_RELAXED)) {
        fprintf(stderr, "logbuf_stress: FAIL: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&fail_lock);
}

static int has_failed(void) { return __atomic_load_n(&failed, __ATOMIC_RELAXED); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Length 0..MAX_PAYLOAD and bytes, both a function of seq only. */
static uint32_t entry_len(uint64_t seq) {
    uint64_t h = seq * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    if (seq % 97 == 0) return 0;
    return (uint32_t)(h % (MAX_PAYLOAD + 1));
}

static void entry_fill(uint64_t seq, unsigned char *out, uint32_t len) {
    uint32_t i;
    unsigned char a = (unsigned char)(seq * 131u), b = (unsigned char)(seq >> 8), c = (unsigned char)(seq >> 16);
    for (i = 0; i < len; i++) out[i] = (unsigned char)(a + i * 7u) ^ (unsigned char)(i & 1 ? b : c);
}

/* Spin a little, then give the core away. */
static void backoff(uint32_t *round) {
    if (*round < 64) hr_cpu_relax();
    else sched_yield();
    (*round)++;
}

/* xorshift64* for the writer's batch sizes (deterministic). */
static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void *writer_main(void *argp) {
    writer_arg_t *arg = (writer_arg_t *)argp;
    hr_writer_t w;
    unsigned char buf[MAX_PAYLOAD];
    uint64_t seq = 1, rng = 0x9E3779B97F4A7C15ULL, batch, k, commit;
    uint32_t round, len, in_sync = 0;
    double t0 = now_s();
    int rc;

    memset(&w, 0, sizeof w);
    rc = hr_writer_attach(&L, &w, 1, writer_pid, 1);
    if (rc != HR_OK) { fail("hr_writer_attach(epoch 1) returned %d", rc); return NULL; }
    if (w.seq != 0 || w.tail != 0) { fail("a fresh writer starts at seq %" PRIu64 " tail %" PRIu64, w.seq, w.tail); return NULL; }
    if (w.in_sync != N_READERS) { fail("writer sees %u in-sync readers, expected %d", w.in_sync, N_READERS); return NULL; }

    while (seq <= n_entries && !has_failed()) {
        batch = 1 + rng_next(&rng) % 16;
        if (batch > n_entries - seq + 1) batch = n_entries - seq + 1;
        for (k = 0; k < batch; k++, seq++) {
            len = entry_len(seq);
            entry_fill(seq, buf, len);
            round = 0;
            for (;;) {
                rc = hr_writer_put(&L, &w, buf, len);
                if (rc != HR_FULL) break;
                arg->fulls++;
                /* the readers cannot free room for entries they cannot see */
                rc = hr_writer_publish(&L, &w);
                if (rc != HR_OK) { fail("publish while full returned %d at seq %" PRIu64, rc, seq); return NULL; }
                if (has_failed()) return NULL;
                if ((round & 1023) == 1023 && now_s() - t0 > STUCK_SECONDS) {
                    fail("writer stuck: FULL for too long at seq %" PRIu64, seq);
                    return NULL;
                }
                backoff(&round);
            }
            if (rc != HR_OK) { fail("hr_writer_put returned %d at seq %" PRIu64, rc, seq); return NULL; }
            if (w.seq != seq) { fail("hr_writer_put wrote seq %" PRIu64 ", expected %" PRIu64, w.seq, seq); return NULL; }
        }
        rc = hr_writer_publish(&L, &w);
        if (rc != HR_OK) { fail("hr_writer_publish returned %d after seq %" PRIu64, rc, seq - 1); return NULL; }
        arg->batches++;
    }
    if (has_failed()) return NULL;

    /* Every reader acknowledges the last seq; then the commit reaches it. */
    round = 0;
    while ((commit = hr_commit_update(&L, &in_sync)) < n_entries) {
        if (has_failed()) return NULL;
        if ((round & 1023) == 1023 && now_s() - t0 > STUCK_SECONDS) {
            fail("commit stuck at %" PRIu64 " of %" PRIu64, commit, n_entries);
            return NULL;
        }
        backoff(&round);
    }
    if (commit != n_entries) fail("commit %" PRIu64 " is past the last seq %" PRIu64, commit, n_entries);
    if (in_sync != N_READERS) fail("%u readers in sync at the end, expected %d", in_sync, N_READERS);
    return NULL;
}

static void *reader_main(void *argp) {
    reader_arg_t *arg = (reader_arg_t *)argp;
    hr_entry_t e;
    unsigned char copy[MAX_PAYLOAD], want[MAX_PAYLOAD];
    uint64_t pos = 0, expect = 1, acked = 0, last_commit = 0, tail, c, idx;
    uint32_t round = 0, len;
    double t0 = now_s();
    int rc;

    while (expect <= n_entries) {
        if (has_failed()) return NULL;
        tail = hr_load_acq64(L.tail);
        rc = hr_reader_peek(&L, pos, tail, expect, &e);
        if (rc == HR_EMPTY) {
            if (acked < expect - 1) {          /* never wait while holding unacked entries */
                hr_reader_ack(&L, arg->slot, expect - 1, pos, now_ns(), 1);
                acked = expect - 1;
                c = hr_commit_update(&L, NULL);
                if (c < last_commit) { fail("reader %u: commit went back from %" PRIu64 " to %" PRIu64, arg->slot, last_commit, c); return NULL; }
                last_commit = c;
            }
            arg->waits++;
            if ((round & 1023) == 1023 && now_s() - t0 > STUCK_SECONDS) {
                fail("reader %u stuck at seq %" PRIu64 " (tail %" PRIu64 ")", arg->slot, expect, tail);
                return NULL;
            }
            backoff(&round);
            continue;
        }
        round = 0;
        if (rc != HR_OK) { fail("reader %u: hr_reader_peek returned %d at seq %" PRIu64 " pos %" PRIu64, arg->slot, rc, expect, pos); return NULL; }
        if (e.len > MAX_PAYLOAD) { fail("reader %u: seq %" PRIu64 " has length %u", arg->slot, e.seq, e.len); return NULL; }
        memcpy(copy, e.payload, e.len);
        rc = hr_reader_status(&L, arg->slot, arg->pid);
        if (rc != HR_OK) { fail("reader %u: status %d after copying seq %" PRIu64, arg->slot, rc, e.seq); return NULL; }
        if (e.seq != expect) { fail("reader %u: got seq %" PRIu64 ", expected %" PRIu64, arg->slot, e.seq, expect); return NULL; }
        if (e.epoch != 1) { fail("reader %u: seq %" PRIu64 " has epoch %" PRIu64, arg->slot, e.seq, e.epoch); return NULL; }
        len = entry_len(expect);
        if (e.len != len) { fail("reader %u: seq %" PRIu64 " has length %u, expected %u", arg->slot, e.seq, e.len, len); return NULL; }
        entry_fill(expect, want, len);
        if (memcmp(copy, want, len) != 0) { fail("reader %u: seq %" PRIu64 " has wrong bytes", arg->slot, e.seq); return NULL; }
        if (e.end <= pos || e.end > tail || (e.end & (HR_FRAME_ALIGN - 1)) != 0) {
            fail("reader %u: seq %" PRIu64 " ends at %" PRIu64 " (pos %" PRIu64 ", tail %" PRIu64 ")", arg->slot, e.seq, e.end, pos, tail);
            return NULL;
        }
        /* a frame never straddles the end of the ring */
        idx = (uint64_t)(e.payload - L.data) - HR_FRAME_HEADER;
        if (idx + hr_frame_size(e.len) > L.capacity || ((idx + hr_frame_size(e.len)) & L.mask) != (e.end & L.mask)) {
            fail("reader %u: seq %" PRIu64 " at index %" PRIu64 " is split at the wrap", arg->slot, e.seq, idx);
            return NULL;
        }
        pos = e.end;
        arg->seen++;
        if (expect % ACK_EVERY == 0 || expect == n_entries) {
            hr_reader_ack(&L, arg->slot, expect, pos, now_ns(), 1);
            acked = expect;
            c = hr_commit_update(&L, NULL);
            if (c < last_commit) { fail("reader %u: commit went back from %" PRIu64 " to %" PRIu64, arg->slot, last_commit, c); return NULL; }
            if (c > acked) { fail("reader %u: commit %" PRIu64 " is past its own ack %" PRIu64, arg->slot, c, acked); return NULL; }
            last_commit = c;
        }
        expect++;
    }
    return NULL;
}

static int run_stress(uint64_t count, uint64_t capacity) {
    size_t size = hr_segment_size(capacity, MAX_READERS);
    void *base;
    pthread_t wt, rt[N_READERS];
    writer_arg_t warg;
    reader_arg_t rargs[N_READERS];
    hr_pub_t pub;
    uint64_t commit, free_pos;
    double t0, elapsed;
    uint32_t i;

    n_entries = count;
    writer_pid = (uint64_t)getpid();
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) { fprintf(stderr, "logbuf_stress: mmap: %s\n", strerror(errno)); return 1; }
    /* quorum 0 ("all"), every reader required in sync, no lag limits */
    hr_log_init(base, capacity, MAX_READERS, 0, N_READERS, 0, 0, writer_pid, 1);
    if (hr_log_validate(base, size) != 0) { fprintf(stderr, "logbuf_stress: FAIL: fresh segment does not validate\n"); return 1; }
    hr_log_bind(&L, base);

    memset(&warg, 0, sizeof warg);
    for (i = 0; i < N_READERS; i++) {
        memset(&rargs[i], 0, sizeof rargs[i]);
        rargs[i].slot = i;
        rargs[i].pid = 1000 + i;          /* a distinct owner identity per slot */
        if (!hr_slot_claim(&L, i, HR_SLOT_FREE)) { fprintf(stderr, "logbuf_stress: FAIL: cannot claim slot %u\n", i); return 1; }
        free_pos = hr_slot_activate(&L, i, 0, 0, rargs[i].pid, 1, now_ns());
        if (free_pos != 0) { fprintf(stderr, "logbuf_stress: FAIL: free_pos %" PRIu64 " before any write\n", free_pos); return 1; }
    }

    t0 = now_s();
    for (i = 0; i < N_READERS; i++) {
        if (pthread_create(&rt[i], NULL, reader_main, &rargs[i]) != 0) { fprintf(stderr, "logbuf_stress: pthread_create failed\n"); return 1; }
    }
    if (pthread_create(&wt, NULL, writer_main, &warg) != 0) { fprintf(stderr, "logbuf_stress: pthread_create failed\n"); return 1; }
    pthread_join(wt, NULL);
    for (i = 0; i < N_READERS; i++) pthread_join(rt[i], NULL);
    elapsed = now_s() - t0;
    if (has_failed()) return 1;

    pub = hr_published(&L);
    commit = hr_load_acq64(L.commit);
    if (pub.seq != count) { fprintf(stderr, "logbuf_stress: FAIL: published seq %" PRIu64 ", expected %" PRIu64 "\n", pub.seq, count); return 1; }
    if (commit != count) { fprintf(stderr, "logbuf_stress: FAIL: commit seq %" PRIu64 ", expected %" PRIu64 "\n", commit, count); return 1; }
    if (hr_load_acq64(L.tail) != pub.tail) { fprintf(stderr, "logbuf_stress: FAIL: tail %" PRIu64 " != published tail %" PRIu64 "\n", hr_load_acq64(L.tail), pub.tail); return 1; }
    for (i = 0; i < N_READERS; i++) {
        if (rargs[i].seen != count) { fprintf(stderr, "logbuf_stress: FAIL: reader %u saw %" PRIu64 " entries\n", i, rargs[i].seen); return 1; }
        if (L.slots[i].ack_seq != count) { fprintf(stderr, "logbuf_stress: FAIL: reader %u acked %" PRIu64 "\n", i, L.slots[i].ack_seq); return 1; }
    }
    printf("ok entries=%" PRIu64 " readers=%d capacity=%" PRIu64 " wraps=%" PRIu64 " bytes=%" PRIu64
           " commit=%" PRIu64 " fulls=%" PRIu64 " batches=%" PRIu64 " seconds=%.3f rate=%.0f\n",
           count, N_READERS, capacity, pub.tail / capacity, pub.tail, commit, warg.fulls, warg.batches,
           elapsed, count / (elapsed > 0 ? elapsed : 1e-9));
    munmap(base, size);
    return 0;
}

/* ------------------------------------------------------------------ --stale-publish
 *
 * A deterministic replay of one interleaving of a deposed writer A and its successor B.
 * hr_writer_publish loads wblock->epoch, then stores the next publish record and CASes
 * pub_index; nothing stops A from being descheduled between that load and those stores
 * (a pause, a SIGSTOP, a page fault) while B takes over. To replay "A loaded the epoch
 * before B raised it" without threads, A's publish runs on a view of the segment whose
 * writer block is a private copy holding A's epoch; everything else is the shared segment.
 *
 *   case 1: B has published once when A resumes. A's record store overwrites the record
 *           B's pub_index points to, then A's CAS fails. hr_published() now returns A's
 *           (tail, seq): a joining reader or a third writer starts from A's tail.
 *   case 2: B has attached but not yet published when A resumes. A's CAS succeeds: a
 *           deposed writer publishes under the old epoch, and B's first publish then
 *           fails with HR_STALE although B holds the highest epoch (B is wedged).
 *
 * Prints one line per case and exits 1 if either misbehaves. */
static int stale_publish_case(int which) {
    uint64_t capacity = 4096;
    size_t size = hr_segment_size(capacity, 1);
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    hr_log_t LA;
    hr_writer_block_t a_view;
    hr_writer_t a, b;
    hr_pub_t pub;
    unsigned char small[8] = {1, 2, 3, 4, 5, 6, 7, 8}, big[100];
    int rc_a, rc_b, bad = 0;

    if (base == MAP_FAILED) { fprintf(stderr, "mmap: %s\n", strerror(errno)); return 1; }
    memset(big, 0xAB, sizeof big);
    hr_log_init(base, capacity, 1, 0, 0, 0, 0, 1, 1);      /* no readers required */
    hr_log_bind(&L, base);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);

    if (hr_writer_attach(&L, &a, 1, 111, 1) != HR_OK) return 1;
    if (hr_writer_put(&L, &a, small, sizeof small) != HR_OK || hr_writer_publish(&L, &a) != HR_OK) return 1;
    /* A writes seq 2 (a 128-byte frame) and starts to publish it: it loads the epoch (1)... */
    if (hr_writer_put(&L, &a, big, sizeof big) != HR_OK) return 1;
    LA = L;
    a_view = *L.wblock;                                    /* ...as it was before B's takeover */
    LA.wblock = &a_view;

    /* ...and is descheduled. B takes over with epoch 2 from the last publish (seq 1). */
    if (hr_writer_attach(&L, &b, 2, 222, 1) != HR_OK) return 1;
    if (which == 1) {
        if (hr_writer_put(&L, &b, small, sizeof small) != HR_OK) return 1;    /* B's seq 2: 64 bytes */
        rc_b = hr_writer_publish(&L, &b);
        rc_a = hr_writer_publish(&LA, &a);                 /* A resumes */
        pub = hr_published(&L);
        printf("case 1: B publish %d, A publish %d; published (tail %" PRIu64 ", seq %" PRIu64 "), "
               "B's (tail %" PRIu64 ", seq %" PRIu64 "), shared tail %" PRIu64 "\n",
               rc_b, rc_a, pub.tail, pub.seq, b.tail, b.seq, hr_load_acq64(L.tail));
        if (rc_b != HR_OK || rc_a != HR_STALE) bad = 1;
        if (pub.tail != b.tail || pub.seq != b.seq) {
            printf("case 1: FAIL: the deposed writer's failed publish replaced the current publish record\n");
            bad = 1;
        }
    } else {
        rc_a = hr_writer_publish(&LA, &a);                 /* A resumes before B publishes */
        if (hr_writer_put(&L, &b, small, sizeof small) != HR_OK) return 1;
        rc_b = hr_writer_publish(&L, &b);
        pub = hr_published(&L);
        printf("case 2: A publish %d, B publish %d; epoch %" PRIu64 ", published (tail %" PRIu64 ", seq %" PRIu64 ")\n",
               rc_a, rc_b, hr_load_acq64(&L.wblock->epoch), pub.tail, pub.seq);
        if (rc_a != HR_STALE) {
            printf("case 2: FAIL: a deposed writer (epoch 1) published after epoch 2 took over\n");
            bad = 1;
        }
        if (rc_b != HR_OK) {
            printf("case 2: FAIL: the current writer (epoch 2) got status %d from its publish\n", rc_b);
            bad = 1;
        }
    }
    munmap(base, size);
    return bad;
}

int main(int argc, char **argv) {
    uint64_t count = 1000000, capacity = 65536;
    char *end;
    if (argc > 1 && strcmp(argv[1], "--stale-publish") == 0) {
        int r1 = stale_publish_case(1), r2 = stale_publish_case(2);
        return r1 || r2 ? 1 : 0;
    }
    if (argc > 1) {
        count = strtoull(argv[1], &end, 10);
        if (*end || count == 0) { fprintf(stderr, "usage: %s [COUNT [CAPACITY_BYTES]] | --stale-publish\n", argv[0]); return 2; }
    }
    if (argc > 2) {
        capacity = strtoull(argv[2], &end, 10);
        if (*end || capacity < 4096 || (capacity & (capacity - 1))) {
            fprintf(stderr, "%s: capacity must be a power of two >= 4096\n", argv[0]);
            return 2;
        }
    }
    return run_stress(count, capacity);
}
