/* The replicated log buffer's data path: one writer, up to 64 readers, in one mapping.
 *
 * Layout of a segment (all offsets fixed, every shared word 8-byte aligned, each group of
 * words written by one party on its own 128-byte block):
 *
 *   0       static header: magic, version, capacity, policy; written once by the creator
 *   1024    attachment table: (pid, start time) of every process that maps the segment
 *   2048    writer block: epoch (raised by a taking-over writer), writer pid/start, members
 *   2176    publish block: pub_index and two (tail, seq) records, written by the writer only
 *   2304    tail: the publish point readers poll
 *   2432    commit: the committed sequence number and a frame boundary at or before the end of
 *           the committed prefix (each raised with a CAS by whoever computes them)
 *   2560    free_pos: below this position the writer may reuse bytes (for joining readers)
 *   4096    reader slots, 128 bytes each
 *   data    capacity bytes, page aligned
 *
 * Frames are 32-byte aligned and never split at the wrap: a padding frame fills the end.
 * Positions are byte offsets that never wrap (2**64 bytes); index = pos & (capacity - 1).
 * Every frame carries its sequence number, the writer's epoch and a check value (xxh3 of
 * the payload seeded by seq and epoch).
 *
 * Ordering: the writer writes frames with plain stores, then release-stores tail; a reader
 * acquire-loads tail, reads frames below it, and release-stores its ack position; the
 * writer acquire-loads ack positions before reusing bytes. No locks on the data path. */
#ifndef HASHRING_LOGBUF_H
#define HASHRING_LOGBUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_atomics.h"
#include "_hashes.h"

#define HR_LOG_MAGIC 0x3146554247474f4cULL /* "LOGGBUF1" */
#define HR_LOG_VERSION 1u
#define HR_FRAME_ALIGN 32u
#define HR_FRAME_HEADER 32u
#define HR_MAX_READERS 64u
#define HR_MAX_ATTACH 64u
#define HR_NAME_MAX 64u
#define HR_SLOTS_OFFSET 4096u

enum { HR_FRAME_DATA = 1, HR_FRAME_PAD = 2 };
enum { HR_SLOT_FREE = 0, HR_SLOT_CLAIMING = 1, HR_SLOT_ACTIVE = 2, HR_SLOT_EVICTED = 3 };
/* A slot's state word: the state in the low 8 bits, a generation above them that every
 * claim raises, so a compare-and-swap from an observed word fails once the slot has been
 * taken over in between (no ABA). */
#define HR_STATE(word) ((word) & 0xFFu)
#define HR_WITH_STATE(word, st) (((word) & ~0xFFu) | (uint32_t)(st))
enum {
    HR_OK = 0,
    HR_FULL = 1,        /* not enough space before the slowest in-sync reader */
    HR_STALE = 2,       /* another writer took over with a higher epoch */
    HR_EMPTY = 3,       /* nothing new to read */
    HR_LAGGED = 4,      /* this reader was evicted: its position may be overwritten */
    HR_CORRUPT = 5,     /* a frame failed its checks */
    HR_CLOSED = 6,      /* the reader's slot is no longer its own */
    HR_FEW = 7,         /* fewer in-sync readers than min_in_sync */
};

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t max_readers;
    uint64_t capacity;
    uint64_t data_offset;
    uint64_t total_size;
    int32_t quorum;        /* 0: all in-sync readers; k > 0: k acks */
    uint32_t min_in_sync;
    uint64_t max_lag_bytes; /* 0: none */
    uint64_t max_lag_ns;    /* 0: none */
    uint64_t creator_pid;
    uint64_t creator_start;
    uint64_t ready;         /* 1 once the creator has finished initialising (release) */
} hr_static_t;

typedef struct {
    uint64_t pid;
    uint64_t start;
} hr_proc_t;

typedef struct {
    uint64_t epoch;
    uint64_t pid;
    uint64_t start;
    uint64_t members;      /* bumped on every reader join, leave and eviction */
} hr_writer_block_t;

