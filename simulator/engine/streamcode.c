/* A program's engine streams in the compiled core's layout, straight from per-pc arrays.
 *
 * The same items simulator/engine/streams.py builds as tuples (OP, LOOP, SIGNAL, WAIT,
 * BARRIER, HALT, and RUN for stretches of vector ops), written as the int64 code the
 * event loop walks (simulator/engine/compiled.py): a million-instruction program takes a
 * few milliseconds here, against about a second to build the items in Python and write
 * them out. tests/simulator/test_streamcode.py compares the code with the items, item for
 * item.
 *
 * Each pc's role: 0-3 an engine's own op (DMA, matrix, vector, network); R_LOOP (a = its
 * end, b = its count); R_BARRIER; R_HALT; R_SIGNAL + engine (a = the semaphore);
 * R_WAIT + engine (a = the semaphore, b = the count needed); R_NONE (no item).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "streamcode.h"

enum { T_OP = 0, T_LOOP = 1, T_SIGNAL = 2, T_WAIT = 3, T_BARRIER = 4, T_HALT = 5, T_RUN = 6 };
enum { E_VEC = 2, N_ENG = 4 };

typedef struct {
    int64_t *w;
    int64_t n, size;
    int nomem;
} Code;

static void put(Code *c, int64_t v) {
    if (c->n == c->size) {
        int64_t size = c->size ? c->size * 2 : 4096;
        int64_t *w = realloc(c->w, (size_t)size * sizeof(int64_t));
        if (!w) { c->nomem = 1; return; }
        c->w = w; c->size = size;
    }
    c->w[c->n++] = v;
}

typedef struct {
    const int8_t *role;
    const int64_t *a, *b;
    const int64_t *items; /* items of the engine at hand before each pc (prefix counts) */
    int runs;
    int64_t *scratch; /* a stretch's pcs while it is folded into one RUN */
} Walk;

/* Whether ``role`` makes an item in engine ``e``'s stream. */
static int item_of(int role, int e) {
    return role == e || role == R_BARRIER || role == R_HALT || role == R_SIGNAL + e
        || role == R_WAIT + e;
}

/* A stretch of ``n`` OP items written from ``at``: two or more become one RUN. */
static void fold(Code *c, Walk *w, int64_t at, int64_t n) {
    if (n < 2) return;
    for (int64_t k = 0; k < n; k++) w->scratch[k] = c->w[at + 2 * k + 1];
    c->w[at] = T_RUN;
    c->w[at + 1] = n;
    memcpy(c->w + at + 2, w->scratch, (size_t)n * sizeof(int64_t));
    c->n = at + 2 + n;
}

/* Engine ``e``'s items for pcs [start, end); the deepest loop nesting written. */
static int block(Code *c, Walk *w, int e, int64_t start, int64_t end) {
    int depth = 0, fold_vec = w->runs && e == E_VEC;
    int64_t at = 0, n = 0;  /* the current stretch of OPs: where it starts, how long */
    for (int64_t pc = start; pc < end && !c->nomem; pc++) {
        int r = w->role[pc];
        if (r == e) {
            if (fold_vec && n++ == 0) at = c->n;
            put(c, T_OP); put(c, pc);
            continue;
        }
        if (r == R_LOOP) {
            int64_t stop = w->a[pc];
            if (w->items[stop] == w->items[pc + 1]) { pc = stop - 1; continue; }  /* no work */
            if (fold_vec) { fold(c, w, at, n); n = 0; }
            put(c, T_LOOP); put(c, w->b[pc]); put(c, 0);
            int64_t head = c->n;
            int d = 1 + block(c, w, e, pc + 1, stop);
            if (c->nomem) break;
            c->w[head - 1] = c->n - head;  /* the body's length in words */
            if (d > depth) depth = d;
            pc = stop - 1;
            continue;
        }
        if (!item_of(r, e)) continue;
        if (fold_vec) { fold(c, w, at, n); n = 0; }
        if (r == R_BARRIER || r == R_HALT) {
            put(c, r == R_BARRIER ? T_BARRIER : T_HALT); put(c, pc);
        } else if (r == R_SIGNAL + e) {
            put(c, T_SIGNAL); put(c, pc); put(c, w->a[pc]);
        } else {
            put(c, T_WAIT); put(c, pc); put(c, w->a[pc]); put(c, w->b[pc]);
        }
    }
    if (fold_vec && !c->nomem) fold(c, w, at, n);
    return depth;
}

/* The first loop (in pc order) whose end is not inside its enclosing block, or -1. */
static int64_t unnested(const int8_t *role, const int64_t *a, int64_t len) {
    int64_t *ends = malloc((size_t)(len + 1) * sizeof(int64_t));
    if (!ends) return -2;
    int64_t top = 0, bad = -1;
    ends[0] = len;
    for (int64_t pc = 0; pc < len; pc++) {
        while (top && pc >= ends[top]) top--;
        if (role[pc] != R_LOOP) continue;
        if (!(pc < a[pc] && a[pc] <= ends[top])) { bad = pc; break; }
        ends[++top] = a[pc];
    }
    free(ends);
    return bad;
}

PyObject *stream_code(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer role, a, b;
    int runs;
    if (!PyArg_ParseTuple(args, "y*y*y*p", &role, &a, &b, &runs)) return NULL;
    PyObject *out = NULL;
    Code c = { 0 };
    int64_t len = role.len;
    int64_t *items = NULL, *scratch = NULL;
    if (a.len != 8 * len || b.len != 8 * len) {
        PyErr_SetString(PyExc_ValueError, "stream_code: role, a and b differ in length");
        goto end;
    }
    const int8_t *r = role.buf;
    const int64_t *av = a.buf;
    int64_t bad = unnested(r, av, len);
    if (bad == -2) { PyErr_NoMemory(); goto end; }
    if (bad >= 0) {  /* the caller raises the message naming the pc */
        out = Py_BuildValue("(OL)", Py_None, (long long)bad);
        goto end;
    }
    items = malloc((size_t)(len + 1) * sizeof(int64_t));
    scratch = malloc((size_t)(len + 1) * sizeof(int64_t));
    if (!items || !scratch) { PyErr_NoMemory(); goto end; }
    Walk w = { r, av, b.buf, items, runs, scratch };
    int64_t starts[N_ENG + 1];
    int depth = 0;
    for (int e = 0; e < N_ENG; e++) {
        items[0] = 0;
        for (int64_t pc = 0; pc < len; pc++) items[pc + 1] = items[pc] + item_of(r[pc], e);
        starts[e] = c.n;
        int d = block(&c, &w, e, 0, len);
        if (d > depth) depth = d;
    }
    starts[N_ENG] = c.n;
    if (c.nomem) { PyErr_NoMemory(); goto end; }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)c.w, (Py_ssize_t)(c.n * 8));
    if (!bytes) goto end;
    out = Py_BuildValue("(N(LLLLL)i)", bytes, (long long)starts[0], (long long)starts[1],
                        (long long)starts[2], (long long)starts[3], (long long)starts[4], depth);
end:
    free(c.w);
    free(items);
    free(scratch);
    PyBuffer_Release(&role);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}
