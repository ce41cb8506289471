/* simulator/engine/firstmet.c: a sequence's items by their object's first-met index. */
#ifndef TESSERA_FIRSTMET_H
#define TESSERA_FIRSTMET_H
#include <Python.h>

PyObject *first_met(PyObject *self, PyObject *arg);

#endif