typedef struct {
    uint64_t tail;
    uint64_t seq;
} hr_pub_t;

typedef struct {
    uint64_t pub_index;
    hr_pub_t pub[2];       /* pub[pub_index & 1] is the last complete (tail, seq) record */
} hr_publish_block_t;

typedef struct {           /* 128 bytes */
    uint32_t state;        /* generation << 8 | HR_SLOT_* */
    uint32_t reserved;
    uint64_t pid;
    uint64_t start;
    uint64_t ack_pos;      /* reader-only: bytes below this may be reused */
    uint64_t ack_seq;      /* reader-only: last acknowledged sequence number */
    uint64_t heartbeat_ns;
    uint64_t joined_seq;   /* the seq before the first entry this reader may see */
    uint64_t caught_up_ns; /* reader-only: when it last acknowledged all it had read up to the tail */
    char name[HR_NAME_MAX];
} hr_slot_t;

_Static_assert(sizeof(hr_slot_t) == 128, "reader slot must be one 128-byte block");

typedef struct {
    uint32_t payload_len;
    uint16_t type;
    uint16_t reserved;
    uint64_t seq;
    uint64_t epoch;
    uint64_t check;
} hr_frame_t;

_Static_assert(sizeof(hr_frame_t) == HR_FRAME_HEADER, "frame header is 32 bytes");

/* A process-local view of one mapping. */
typedef struct {
    unsigned char *base;
    hr_static_t *hdr;
    hr_proc_t *attach;
    hr_writer_block_t *wblock;
    hr_publish_block_t *publish;
    uint64_t *tail;
    uint64_t *commit;
    uint64_t *commit_pos;
    uint64_t *free_pos;
    hr_slot_t *slots;
    unsigned char *data;
    uint64_t capacity;
    uint64_t mask;
    uint32_t max_readers;
} hr_log_t;

/* The writer's private state. */
typedef struct {
    uint64_t epoch;
    uint64_t tail;         /* end of the last written frame (published or not) */
    uint64_t seq;          /* seq of the last written frame */
    uint64_t pub_tail;     /* last published tail */
    uint64_t pub_index;
    uint64_t gate;         /* min ack_pos of the in-sync readers at the last refresh */
    uint64_t members;      /* wblock->members at the last refresh */
    uint32_t in_sync;      /* in-sync readers at the last refresh */
} hr_writer_t;

typedef struct {
    uint64_t seq;
    uint64_t epoch;
    const unsigned char *payload;
    uint32_t len;
    uint64_t end;          /* position after this entry */
} hr_entry_t;

static inline uint64_t hr_align_up(uint64_t n, uint64_t a) { return (n + a - 1) & ~(a - 1); }
static inline uint64_t hr_frame_size(uint64_t payload_len) { return hr_align_up(HR_FRAME_HEADER + payload_len, HR_FRAME_ALIGN); }

static inline uint64_t hr_data_offset(uint32_t max_readers) {
    return hr_align_up(HR_SLOTS_OFFSET + (uint64_t)max_readers * sizeof(hr_slot_t), 4096);
}

static inline uint64_t hr_segment_size(uint64_t capacity, uint32_t max_readers) {
    return hr_data_offset(max_readers) + capacity;
}

static inline uint64_t hr_check(const void *payload, uint32_t len, uint64_t seq, uint64_t epoch) {
    return hr_xxh3_64(payload, len, seq * 0x9E3779B97F4A7C15ULL ^ epoch);
}

static inline void hr_log_bind(hr_log_t *L, void *base) {
    L->base = (unsigned char *)base;
    L->hdr = (hr_static_t *)base;
    L->attach = (hr_proc_t *)(L->base + 1024);
    L->wblock = (hr_writer_block_t *)(L->base + 2048);
    L->publish = (hr_publish_block_t *)(L->base + 2176);
    L->tail = (uint64_t *)(L->base + 2304);
    L->commit = (uint64_t *)(L->base + 2432);
    L->commit_pos = (uint64_t *)(L->base + 2440);
    L->free_pos = (uint64_t *)(L->base + 2560);
    L->slots = (hr_slot_t *)(L->base + HR_SLOTS_OFFSET);
    L->capacity = L->hdr->capacity;
    L->mask = L->capacity - 1;
    L->max_readers = L->hdr->max_readers;
    L->data = L->base + L->hdr->data_offset;
}

