/* simulator/memory/l2replay.c: the L2 reuse model's replay of a run's loads. */
#ifndef TESSERA_L2REPLAY_H
#define TESSERA_L2REPLAY_H
#include <Python.h>

PyObject *l2_replay(PyObject *self, PyObject *args);

#endif
