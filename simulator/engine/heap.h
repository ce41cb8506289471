/* A binary heap of values of one type ordered by ``less``, generated per type (the event
 * queue's later events, a bandwidth class's flows): ``prefix##_up`` fills a hole at ``i``
 * with ``x``, sifting it up; ``prefix##_down`` takes the first of a heap of ``n + 1``
 * values, leaving ``n``. */
#ifndef HEAP_H
#define HEAP_H

#include <stdint.h>

#define HEAP_FUNCTIONS(prefix, T, less)                                                  \
    static void prefix##_up(T *h, int64_t i, T x) {                                      \
        while (i > 0) {                                                                  \
            int64_t p = (i - 1) / 2;                                                     \
            if (!less(&x, &h[p])) break;                                                 \
            h[i] = h[p];                                                                 \
            i = p;                                                                       \
        }                                                                                \
        h[i] = x;                                                                        \
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
