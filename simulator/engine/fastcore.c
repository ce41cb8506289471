/* The compiled event core: the engines of every core of a machine, the chips' shared HBM
 * and L2 bandwidths, semaphores and barriers, in one C event loop.
 *
 * It is the SimPy engine (simulator/engine/core.py, sync.py, simulator/memory/bandwidth.py)
 * transcribed for performance runs, which move no data and need no trace: the same items
 * (simulator/engine/streams.py), the same per-instruction costs (computed in Python), the
 * same fluid bandwidth model with the same armed timers, and events ordered as SimPy
 * orders them (by time, then by the order they were scheduled), so a run gives the same
 * time, counts and busy times as the SimPy engine (tests/simulator/test_compiled.py).
 * Anything it does not model (network instructions, traces, functional mode) stays with
 * the SimPy engine (simulator/engine/compiled.py decides).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventq.h"
#include "firstmet.h"
#include "streamcode.h"
#include "../memory/l2replay.h"

/* item tags: simulator.engine.streams (OP, LOOP, SIGNAL, WAIT, BARRIER, HALT, RUN) */
enum { T_OP = 0, T_LOOP = 1, T_SIGNAL = 2, T_WAIT = 3, T_BARRIER = 4, T_HALT = 5, T_RUN = 6 };
enum { E_DMA = 0, E_MX = 1, E_VEC = 2, E_NET = 3, N_ENG = 4 };
/* event kinds */
enum { EV_RESUME = 0, EV_FLOW = 1, EV_WAKE = 2, EV_SIGNAL = 3, EV_BARRIER = 4, EV_NETBAR = 5 };
/* run status */
enum { ST_RUNNING = 0, ST_DONE = 1, ST_DEADLOCK = 2, ST_BUDGET = 3, ST_NOMEM = 4, ST_BADTIME = 5 };
/* what a blocked engine waits for (core.blocked) */
enum { B_NONE = 0, B_SEM = 1, B_BARRIER = 2, B_PEERS = 3 };

#define MAX_DEPTH 64
#define N_SEMS 256
#define SEM_WAITERS 8

typedef struct { int64_t start, end, count, i; } Frame;

typedef struct {
    const int64_t *code;
    int64_t len, ip;
    int phase, nframes, core, e, parts, cond, done;
    double start;
    int bkind;
    int64_t bpc, bnum, bneed;
    Frame frames[MAX_DEPTH];
} Eng;

typedef struct { int64_t need; int32_t eng; } Waiter;

typedef struct {
    int64_t count;
    int n;
    Waiter w[SEM_WAITERS];
} Sem;

typedef struct {
    int chip;
    int64_t weight;
    double dma_cap, startup, gap, dma_tail, vec_tail;
    int mx_warm;
    int arrived, released;
    int32_t arrivals[N_ENG], rel[N_ENG];
    Sem *sems; /* N_SEMS, allocated on first use */
    const int32_t *cid;
    int64_t *counts;
    double *busy;
} Core;

typedef struct { double fin; int64_t seq; int32_t eng; int64_t weight; } Flow;

typedef struct {
    double cap, served, rate;
    int64_t weight;
    Flow *heap;  /* flows that finish before the run's last: a heap */
    int64_t hn, size;
    Flow *run;   /* flows in finishing order, appended while each finishes after the last */
    int64_t rhead, rn, rsize;
    int64_t n;   /* flows in all */
} Class;

typedef struct {
    double capacity, last, due, timer_at;
    int64_t weight, seq, generation;
    Class *classes; /* ordered by cap: the water-filling order */
    int nclasses, size;
} Bw;

/* a chip-wide rendezvous of every core's network engine (``net.barrier`` on one chip) */
typedef struct {
    int64_t arrived;
    int32_t *waiting, *rel;
    int nwaiting, nrel;
} NetBar;

typedef struct {
    double now;
    EventQueue q;  /* eventq.h */
    Eng *engs;
    Core *cores;
    int ncores, nengs, ndone;
    Bw *bws; /* chip * 2 (HBM), chip * 2 + 1 (L2; capacity 0: none) */
    const double *hit;
    const double *c_ns, *c_bytes, *c_cap, *c_hbmcap, *c_tail;
    const int8_t *c_store;
    const int64_t *c_net; /* -2: not a network op; -1: a one-chip collective (no time);
                             g >= 0: a barrier of group g */
    NetBar *netbars;
    int nnetbars;
    int64_t parties;
    int64_t executed, max_instructions;
    double max_time;
    int status, err_core;
    int64_t err_pc;
} Sim;