/* The creator lays out a zeroed mapping. */
static inline void hr_log_init(void *base, uint64_t capacity, uint32_t max_readers, int32_t quorum,
                               uint32_t min_in_sync, uint64_t max_lag_bytes, uint64_t max_lag_ns,
                               uint64_t pid, uint64_t start) {
    hr_static_t *h = (hr_static_t *)base;
    h->magic = HR_LOG_MAGIC;
    h->version = HR_LOG_VERSION;
    h->max_readers = max_readers;
    h->capacity = capacity;
    h->data_offset = hr_data_offset(max_readers);
    h->total_size = hr_segment_size(capacity, max_readers);
    h->quorum = quorum;
    h->min_in_sync = min_in_sync;
    h->max_lag_bytes = max_lag_bytes;
    h->max_lag_ns = max_lag_ns;
    h->creator_pid = pid;
    h->creator_start = start;
    hr_store_rel64(&h->ready, 1);
}

/* 0 if the mapping holds a well-formed segment of this size. */
static inline int hr_log_validate(const void *base, uint64_t size) {
    const hr_static_t *h = (const hr_static_t *)base;
    if (size < HR_SLOTS_OFFSET || h->magic != HR_LOG_MAGIC || h->version != HR_LOG_VERSION) return -1;
    if (hr_load_acq64(&h->ready) != 1) return -2;
    if (h->capacity < 4096 || (h->capacity & (h->capacity - 1)) != 0) return -3;
    if (h->max_readers < 1 || h->max_readers > HR_MAX_READERS) return -3;
    if (h->data_offset != hr_data_offset(h->max_readers)) return -3;
    if (h->total_size != hr_segment_size(h->capacity, h->max_readers) || h->total_size > size) return -3;
    return 0;
}

/* The last complete publish record: a consistent (tail, seq) pair. */
static inline hr_pub_t hr_published(const hr_log_t *L) {
    hr_pub_t r;
    uint64_t i, j;
    do {
        i = hr_load_acq64(&L->publish->pub_index);
        r.tail = hr_load_rlx64(&L->publish->pub[i & 1].tail);
        r.seq = hr_load_rlx64(&L->publish->pub[i & 1].seq);
        hr_fence_acq();
        j = hr_load_rlx64(&L->publish->pub_index);
    } while (i != j);     /* pub[i & 1] is rewritten only after pub_index moves past i */
    return r;
}

/* ------------------------------------------------------------------ writer */

/* Recompute the gate: the lowest ack position of the in-sync readers (or the published
 * tail when there are none). */
static inline void hr_writer_refresh(hr_log_t *L, hr_writer_t *w) {
    uint64_t gate = w->pub_tail;
    uint32_t n = 0, i;
    hr_fence_seq();       /* pairs with the fence of a joining reader (hr_slot_activate) */
    w->members = hr_load_acq64(&L->wblock->members);
    for (i = 0; i < L->max_readers; i++) {
        hr_slot_t *s = &L->slots[i];
        if (HR_STATE(hr_load_acq32(&s->state)) == HR_SLOT_ACTIVE) {
            uint64_t a = hr_load_acq64(&s->ack_pos);
            if (a < gate) gate = a;
            n++;
        }
    }
    w->gate = gate;
    w->in_sync = n;
    /* Joining readers start at or above this; it only grows. While too few readers are in
     * sync the writer writes nothing, so the bytes above the old value stay intact. */
    if (n >= L->hdr->min_in_sync) hr_max64(L->free_pos, gate);
}

