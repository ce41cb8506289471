"""The compiled event core (simulator/engine/fastcore.c, with streamcode.c and firstmet.c, and
the L2 model's replay, simulator/memory/l2replay.c), built if a C compiler is at hand.

Everything else about the package is in pyproject.toml. The extension is optional: where it
cannot be built, the install goes on and the simulator runs its SimPy engine alone, with
the same results, slower (docs/performance.md, "The compiled event core").
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("simulator.engine._fastcore",
                             sources=["simulator/engine/fastcore.c",
                                      "simulator/engine/streamcode.c",
                                      "simulator/engine/firstmet.c",
                                      "simulator/memory/l2replay.c"],
                             depends=["simulator/engine/eventq.h",
                                      "simulator/engine/heap.h",
                                      "simulator/engine/streamcode.h",
                                      "simulator/engine/firstmet.h",
                                      "simulator/memory/l2replay.h"],
                             extra_compile_args=["-O2", "-ffp-contract=off"], optional=True)])