/* ---- the event queue (eventq.h) ---- */

static int radix_from = 64;  /* engines from which the queue is a radix heap */

static void schedule(Sim *s, double t, int kind, int a, int64_t b) {
    if (!(t >= s->now)) { s->status = ST_BADTIME; return; }  /* a negative or NaN cost */
    t += 0.0;  /* -0.0 as +0.0: its bits would not order */
    if (eq_push(&s->q, s->now, t, kind, a, b)) s->status = ST_NOMEM;
}

/* ---- a class's heap of flows on (finish point, sequence) ---- */

static int flow_less(const Flow *x, const Flow *y) {
    return x->fin < y->fin || (x->fin == y->fin && x->seq < y->seq);
}

HEAP_FUNCTIONS(flow_heap, Flow, flow_less)

/* A class's flows are taken by (finish point, sequence). Transfers of one size started one
   after another finish in the order they started, so a flow that finishes after every
   flow of the run is appended to it (no comparisons but one); only the others go to the
   heap. The first to finish is the earlier of the run's head and the heap's top. */

static int flow_push(Class *c, Flow f) {
    c->n++;
    if (c->rhead == c->rn || !flow_less(&f, &c->run[c->rn - 1])) {
        if (c->rn == c->rsize
            && queue_room((void **)&c->run, &c->rhead, &c->rn, &c->rsize, sizeof(Flow), 16))
            return -1;
        c->run[c->rn++] = f;
        return 0;
    }
    return flow_heap_push(&c->heap, &c->hn, &c->size, f, 16);
}

/* The flow that finishes first; the class has one. */
static inline const Flow *flow_top(const Class *c) {
    if (c->rhead == c->rn) return &c->heap[0];
    if (c->hn && flow_less(&c->heap[0], &c->run[c->rhead])) return &c->heap[0];
    return &c->run[c->rhead];
}

static Flow flow_pop(Class *c) {
    c->n--;
    if (flow_top(c) != c->heap) {  /* the run's head */
        Flow top = c->run[c->rhead++];
        if (c->rhead == c->rn) c->rhead = c->rn = 0;
        return top;
    }
    return flow_heap_down(c->heap, --c->hn);
}

/* ---- a shared bandwidth: simulator.memory.bandwidth.SharedBandwidth ---- */

static void bw_share(Bw *bw) {
    double left = bw->capacity;
    int64_t n = bw->weight;
    for (int k = 0; k < bw->nclasses; k++) {
        Class *c = &bw->classes[k];
        if (c->weight) {
            double fair = left / (double)n;
            c->rate = c->cap < fair ? c->cap : fair;
            left -= c->rate * (double)c->weight;
            n -= c->weight;
        }
    }
}

static void bw_advance(Sim *s, Bw *bw) {
    double elapsed = s->now - bw->last;
    if (elapsed > 0 && bw->weight) {
        for (int k = 0; k < bw->nclasses; k++) {
            Class *c = &bw->classes[k];
            if (c->weight) c->served += c->rate * elapsed;
        }
    }
    bw->last = s->now;
}

static double bw_nearest(Bw *bw, int *which) {
    double best = INFINITY;
    *which = -1;
    for (int k = 0; k < bw->nclasses; k++) {
        Class *c = &bw->classes[k];
        if (c->weight) {
            double dt = (flow_top(c)->fin - c->served) / c->rate;
            if (dt < best) { best = dt; *which = k; }
        }
    }
    return best;
}

static void bw_reschedule(Sim *s, Bw *bw, int index) {
    int which;
    double dt = bw_nearest(bw, &which);
    if (dt == INFINITY) { bw->due = INFINITY; return; }
    double delay = dt > 0.0 ? dt : 0.0;
    bw->due = s->now + delay;
    if (bw->due < bw->timer_at) {
        bw->generation++;
        bw->timer_at = bw->due;
        schedule(s, s->now + delay, EV_WAKE, index, bw->generation);
    }
}

static Class *bw_class(Bw *bw, double cap) {
    int k = 0;
    for (; k < bw->nclasses; k++) {
        if (bw->classes[k].cap == cap) return &bw->classes[k];
        if (cap < bw->classes[k].cap) break;  /* insort: before the first larger cap */
    }
    if (bw->nclasses == bw->size) {
        int size = bw->size ? bw->size * 2 : 4;
        Class *cs = realloc(bw->classes, (size_t)size * sizeof(Class));
        if (!cs) return NULL;
        bw->classes = cs; bw->size = size;
    }
    memmove(&bw->classes[k + 1], &bw->classes[k], (size_t)(bw->nclasses - k) * sizeof(Class));
    bw->nclasses++;
    Class *c = &bw->classes[k];
    memset(c, 0, sizeof(Class));
    c->cap = cap;
    return c;
}

