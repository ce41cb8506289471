/* simulator/engine/streamcode.c: a program's engine streams as the compiled core's code. */
#ifndef TESSERA_STREAMCODE_H
#define TESSERA_STREAMCODE_H
#include <Python.h>

/* a pc's role (0-3: an engine's own op) */
enum { R_LOOP = 4, R_BARRIER = 5, R_HALT = 6, R_SIGNAL = 8, R_WAIT = 12, R_NONE = 16 };

PyObject *stream_code(PyObject *self, PyObject *args);

#endif