/* Take the writer role with epoch (> the current one); recover the last complete publish. */
static inline int hr_writer_attach(hr_log_t *L, hr_writer_t *w, uint64_t epoch, uint64_t pid, uint64_t start) {
    uint64_t cur = hr_load_acq64(&L->wblock->epoch);
    hr_pub_t rec;
    if (epoch <= cur) return HR_STALE;
    if (!hr_cas64(&L->wblock->epoch, cur, epoch)) return HR_STALE;
    hr_store_rlx64(&L->wblock->pid, pid);
    hr_store_rlx64(&L->wblock->start, start);
    w->epoch = epoch;
    /* Republish the last complete record under a new index: a deposed writer's publish
     * (a compare-and-swap from the index it saw) can then never succeed. */
    for (;;) {
        uint64_t i = hr_load_acq64(&L->publish->pub_index);
        rec = hr_published(L);
        if (hr_load_acq64(&L->publish->pub_index) != i) continue;
        hr_store_rlx64(&L->publish->pub[(i + 1) & 1].tail, rec.tail);
        hr_store_rlx64(&L->publish->pub[(i + 1) & 1].seq, rec.seq);
        hr_fence_rel();
        if (hr_cas64(&L->publish->pub_index, i, i + 1)) {
            w->pub_index = i + 1;
            break;
        }
    }
    w->tail = w->pub_tail = rec.tail;
    w->seq = rec.seq;
    /* A predecessor may have died between its publish record and its tail store. */
    hr_store_rel64(L->tail, w->tail);
    hr_writer_refresh(L, w);
    return HR_OK;
}

/* Room for a frame of need bytes at w->tail (plus padding at the wrap)? */
static inline uint64_t hr_writer_span(const hr_log_t *L, const hr_writer_t *w, uint64_t need) {
    uint64_t to_end = L->capacity - (w->tail & L->mask);
    return to_end < need ? to_end + need : need;
}

/* Write one frame without publishing it. HR_FULL and HR_FEW leave everything unchanged. */
static inline int hr_writer_put(hr_log_t *L, hr_writer_t *w, const void *payload, uint32_t len) {
    uint64_t need = hr_frame_size(len);
    uint64_t span = hr_writer_span(L, w, need);
    uint64_t idx;
    hr_frame_t *f;
    /* Fenced: a writer that was superseded writes nothing more. */
    if (hr_load_acq64(&L->wblock->epoch) != w->epoch) return HR_STALE;
    if (w->members != hr_load_acq64(&L->wblock->members)) hr_writer_refresh(L, w);
    if (w->in_sync < L->hdr->min_in_sync) return HR_FEW;
    if (w->tail + span - w->gate > L->capacity) {
        hr_writer_refresh(L, w);
        if (w->in_sync < L->hdr->min_in_sync) return HR_FEW;
        if (w->tail + span - w->gate > L->capacity) return HR_FULL;
    }
    idx = w->tail & L->mask;
    if (span != need) {                       /* pad to the end, start again at 0 */
        f = (hr_frame_t *)(L->data + idx);
        f->payload_len = (uint32_t)(L->capacity - idx - HR_FRAME_HEADER);
        f->type = HR_FRAME_PAD;
        f->reserved = 0;
        f->seq = w->seq + 1;
        f->epoch = w->epoch;
        f->check = 0;
        w->tail += L->capacity - idx;
        idx = 0;
    }
    f = (hr_frame_t *)(L->data + idx);
    f->payload_len = len;
    f->type = HR_FRAME_DATA;
    f->reserved = 0;
    f->seq = w->seq + 1;
    f->epoch = w->epoch;
    if (len) memcpy(L->data + idx + HR_FRAME_HEADER, payload, len);
    f->check = hr_check(L->data + idx + HR_FRAME_HEADER, len, f->seq, w->epoch);
    w->seq += 1;
    w->tail += need;
    return HR_OK;
}