static void bw_transfer(Sim *s, int index, double nbytes, double cap, int64_t weight, int eng) {
    Bw *bw = &s->bws[index];
    if (nbytes <= 0) { schedule(s, s->now, EV_FLOW, eng, 0); return; }
    bw_advance(s, bw);
    Class *c = bw_class(bw, cap);
    if (!c) { s->status = ST_NOMEM; return; }
    bw->seq++;
    Flow f = { c->served + nbytes, bw->seq, eng, weight };
    if (flow_push(c, f)) { s->status = ST_NOMEM; return; }
    c->weight += weight;
    bw->weight += weight;
    bw_share(bw);
    bw_reschedule(s, bw, index);
}

typedef struct { double key; int64_t seq; int32_t eng; } Done;

static int done_cmp(const void *x, const void *y) {
    const Done *a = x, *b = y;
    if (a->key < b->key) return -1;
    if (a->key > b->key) return 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static void bw_wake(Sim *s, int index, int64_t gen) {
    Bw *bw = &s->bws[index];
    if (gen != bw->generation) return;  /* a sooner timer was armed since */
    bw->timer_at = INFINITY;
    bw_advance(s, bw);
    if (s->now < bw->due) { bw_reschedule(s, bw, index); return; }
    int first;
    bw_nearest(bw, &first);
    int64_t total = 0;
    for (int k = 0; k < bw->nclasses; k++) total += bw->classes[k].n;
    Done stack[64];
    Done *done = total <= 64 ? stack : malloc((size_t)total * sizeof(Done));
    if (!done) { s->status = ST_NOMEM; return; }
    int64_t nd = 0;
    int touched = 0;
    for (int k = 0; k < bw->nclasses; k++) {
        Class *c = &bw->classes[k];
        if (!c->weight) continue;
        double slack = 1e-6 * (c->rate > 1.0 ? c->rate : 1.0);
        int64_t n0 = nd;
        if (k == first) {
            Flow f = flow_pop(c);
            done[nd++] = (Done){ (f.fin - c->served) / c->rate, f.seq, f.eng };
            c->weight -= f.weight;
            bw->weight -= f.weight;
        }
        while (c->n && flow_top(c)->fin - c->served <= slack) {
            Flow f = flow_pop(c);
            done[nd++] = (Done){ (f.fin - c->served) / c->rate, f.seq, f.eng };
            c->weight -= f.weight;
            bw->weight -= f.weight;
        }
        touched += nd > n0;
    }
    if (touched > 1) qsort(done, (size_t)nd, sizeof(Done), done_cmp);
    bw_share(bw);
    for (int64_t i = 0; i < nd; i++) schedule(s, s->now, EV_FLOW, done[i].eng, 0);
    if (done != stack) free(done);
    bw_reschedule(s, bw, index);
}

/* ---- semaphores and barriers: simulator.engine.sync ---- */

static Sem *sem_of(Sim *s, Core *c, int64_t number) {
    if (!c->sems) {
        c->sems = calloc(N_SEMS, sizeof(Sem));
        if (!c->sems) { s->status = ST_NOMEM; return NULL; }
    }
    return &c->sems[number & (N_SEMS - 1)];
}

static void signal_sem(Sim *s, int core, int64_t number) {
    Core *c = &s->cores[core];
    Sem *m = sem_of(s, c, number);
    if (!m) return;
    m->count++;
    while (m->n && m->w[0].need <= m->count) {
        Waiter w = m->w[0];
        memmove(&m->w[0], &m->w[1], (size_t)(m->n - 1) * sizeof(Waiter));
        m->n--;
        m->count -= w.need;
        schedule(s, s->now, EV_RESUME, w.eng, 0);
    }
}

/* ---- one engine: core.CoreSim._run as a state machine ---- */

static double tail_of(Core *c, int e) {
    return e == E_DMA ? c->dma_tail : e == E_VEC ? c->vec_tail : 0.0;
}

static void budget(Sim *s, Eng *g, int64_t pc) {
    s->status = ST_BUDGET;
    s->err_core = g->core;
    s->err_pc = pc;
}

/* A DMA's bytes on HBM, or split between L2 and HBM for a load (core.CoreSim._move). */
static void move(Sim *s, Eng *g, Core *c, int32_t id, int index) {
    double nbytes = s->c_bytes[id], cap = s->c_cap[id], hbm_cap = s->c_hbmcap[id];
    int hbm = 2 * c->chip, l2 = hbm + 1;
    if (cap) {
        g->parts = 1; g->cond = 0;
        bw_transfer(s, hbm, nbytes, cap / 1e9, c->weight, index);
        return;
    }
    double hit = s->c_store[id] ? 0.0 : s->hit[c->chip];
    double own = c->dma_cap;
    if (hbm_cap) { double h = hbm_cap / 1e9; own = c->dma_cap < h ? c->dma_cap : h; }
    if (hit <= 0.0 || s->bws[l2].capacity <= 0) {
        g->parts = 1; g->cond = 0;
        bw_transfer(s, hbm, nbytes, own, c->weight, index);
        return;
    }
    double miss = 1.0 - hit;
    g->cond = 1;
    g->parts = miss > 0 ? 2 : 1;
    bw_transfer(s, l2, nbytes * hit, c->dma_cap * hit, c->weight, index);
    if (miss > 0) {
        double m = c->dma_cap * miss;
        bw_transfer(s, hbm, nbytes * miss, m < own ? m : own, c->weight, index);
    }
}

static void finish(Sim *s, Eng *g) {
    g->done = 1;
    s->ndone++;
}

/* Run engine ``index`` until it must wait for time, a transfer, a semaphore or a barrier. */
static void run_engine(Sim *s, int index) {
    Eng *g = &s->engs[index];
    Core *c = &s->cores[g->core];
    const int64_t *code = g->code;
    for (;;) {
        if (s->status) return;
        if (g->phase == 0) {  /* at an item boundary: leave finished loop bodies */
            while (g->nframes && g->ip == g->frames[g->nframes - 1].end) {
                Frame *f = &g->frames[g->nframes - 1];
                if (++f->i < f->count) g->ip = f->start;
                else g->nframes--;
            }
            if (g->ip >= g->len) g->phase = 100;  /* end of the stream: drain */
        }
        if (g->phase >= 100) {  /* drain the engine's work in flight, then finish */
            if (g->phase == 100) {
                double tail = tail_of(c, g->e);
                if (tail > s->now) {
                    g->phase = 101;
                    schedule(s, s->now + (tail - s->now), EV_RESUME, index, 0);
                    return;
                }
            }
            finish(s, g);
            return;
        }
        const int64_t *it = code + g->ip;
        switch (it[0]) {
        case T_OP: {
            int64_t pc = it[1];
            int32_t id = c->cid[pc];
            switch (g->phase) {
            case 0:
                g->start = s->now;
                if (g->e == E_MX && !c->mx_warm) {
                    c->mx_warm = 1;  /* a kernel's first matmul waits for the set-up */
                    if (c->startup) {
                        g->phase = 1;
                        schedule(s, s->now + c->startup, EV_RESUME, index, 0);
                        return;
                    }
                }
                /* fall through */
            case 1:
                if (s->c_ns[id]) {
                    g->phase = 2;
                    schedule(s, s->now + s->c_ns[id], EV_RESUME, index, 0);
                    return;
                }
                /* fall through */
            case 2:
                if (s->c_bytes[id]) {
                    g->phase = 3;
                    move(s, g, c, id, index);
                    return;
                }
                if (s->c_tail[id] && g->e == E_VEC) {
                    double t = s->now + s->c_tail[id];
                    if (t > c->vec_tail) c->vec_tail = t;
                }
                goto network;
            case 3: {  /* the bytes have moved */
                double t = s->now + s->c_tail[id];
                if (t > c->dma_tail) c->dma_tail = t;
            }
            network:
                if (g->e == E_NET && s->c_net[id] >= 0) {  /* network.base.Network._barrier */
                    NetBar *b = &s->netbars[s->c_net[id]];
                    g->bkind = B_PEERS; g->bpc = pc;
                    b->waiting[b->nwaiting++] = index;
                    b->arrived += c->weight;
                    if (b->arrived >= s->parties) {
                        int32_t *t = b->rel;
                        b->rel = b->waiting; b->nrel = b->nwaiting;
                        b->waiting = t; b->nwaiting = 0;
                        b->arrived = 0;
                        schedule(s, s->now, EV_NETBAR, (int)s->c_net[id], 0);
                    }
                    g->phase = 4;
                    return;
                }
                break;
            case 4:  /* the barrier released: the kernel boundary's gap */
                if (c->gap) {
                    g->phase = 5;
                    schedule(s, s->now + c->gap, EV_RESUME, index, 0);
                    return;
                }
                /* fall through */
            case 5:
                g->bkind = B_NONE;
                break;
            }
            c->busy[g->e] += s->now - g->start;
            c->counts[pc]++;
            s->executed += c->weight;
            if (s->executed > s->max_instructions || s->now > s->max_time) {
                budget(s, g, pc);
                return;
            }
            g->phase = 0;
            g->ip += 2;
            break;
        }
        case T_RUN: {  /* consecutive vector ops: one timeout for the stretch */
            int64_t n = it[1];
            if (g->phase == 0) {
                double start = s->now, t = start;
                for (int64_t k = 0; k < n; k++) {
                    int64_t pc = it[2 + k];
                    int32_t id = c->cid[pc];
                    t += s->c_ns[id];
                    if (s->c_tail[id]) {
                        double v = t + s->c_tail[id];
                        if (v > c->vec_tail) c->vec_tail = v;
                    }
                    c->counts[pc]++;
                }
                s->executed += c->weight * n;
                g->start = start;
                if (t > start) {
                    g->phase = 1;
                    schedule(s, s->now + (t - start), EV_RESUME, index, 0);
                    return;
                }
            }
            c->busy[g->e] += s->now - g->start;
            if (s->executed > s->max_instructions || s->now > s->max_time) {
                budget(s, g, it[1 + n]);
                return;
            }
            g->phase = 0;
            g->ip += 2 + n;
            break;
        }
        case T_LOOP: {
            if (g->nframes == MAX_DEPTH) { s->status = ST_NOMEM; return; }
            Frame *f = &g->frames[g->nframes++];
            f->start = g->ip + 3;
            f->end = f->start + it[2];
            f->count = it[1];
            f->i = 0;
            g->ip = f->start;
            if (f->count <= 0) { g->ip = f->end; g->nframes--; }
            break;
        }
        case T_SIGNAL: {
            s->executed += c->weight;
            if (s->executed > s->max_instructions) { budget(s, g, it[1]); return; }
            double tail = tail_of(c, g->e);
            if (tail > s->now)  /* when the work before it completes */
                schedule(s, s->now + (tail - s->now), EV_SIGNAL, g->core, it[2]);
            else
                signal_sem(s, g->core, it[2]);
            g->ip += 3;
            break;
        }
        case T_WAIT: {
            if (g->phase == 0) {
                s->executed += c->weight;
                if (s->executed > s->max_instructions) { budget(s, g, it[1]); return; }
                Sem *m = sem_of(s, c, it[2]);
                if (!m) return;
                if (!m->n && m->count >= it[3]) {
                    m->count -= it[3];
                } else {
                    if (m->n == SEM_WAITERS) { s->status = ST_NOMEM; return; }
                    m->w[m->n++] = (Waiter){ it[3], index };
                    g->bkind = B_SEM; g->bpc = it[1]; g->bnum = it[2]; g->bneed = it[3];
                    g->phase = 1;
                    return;
                }
            }
            g->bkind = B_NONE;
            g->phase = 0;
            g->ip += 4;
            break;
        }
        case T_BARRIER: {
            if (g->phase == 0) {
                double tail = tail_of(c, g->e);
                if (tail > s->now) {
                    g->phase = 1;
                    schedule(s, s->now + (tail - s->now), EV_RESUME, index, 0);
                    return;
                }
                g->phase = 1;
            }
            if (g->phase == 1) {
                if (g->e == E_MX) c->mx_warm = 0;
                g->bkind = B_BARRIER; g->bpc = it[1];
                c->arrivals[c->arrived++] = index;
                if (c->arrived >= N_ENG) {  /* the last to arrive releases everyone */
                    memcpy(c->rel, c->arrivals, sizeof(c->rel));
                    c->released = c->arrived;
                    c->arrived = 0;
                    schedule(s, s->now, EV_BARRIER, g->core, 0);
                }
                g->phase = 2;
                return;
            }
            g->bkind = B_NONE;
            g->phase = 0;
            g->ip += 2;
            break;
        }
        case T_HALT:
            g->phase = 100;
            break;
        default:
            s->status = ST_NOMEM;
            return;
        }
    }
}

static void dispatch(Sim *s, Event ev) {
    switch (ev.kind) {
    case EV_RESUME:
        run_engine(s, ev.a);
        break;
    case EV_FLOW: {  /* one part of a DMA delivered */
        Eng *g = &s->engs[ev.a];
        if (--g->parts == 0) {
            if (g->cond) schedule(s, s->now, EV_RESUME, ev.a, 0);  /* SimPy's all_of */
            else run_engine(s, ev.a);
        }
        break;
    }
    case EV_WAKE:
        bw_wake(s, ev.a, ev.b);
        break;
    case EV_SIGNAL:
        signal_sem(s, ev.a, ev.b);
        break;
    case EV_NETBAR: {
        NetBar *b = &s->netbars[ev.a];
        int n = b->nrel;
        b->nrel = 0;
        for (int k = 0; k < n; k++) run_engine(s, b->rel[k]);
        break;
    }
    case EV_BARRIER: {
        Core *c = &s->cores[ev.a];
        int32_t rel[N_ENG];
        int n = c->released;
        memcpy(rel, c->rel, sizeof(rel));
        c->released = 0;
        for (int k = 0; k < n; k++) run_engine(s, rel[k]);
        break;
    }
    }
}

/* ---- the Python entry point ---- */

static int need(Py_buffer *b, Py_ssize_t itemsize, Py_ssize_t n, const char *what) {
    if (b->len != itemsize * n) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, b->len,
                     itemsize * n);
        return -1;
    }
    return 0;
}

