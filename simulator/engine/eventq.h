/* The compiled core's event queue: events taken by (time, sequence), as SimPy's heap takes
 * them (time, eid), so that a run does SimPy's floating-point operations in SimPy's order.
 *
 * No event is ever scheduled before now (the caller refuses one), so the queue is a
 * monotone priority queue, kept one of two ways:
 *
 * - a radix heap, for machines of many engines. A time >= 0 is a double whose bits, read
 *   as an unsigned integer, order as the times do. Bucket 0 holds the events due now
 *   (time bits equal to ``last``), bucket k > 0 those whose bits first differ from
 *   ``last`` at bit k - 1 from the bottom. Taking an event takes bucket 0's first; when
 *   bucket 0 is empty, the first full bucket's earliest time becomes ``last`` and its
 *   events move down (each to the bucket its bits now give). Within a bucket events keep
 *   the order they entered it, which is the order they were scheduled among events of one
 *   time: a bucket is only refilled from above while it is empty, with events older than
 *   any scheduled after, so bucket 0 yields events of one time in sequence order. An event
 *   moves down a few buckets at most, with none of the comparisons of a heap's sift, whose
 *   branches the processor cannot predict: 0.74x the loop's time on a 16k causal prefill's
 *   528 engines.
 * - a binary heap of later events beside a queue of events due now, for machines of a
 *   few engines (the cores of a kernel that differ, after the identical ones are folded),
 *   whose heap is a few levels deep: there the radix heap's moves cost more (1.1x).
 *
 * ``radix_from`` (engines) picks one; ``_fastcore.queue_threshold`` sets it, so that the
 * tests run every program both ways.
 */
#ifndef EVENTQ_H
#define EVENTQ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

typedef struct { double t; int64_t seq; int32_t kind; int32_t a; int64_t b; } Event;

/* events in the order they entered (``head``: the next to take) */
typedef struct { Event *v; int64_t n, head, size; } Bucket;

#define NBUCKETS 65

typedef struct {
    int radix;        /* which way it is kept */
    int64_t seq;      /* the next event's sequence number */
    int64_t pending;  /* events in the queue */
    Bucket q[NBUCKETS];  /* the radix heap */
    uint64_t last;       /* the bits of the last time taken: now */
    uint64_t full;       /* which buckets 1..64 hold events */
    Event *heap;      /* the binary heap of events after now */
    int64_t n, size;
    Bucket due;       /* beside it, the events due now */
} EventQueue;

static inline int bucket_put(Bucket *b, Event ev) {
    if (b->n == b->size
        && queue_room((void **)&b->v, &b->head, &b->n, &b->size, sizeof(Event), 16))
        return -1;
    b->v[b->n++] = ev;
    return 0;
}

static inline int ev_less(const Event *x, const Event *y) {
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static inline int bucket_of(const EventQueue *q, double t) {
    uint64_t bits;
    memcpy(&bits, &t, sizeof(bits));
    uint64_t x = bits ^ q->last;
    return x ? 64 - __builtin_clzll(x) : 0;
}

HEAP_FUNCTIONS(ev_heap, Event, ev_less)

/* Schedule an event at ``t`` >= ``now`` (+0.0, not -0.0). -1: out of memory. */
static inline int eq_push(EventQueue *q, double now, double t, int kind, int a, int64_t b) {
    Event ev = { t, q->seq++, kind, a, b };
    q->pending++;
    if (!q->radix) {
        if (t == now) return bucket_put(&q->due, ev);
        return ev_heap_push(&q->heap, &q->n, &q->size, ev, 64);
    }
    int k = bucket_of(q, t);
    if (bucket_put(&q->q[k], ev)) return -1;
    if (k) q->full |= 1ULL << (k - 1);
    return 0;
}

/* Take the next event by (time, sequence) into ``*out``; the queue is not empty.
   -1: out of memory. */
static inline int eq_pop(EventQueue *q, Event *out) {
    q->pending--;
    if (!q->radix) {  /* the older of the heap's first and the first due now */
        Bucket *d = &q->due;
        if (d->head < d->n && !(q->n && ev_less(&q->heap[0], &d->v[d->head]))) {
            *out = d->v[d->head++];
            if (d->head == d->n) d->head = d->n = 0;
        } else {
            *out = ev_heap_down(q->heap, --q->n);
        }
        return 0;
    }
    Bucket *z = &q->q[0];
    if (z->head == z->n) {  /* refill bucket 0 from the first full bucket */
        z->head = z->n = 0;
        int k = __builtin_ctzll(q->full) + 1;
        Bucket *b = &q->q[k];
        q->full &= ~(1ULL << (k - 1));
        if (b->n == 1) {  /* one event there: it is next */
            *out = b->v[0];
            b->n = 0;
            memcpy(&q->last, &out->t, sizeof(q->last));
            return 0;
        }
        double least = b->v[0].t;
        for (int64_t i = 1; i < b->n; i++)
            if (b->v[i].t < least) least = b->v[i].t;
        memcpy(&q->last, &least, sizeof(q->last));
        for (int64_t i = 0; i < b->n; i++) {
            int j = bucket_of(q, b->v[i].t);
            if (bucket_put(&q->q[j], b->v[i])) return -1;
            if (j) q->full |= 1ULL << (j - 1);
        }
        b->n = 0;
    }
    *out = z->v[z->head++];
    if (z->head == z->n) z->head = z->n = 0;
    return 0;
}

static void eq_free(EventQueue *q) {
    for (int k = 0; k < NBUCKETS; k++) free(q->q[k].v);
    free(q->heap);
    free(q->due.v);
}

#endif
