/* Each item of a sequence as the index of its object among the distinct objects in the
 * order first met (simulator/engine/dedupe.py, ``_signature``): a program is a tuple of
 * shared instruction objects, a few thousand distinct among hundreds of thousands of pcs.
 * One pass with a table by object identity, against numpy's sort of the ids and the
 * argsorts that turn its order into first-met order (dedupe keeps that path for installs
 * without the extension; tests/simulator/test_dedupe.py checks the two agree).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#include "firstmet.h"

PyObject *first_met(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "first_met: expected a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    size_t size = 16;
    while (size < 2 * (size_t)n + 2) size <<= 1;
    size_t mask = size - 1;
    PyObject **keys = calloc(size, sizeof(PyObject *));
    int64_t *vals = malloc(size * sizeof(int64_t));
    int64_t *f = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    PyObject *obj = PyBytes_FromStringAndSize(NULL, n * 8), *first = NULL, *out = NULL;
    if (!keys || !vals || !f || !obj) { PyErr_NoMemory(); goto end; }
    int64_t *o = (int64_t *)PyBytes_AS_STRING(obj);
    int64_t m = 0;
    for (Py_ssize_t pc = 0; pc < n; pc++) {
        PyObject *x = items[pc];
        size_t h = ((uintptr_t)x >> 4) * 0x9e3779b97f4a7c15ULL;
        size_t i = (h >> 17) & mask;
        while (keys[i] && keys[i] != x) i = (i + 1) & mask;
        if (!keys[i]) {
            keys[i] = x;
            vals[i] = m;
            f[m++] = pc;
        }
        o[pc] = vals[i];
    }
    first = PyBytes_FromStringAndSize((const char *)f, m * 8);
    if (first) out = Py_BuildValue("(OO)", obj, first);
end:
    free(keys);
    free(vals);
    free(f);
    Py_XDECREF(obj);
    Py_XDECREF(first);
    Py_DECREF(seq);
    return out;
}