static void release(Sim *s) {
    eq_free(&s->q);
    if (s->cores) for (int i = 0; i < s->ncores; i++) free(s->cores[i].sems);
    free(s->engs);
    free(s->cores);
    if (s->netbars) for (int i = 0; i < s->nnetbars; i++) {
        free(s->netbars[i].waiting);
        free(s->netbars[i].rel);
    }
    free(s->netbars);
}

static void release_bws(Bw *bws, int n) {
    if (!bws) return;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < bws[i].nclasses; k++) {
            free(bws[i].classes[k].heap);
            free(bws[i].classes[k].run);
        }
        free(bws[i].classes);
    }
    free(bws);
}

PyDoc_STRVAR(run_doc,
"run(code, sstart, slen, cid, coff, c_ns, c_bytes, c_cap, c_hbmcap, c_tail, c_store,\n"
"    c_net, core_chip, core_weight, core_dmacap, core_startup, core_gap, chip_hbm,\n"
"    chip_l2, chip_hit, ngroups, parties, max_instructions, max_time_ns, counts, busy,\n"
"    blocked, done)\n"
"-> (status, now, executed, err_core, err_pc)\n\n"
"Simulate a machine's cores (see simulator/engine/compiled.py for the arrays).");

static PyObject *py_run(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer code, sstart, slen, cid, coff, c_ns, c_bytes, c_cap, c_hbmcap, c_tail, c_store,
        c_net, core_chip, core_weight, core_dmacap, core_startup, core_gap, chip_hbm, chip_l2,
        chip_hit, counts, busy, blocked, done;
    int ngroups;
    long long max_instructions, parties;
    double max_time;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*iLLdw*w*w*w*",
                          &code, &sstart, &slen, &cid, &coff, &c_ns, &c_bytes, &c_cap,
                          &c_hbmcap, &c_tail, &c_store, &c_net, &core_chip, &core_weight,
                          &core_dmacap, &core_startup, &core_gap, &chip_hbm, &chip_l2,
                          &chip_hit, &ngroups, &parties, &max_instructions, &max_time, &counts,
                          &busy, &blocked, &done))
        return NULL;
    Py_buffer *all[] = { &code, &sstart, &slen, &cid, &coff, &c_ns, &c_bytes, &c_cap,
                         &c_hbmcap, &c_tail, &c_store, &c_net, &core_chip, &core_weight,
                         &core_dmacap, &core_startup, &core_gap, &chip_hbm, &chip_l2,
                         &chip_hit, &counts, &busy, &blocked, &done };
    const int nbufs = (int)(sizeof(all) / sizeof(all[0]));
    PyObject *out = NULL;
    Sim s;
    memset(&s, 0, sizeof(s));
    int ncores = (int)(core_chip.len / 8), nchips = (int)(chip_hbm.len / 8);
    Py_ssize_t ncost = c_ns.len / 8;
    if (need(&sstart, 8, ncores * N_ENG, "sstart") || need(&slen, 8, ncores * N_ENG, "slen")
        || need(&coff, 8, ncores + 1, "coff") || need(&core_weight, 8, ncores, "core_weight")
        || need(&core_dmacap, 8, ncores, "core_dmacap")
        || need(&core_startup, 8, ncores, "core_startup")
        || need(&core_gap, 8, ncores, "core_gap") || need(&c_net, 8, ncost, "c_net")
        || need(&chip_l2, 8, nchips, "chip_l2") || need(&chip_hit, 8, nchips, "chip_hit")
        || need(&c_bytes, 8, ncost, "c_bytes") || need(&c_cap, 8, ncost, "c_cap")
        || need(&c_hbmcap, 8, ncost, "c_hbmcap") || need(&c_tail, 8, ncost, "c_tail")
        || need(&c_store, 1, ncost, "c_store") || need(&busy, 8, ncores * N_ENG, "busy")
        || need(&blocked, 8, ncores * N_ENG * 4, "blocked")
        || need(&done, 1, ncores * N_ENG, "done"))
        goto end;
    const int64_t *off = coff.buf;
    if (need(&cid, 4, (Py_ssize_t)off[ncores], "cid")
        || need(&counts, 8, (Py_ssize_t)off[ncores], "counts"))
        goto end;
    const int32_t *cids = cid.buf;
    for (int64_t i = 0; i < off[ncores]; i++)
        if (cids[i] < 0 || cids[i] >= ncost) {
            PyErr_SetString(PyExc_ValueError, "cid: a cost index out of range");
            goto end;
        }
    const int64_t *nets = c_net.buf;
    for (Py_ssize_t i = 0; i < ncost; i++)
        if (nets[i] < -2 || nets[i] >= ngroups) {
            PyErr_SetString(PyExc_ValueError, "c_net: a group out of range");
            goto end;
        }
    const int64_t *chip_of = core_chip.buf;
    for (int i = 0; i < ncores; i++)
        if (chip_of[i] < 0 || chip_of[i] >= nchips) {
            PyErr_SetString(PyExc_ValueError, "core_chip: a chip index out of range");
            goto end;
        }

    s.hit = chip_hit.buf;
    s.c_ns = c_ns.buf; s.c_bytes = c_bytes.buf; s.c_cap = c_cap.buf;
    s.c_hbmcap = c_hbmcap.buf; s.c_tail = c_tail.buf; s.c_store = c_store.buf;
    s.c_net = nets;
    s.parties = parties;
    s.max_instructions = max_instructions;
    s.max_time = max_time;
    s.ncores = ncores;
    s.nengs = ncores * N_ENG;
    s.cores = calloc((size_t)(ncores ? ncores : 1), sizeof(Core));
    s.engs = calloc((size_t)(s.nengs ? s.nengs : 1), sizeof(Eng));
    s.bws = calloc((size_t)(2 * (nchips ? nchips : 1)), sizeof(Bw));
    s.netbars = calloc((size_t)(ngroups > 0 ? ngroups : 1), sizeof(NetBar));
    if (!s.cores || !s.engs || !s.bws || !s.netbars) { PyErr_NoMemory(); goto end; }
    s.nnetbars = ngroups;
    for (int i = 0; i < ngroups; i++) {
        s.netbars[i].waiting = malloc((size_t)(ncores ? ncores : 1) * sizeof(int32_t));
        s.netbars[i].rel = malloc((size_t)(ncores ? ncores : 1) * sizeof(int32_t));
        if (!s.netbars[i].waiting || !s.netbars[i].rel) { PyErr_NoMemory(); goto end; }
    }
    for (int i = 0; i < nchips; i++) {
        const double caps[2] = { ((const double *)chip_hbm.buf)[i],
                                 ((const double *)chip_l2.buf)[i] };
        for (int k = 0; k < 2; k++) {
            Bw *bw = &s.bws[2 * i + k];
            bw->capacity = caps[k];
            bw->due = INFINITY;
            bw->timer_at = INFINITY;
        }
    }
    int64_t *cnt = counts.buf;
    memset(cnt, 0, (size_t)counts.len);
    double *bsy = busy.buf;
    memset(bsy, 0, (size_t)busy.len);
    for (int i = 0; i < ncores; i++) {
        Core *c = &s.cores[i];
        c->chip = (int)chip_of[i];
        c->weight = ((const int64_t *)core_weight.buf)[i];
        c->dma_cap = ((const double *)core_dmacap.buf)[i];
        c->startup = ((const double *)core_startup.buf)[i];
        c->gap = ((const double *)core_gap.buf)[i];
        c->cid = cids + off[i];
        c->counts = cnt + off[i];
        c->busy = bsy + (Py_ssize_t)i * N_ENG;
        for (int e = 0; e < N_ENG; e++) {
            Eng *g = &s.engs[i * N_ENG + e];
            int64_t st = ((const int64_t *)sstart.buf)[i * N_ENG + e];
            int64_t ln = ((const int64_t *)slen.buf)[i * N_ENG + e];
            if (st < 0 || ln < 0 || (st + ln) * 8 > code.len) {
                PyErr_SetString(PyExc_ValueError, "sstart/slen: a stream outside the code");
                goto end;
            }
            g->code = (const int64_t *)code.buf + st;
            g->len = ln;
            g->core = i;
            g->e = e;
        }
    }
    s.q.radix = s.nengs >= radix_from;
    Py_BEGIN_ALLOW_THREADS
    for (int k = 0; k < s.nengs; k++) schedule(&s, 0.0, EV_RESUME, k, 0);  /* SimPy's
                                                                         Initialize */
    while (!s.status && s.ndone < s.nengs && s.q.pending) {
        Event ev;
        if (eq_pop(&s.q, &ev)) { s.status = ST_NOMEM; break; }
        s.now = ev.t;
        dispatch(&s, ev);
    }
    if (!s.status) s.status = s.ndone == s.nengs ? ST_DONE : ST_DEADLOCK;
    Py_END_ALLOW_THREADS
    if (s.status == ST_BADTIME) {
        PyErr_SetString(PyExc_ValueError,
                        "compiled core: an event before now (a negative or NaN cost)");
        goto end;
    }
    if (s.status == ST_NOMEM) {
        PyErr_SetString(PyExc_MemoryError,
                        "compiled core: out of memory or a program beyond its limits");
        goto end;
    }
    int64_t *blk = blocked.buf;
    int8_t *dn = done.buf;
    for (int k = 0; k < s.nengs; k++) {
        blk[4 * k] = s.engs[k].bkind;
        blk[4 * k + 1] = s.engs[k].bpc;
        blk[4 * k + 2] = s.engs[k].bnum;
        blk[4 * k + 3] = s.engs[k].bneed;
        dn[k] = (int8_t)s.engs[k].done;
    }
    out = Py_BuildValue("idLiL", s.status, s.now, (long long)s.executed, s.err_core,
                        (long long)s.err_pc);
