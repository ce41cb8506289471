"""Python's cycle collector paused while instructions are built or walked en masse.

Lowering a kernel builds hundreds of thousands of ``Instruction`` values, and compiling
programs for a run (streams, signatures, bounds) allocates more objects per instruction;
none is in a reference cycle and most live on (in programs, in per-program tables). With
millions of them alive, the collector's full passes found nothing and cost 12% of a
training-step row (``mapper.lower.lower``) and 13% of a 32k-token causal prefill's
compilation (profiled). Pausing it there loses nothing: cycles made meanwhile are
collected at the first pass after it resumes. Here, at the root, because the mapper and
the simulator both do it.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable)


@contextmanager
def paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def while_paused(fn: F) -> F:
    """``fn`` run with the collector paused."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with paused():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
