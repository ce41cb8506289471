/* The L2 reuse model's replay of a run's loads (simulator/memory/l2.py, ``_replay``):
 * windows of the cores' blocks in order, an LRU of resident bytes keyed by a block's
 * start. The same arithmetic in the same order as the Python loop it replaces, which
 * stays for installs without the extension; tests/simulator/test_l2.py compares them.
 * A 32k-token causal prefill replays 300 k loads: a second in Python, milliseconds here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "l2replay.h"

/* The LRU: nodes in a doubly linked list (oldest first), found by start address through
   an open-addressing table (linear probing, deletion by backward shift: no tombstones). */
typedef struct { int64_t key, bytes; int64_t prev, next; } Node;

typedef struct {
    Node *nodes;
    int64_t nnodes, head, tail;
    int64_t *slots; /* node index + 1; 0: empty */
    uint64_t mask;
} Lru;

static uint64_t hash64(int64_t key) {
    uint64_t x = (uint64_t)key;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The slot holding ``key``, or the empty slot where it would go. */
static uint64_t find(const Lru *l, int64_t key) {
    uint64_t i = hash64(key) & l->mask;
    while (l->slots[i] && l->nodes[l->slots[i] - 1].key != key) i = (i + 1) & l->mask;
    return i;
}

static void unlink_node(Lru *l, int64_t n) {
    Node *x = &l->nodes[n];
    if (x->prev >= 0) l->nodes[x->prev].next = x->next; else l->head = x->next;
    if (x->next >= 0) l->nodes[x->next].prev = x->prev; else l->tail = x->prev;
}

static void append(Lru *l, int64_t n) {
    Node *x = &l->nodes[n];
    x->prev = l->tail;
    x->next = -1;
    if (l->tail >= 0) l->nodes[l->tail].next = n; else l->head = n;
    l->tail = n;
}

static void erase_slot(Lru *l, uint64_t i) {
    uint64_t j = i;
    l->slots[i] = 0;
    for (;;) {
        j = (j + 1) & l->mask;
        if (!l->slots[j]) return;
        uint64_t home = hash64(l->nodes[l->slots[j] - 1].key) & l->mask;
        /* move j back to i unless its home lies cyclically in (i, j] */
        if ((i <= j) ? (i < home && home <= j) : (i < home || home <= j)) continue;
        l->slots[i] = l->slots[j];
        l->slots[j] = 0;
        i = j;
    }
}

PyObject *l2_replay(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer lo, hi, moved, off;
    long long capacity;
    if (!PyArg_ParseTuple(args, "y*y*y*y*L", &lo, &hi, &moved, &off, &capacity)) return NULL;
    PyObject *out = NULL;
    Lru l = { 0 };
    int64_t n = lo.len / 8, ncores = off.len / 8 - 1;
    const int64_t *a = lo.buf, *b = hi.buf, *o = off.buf;
    const double *m = moved.buf;
    if (hi.len != lo.len || moved.len != lo.len || ncores < 0 || o[ncores] != n) {
        PyErr_SetString(PyExc_ValueError, "l2_replay: arrays of different lengths");
        goto end;
    }
    uint64_t size = 16;
    while (size < 2 * (uint64_t)n + 2) size <<= 1;
    l.nodes = malloc((size_t)(n ? n : 1) * sizeof(Node));
    l.slots = calloc(size, sizeof(int64_t));
    if (!l.nodes || !l.slots) { PyErr_NoMemory(); goto end; }
    l.mask = size - 1;
    l.head = l.tail = -1;
    int64_t longest = 0, held = 0;
    for (int64_t c = 0; c < ncores; c++)
        if (o[c + 1] - o[c] > longest) longest = o[c + 1] - o[c];
    double loaded = 0.0, hits = 0.0;
    for (int64_t w = 0; w < longest; w++) {  /* window w: the w-th load of every core */
        for (int64_t c = 0; c < ncores; c++) {
            int64_t k = o[c] + w;
            if (k >= o[c + 1]) continue;
            double nbytes = m[k];
            loaded += nbytes;
            int64_t span = b[k] - a[k], whole = (int64_t)nbytes;
            int64_t sz = span < whole ? span : whole;  /* a strided load spans gaps */
            if (sz <= 0) {
                PyErr_SetString(PyExc_ValueError, "l2_replay: a load of no bytes");
                goto end;
            }
            uint64_t slot = find(&l, a[k]);
            int64_t node = l.slots[slot] ? l.slots[slot] - 1 : -1;
            int64_t resident = node >= 0 ? l.nodes[node].bytes : 0;
            if (resident) { unlink_node(&l, node); append(&l, node); }
            int64_t miss = sz - resident > 0 ? sz - resident : 0;
            double again = nbytes - (double)sz;
            double share = (double)capacity / (double)sz;
            hits += (double)(sz - miss) + again * (share < 1.0 ? share : 1.0);
            int64_t keep = sz < capacity ? sz : capacity;
            if (keep > resident) {
                if (node >= 0) {
                    l.nodes[node].bytes = keep;
                } else {
                    node = l.nnodes++;
                    l.nodes[node].key = a[k];
                    l.nodes[node].bytes = keep;
                    append(&l, node);
                    l.slots[slot] = node + 1;
                }
                held += keep - resident;
            }
            while (held > capacity && l.head >= 0) {  /* evict the least recent */
                int64_t old = l.head;
                held -= l.nodes[old].bytes;
                unlink_node(&l, old);
                erase_slot(&l, find(&l, l.nodes[old].key));
            }
        }
    }
    out = Py_BuildValue("dd", hits, loaded);
end:
    free(l.nodes);
    free(l.slots);
    PyBuffer_Release(&lo);
    PyBuffer_Release(&hi);
    PyBuffer_Release(&moved);
    PyBuffer_Release(&off);
    return out;
}