end:
    release(&s);
    release_bws(s.bws, 2 * nchips);
    for (int k = 0; k < nbufs; k++)
        if (all[k]->obj) PyBuffer_Release(all[k]);
    return out;
}

PyDoc_STRVAR(queue_threshold_doc,
"queue_threshold(engines) -> the previous threshold\n\n"
"Machines of at least this many engines keep their events in a radix heap, others in a\n"
"binary heap (see eventq.h); for tests, which run programs both ways.");

static PyObject *queue_threshold(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    int before = radix_from;
    radix_from = n < 0 ? 0 : n > 1L << 30 ? 1 << 30 : (int)n;
    return PyLong_FromLong(before);
}

PyDoc_STRVAR(stream_code_doc,
"stream_code(role, a, b, runs) -> (code bytes, (five stream starts), loop depth)\n"
"    or (None, pc of a loop that does not nest)\n\n"
"A program's four engine streams as one int64 code array (see streamcode.c).");

PyDoc_STRVAR(l2_replay_doc,
"l2_replay(lo, hi, moved, core_offsets, capacity) -> (hits, loaded)\n\n"
"The L2 reuse model's replay of a run's loads (see simulator/memory/l2.py).");

PyDoc_STRVAR(first_met_doc,
"first_met(sequence) -> (bytes: each item's object index, bytes: each object's first\n"
"    position), int64 arrays; objects numbered in the order first met, by identity.");