/* Make every written frame visible. HR_STALE if another writer took over meanwhile. */
static inline int hr_writer_publish(hr_log_t *L, hr_writer_t *w) {
    uint64_t next = w->pub_index + 1;
    hr_pub_t *rec = &L->publish->pub[next & 1];
    if (w->tail == w->pub_tail) return HR_OK;
    if (hr_load_acq64(&L->wblock->epoch) != w->epoch) return HR_STALE;
    hr_store_rlx64(&rec->tail, w->tail);
    hr_store_rlx64(&rec->seq, w->seq);
    hr_fence_rel();       /* the record before the index that makes it current */
    if (!hr_cas64(&L->publish->pub_index, w->pub_index, next)) return HR_STALE;
    w->pub_index = next;
    hr_store_rel64(L->tail, w->tail);
    w->pub_tail = w->tail;
    return HR_OK;
}

/* ------------------------------------------------------------------ readers */

/* Claim slot i if its state word is still from (FREE, or a dead owner's slot); 1 on success. */
static inline int hr_slot_claim(hr_log_t *L, uint32_t i, uint32_t from) {
    return hr_cas32(&L->slots[i].state, from, (((from >> 8) + 1) << 8) | HR_SLOT_CLAIMING);
}

/* Activate a claimed slot at frame boundary pos, seq_before being the seq before it.
 * Returns free_pos as seen after activation: if it is above pos, the writer may already
 * reuse bytes at pos and the caller must join again at a later position. */
static inline uint64_t hr_slot_activate(hr_log_t *L, uint32_t i, uint64_t pos, uint64_t seq_before,
                                        uint64_t pid, uint64_t start, uint64_t now_ns) {
    hr_slot_t *s = &L->slots[i];
    s->pid = pid;
    s->start = start;
    s->heartbeat_ns = now_ns;
    s->ack_seq = seq_before;
    s->joined_seq = seq_before;
    s->caught_up_ns = now_ns;
    hr_store_rel64(&s->ack_pos, pos);
    hr_store_rel32(&s->state, HR_WITH_STATE(hr_load_acq32(&s->state), HR_SLOT_ACTIVE));
    hr_add64(&L->wblock->members, 1);
    hr_fence_seq();
    /* A writer that refreshed before seeing this slot may reuse bytes below free_pos. */
    return hr_load_acq64(L->free_pos);
}

/* Free slot i only if its state word is still word (nobody took it over meanwhile). */
static inline int hr_slot_free_if(hr_log_t *L, uint32_t i, uint32_t word) {
    int ok = hr_cas32(&L->slots[i].state, word, HR_WITH_STATE(word, HR_SLOT_FREE));
    if (ok) hr_add64(&L->wblock->members, 1);
    return ok;
}

static inline void hr_slot_release(hr_log_t *L, uint32_t i) {
    hr_slot_t *s = &L->slots[i];
    uint32_t st = hr_load_acq32(&s->state);
    while (HR_STATE(st) != HR_SLOT_FREE && !hr_cas32(&s->state, st, HR_WITH_STATE(st, HR_SLOT_FREE))) {
        st = hr_load_acq32(&s->state);
    }
    hr_add64(&L->wblock->members, 1);
}

/* Stop gating on an in-sync reader whose state word is still word (the writer's policy
 * decides when). */
static inline int hr_slot_evict(hr_log_t *L, uint32_t i, uint32_t word) {
    int ok = HR_STATE(word) == HR_SLOT_ACTIVE
             && hr_cas32(&L->slots[i].state, word, HR_WITH_STATE(word, HR_SLOT_EVICTED));
    if (ok) hr_add64(&L->wblock->members, 1);
    return ok;
}

/* Parse the entry at pos (below tail). The caller copies the payload, then calls
 * hr_reader_still_valid before trusting the copy. */
