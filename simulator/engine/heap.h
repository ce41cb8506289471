/* Growable arrays of the compiled core: queues read from a head (``queue_room``) and binary
 * heaps of values of one type ordered by ``less``, generated per type (the event queue's
 * later events, a bandwidth class's flows): ``prefix##_push`` adds ``x`` (-1: out of
 * memory), ``prefix##_down`` takes the first of a heap of ``n + 1`` values, leaving ``n``. */
#ifndef HEAP_H
#define HEAP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Room for one more item at the end of a queue read from ``*head``: the unread items slid
   to the front, or the array doubled (``first`` items at first). -1: out of memory. */
static __attribute__((noinline)) int queue_room(void **v, int64_t *head, int64_t *n,
                                                int64_t *size, size_t item, int64_t first) {
    if (*head) {
        memmove(*v, (char *)*v + (size_t)*head * item, (size_t)(*n - *head) * item);
        *n -= *head;
        *head = 0;
    }
    if (*n == *size) {
        int64_t grown = *size ? *size * 2 : first;
        void *w = realloc(*v, (size_t)grown * item);
        if (!w) return -1;
        *v = w;
        *size = grown;
    }
    return 0;
}

#define HEAP_FUNCTIONS(prefix, T, less)                                                  \
    static int prefix##_push(T **h, int64_t *n, int64_t *size, T x, int64_t first) {     \
        int64_t from = 0; /* a heap is read from its start */                            \
        if (*n == *size && queue_room((void **)h, &from, n, size, sizeof(T), first))     \
            return -1;                                                                   \
        int64_t i = (*n)++;                                                              \
        while (i > 0) {                                                                  \
            int64_t p = (i - 1) / 2;                                                     \
            if (!less(&x, &(*h)[p])) break;                                              \
            (*h)[i] = (*h)[p];                                                           \
            i = p;                                                                       \
        }                                                                                \
        (*h)[i] = x;                                                                     \
        return 0;                                                                        \
    }                                                                                    \
    static T prefix##_down(T *h, int64_t n) {                                            \
        T top = h[0], last = h[n];                                                       \
        int64_t i = 0;                                                                   \
        for (;;) {                                                                       \
            int64_t l = 2 * i + 1, m;                                                    \
            if (l >= n) break;                                                           \
            m = (l + 1 < n && less(&h[l + 1], &h[l])) ? l + 1 : l;                       \
            if (!less(&h[m], &last)) break;                                              \
            h[i] = h[m];                                                                 \
            i = m;                                                                       \
        }                                                                                \
        if (n) h[i] = last;                                                              \
        return top;                                                                      \
    }

#endif