static PyMethodDef methods[] = {
    { "run", py_run, METH_VARARGS, run_doc },
    { "stream_code", stream_code, METH_VARARGS, stream_code_doc },
    { "l2_replay", l2_replay, METH_VARARGS, l2_replay_doc },
    { "first_met", first_met, METH_O, first_met_doc },
    { "queue_threshold", queue_threshold, METH_O, queue_threshold_doc },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcore",
    "The compiled event core of simulator.engine (see simulator/engine/compiled.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastcore(void) {
    PyObject *m = PyModule_Create(&module);
    if (m) {
        PyModule_AddIntConstant(m, "DONE", ST_DONE);
        PyModule_AddIntConstant(m, "DEADLOCK", ST_DEADLOCK);
        PyModule_AddIntConstant(m, "BUDGET", ST_BUDGET);
        PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH);
        PyModule_AddIntConstant(m, "R_LOOP", R_LOOP);
        PyModule_AddIntConstant(m, "R_BARRIER", R_BARRIER);
        PyModule_AddIntConstant(m, "R_HALT", R_HALT);
        PyModule_AddIntConstant(m, "R_SIGNAL", R_SIGNAL);
        PyModule_AddIntConstant(m, "R_WAIT", R_WAIT);
        PyModule_AddIntConstant(m, "R_NONE", R_NONE);
    }
    return m;
}