static inline int hr_reader_peek(const hr_log_t *L, uint64_t pos, uint64_t tail, uint64_t expect_seq,
                                 hr_entry_t *e) {
    uint64_t idx, room;
    hr_frame_t f;
    while (pos < tail) {
        idx = pos & L->mask;
        room = L->capacity - idx;
        memcpy(&f, L->data + idx, sizeof f);     /* read the header once */
        if (f.type == HR_FRAME_PAD) {
            if (f.payload_len != room - HR_FRAME_HEADER) return HR_CORRUPT;
            pos += room;
            continue;
        }
        if (f.type != HR_FRAME_DATA || HR_FRAME_HEADER + (uint64_t)f.payload_len > room) return HR_CORRUPT;
        if (expect_seq && f.seq != expect_seq) return HR_CORRUPT;
        e->seq = f.seq;
        e->epoch = f.epoch;
        e->payload = L->data + idx + HR_FRAME_HEADER;
        e->len = f.payload_len;
        e->end = pos + hr_frame_size(f.payload_len);
        if (e->end > tail) return HR_CORRUPT;
        if (hr_check(e->payload, e->len, e->seq, e->epoch) != f.check) return HR_CORRUPT;
        return HR_OK;
    }
    return HR_EMPTY;
}

/* After copying, is the slot still in sync (so the writer cannot have reused the bytes)? */
static inline int hr_reader_status(hr_log_t *L, uint32_t i, uint64_t pid) {
    hr_slot_t *s = &L->slots[i];
    uint32_t st;
    hr_fence_acq();
    st = HR_STATE(hr_load_acq32(&s->state));
    if (st == HR_SLOT_ACTIVE && s->pid == pid) return HR_OK;
    if (st == HR_SLOT_EVICTED && s->pid == pid) return HR_LAGGED;
    return HR_CLOSED;
}

static inline void hr_reader_ack(hr_log_t *L, uint32_t i, uint64_t seq, uint64_t end_pos, uint64_t now_ns,
                                 int caught_up) {
    hr_slot_t *s = &L->slots[i];
    hr_store_rlx64(&s->heartbeat_ns, now_ns);
    if (caught_up) hr_store_rlx64(&s->caught_up_ns, now_ns);
    hr_store_rel64(&s->ack_seq, seq);
    hr_store_rel64(&s->ack_pos, end_pos);
}

/* ------------------------------------------------------------------ commit */

/* The policy's commit seq from the in-sync readers' acks, raised in shared memory (never
 * lowered), with commit_pos: a frame boundary at or before the end of the committed
 * prefix (where a reader that must hold every uncommitted entry starts). */
static inline uint64_t hr_commit_update(hr_log_t *L, uint32_t *in_sync_out) {
    hr_pub_t pub = hr_published(L);
    uint64_t acks[HR_MAX_READERS], poss[HR_MAX_READERS];
    uint32_t n = 0, i, j, k;
    uint64_t candidate, pos;
    int32_t quorum = L->hdr->quorum;
    for (i = 0; i < L->max_readers; i++) {
        hr_slot_t *s = &L->slots[i];
        if (HR_STATE(hr_load_acq32(&s->state)) == HR_SLOT_ACTIVE) {
            poss[n] = hr_load_acq64(&s->ack_pos);   /* before the seq: never ahead of it */
            acks[n++] = hr_load_acq64(&s->ack_seq);
        }
    }
    if (in_sync_out) *in_sync_out = n;
    if (n < L->hdr->min_in_sync) return hr_load_acq64(L->commit);
    candidate = pub.seq;
    pos = pub.tail;
    if (quorum <= 0) {
        for (i = 0; i < n; i++) {
            if (acks[i] < candidate) candidate = acks[i];
            if (poss[i] < pos) pos = poss[i];
        }
    } else {
        if (n < (uint32_t)quorum) return hr_load_acq64(L->commit);
        /* k-th largest: a partial selection sort, k <= 64 */
        k = (uint32_t)quorum;
        for (i = 0; i < k; i++) {
            uint32_t best = i;
            uint64_t t;
            for (j = i + 1; j < n; j++) if (acks[j] > acks[best]) best = j;
            t = acks[best]; acks[best] = acks[i]; acks[i] = t;
            t = poss[best]; poss[best] = poss[i]; poss[i] = t;
        }
        if (acks[k - 1] < candidate) {
            candidate = acks[k - 1];
            pos = poss[k - 1];
        }
    }
    hr_max64(L->commit_pos, pos);
    return hr_max64(L->commit, candidate);
}

#endif
