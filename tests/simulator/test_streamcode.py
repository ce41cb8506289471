"""The compiled core's code, written by the extension from per-pc arrays, is the engine
streams the SimPy engine walks, item for item: every engine, loops kept or dropped by
whether their body has work for the engine, vector stretches folded, loops refused when
they do not nest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import measured_work as mw
from isa import build
from isa.program import Program
from mapper.emit import acc, hbm, sram
from mapper.lower import lower
from simulator.engine import compiled, streams
from simulator.errors import SimError
from tests.simulator.conftest import make_chip

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="the compiled core is not built")


def _emit(items: tuple, code: list[int]) -> int:
    """The items in the compiled core's layout, written in Python (the reference)."""
    OP, RUN, LOOP, SIGNAL, WAIT = (streams.OP, streams.RUN, streams.LOOP, streams.SIGNAL,
                                   streams.WAIT)
    depth = 0
    for it in items:
        tag = it[0]
        if tag == OP:
            code += (OP, it[1])
        elif tag == RUN:
            code += (RUN, len(it[1]), *(pc for pc, _ in it[1]))
        elif tag == LOOP:
            loop = it[1]
            code += (LOOP, loop.count, 0)
            at = len(code)
            depth = max(depth, 1 + _emit(loop.body, code))
            code[at - 1] = len(code) - at
        elif tag == SIGNAL:
            code += (SIGNAL, it[1], it[2])
        elif tag == WAIT:
            code += (WAIT, it[1], it[2], it[3])
        elif tag in (streams.BARRIER, streams.HALT):
            code += (tag, it[1])
    return depth


def _reference(prog: Program, runs: bool) -> tuple[list[int], list[int], int]:
    items = streams.engine_streams(prog, runs)
    code: list[int] = []
    starts, depth = [], 0
    for engine in streams.STREAM_ENGINES:
        starts.append(len(code))
        depth = max(depth, _emit(items[engine], code))
    starts.append(len(code))
    return code, starts, depth


def _same(prog: Program) -> None:
    for runs in (False, True):
        code, starts, deep = compiled._code(prog, runs)
        ref, ref_starts, depth = _reference(prog, runs)
        assert code.tolist() == ref
        assert starts == ref_starts
        assert deep == (depth > compiled._fastcore.MAX_DEPTH)


_LEAF = st.sampled_from(["load", "store", "mm", "vec", "vec", "nop", "barrier",
                         "signal", "wait", "netbar"])


_BODY = st.recursive(_LEAF, lambda inner: st.tuples(st.integers(1, 3), st.lists(inner,
                                                                              max_size=5)),
                     max_leaves=30)


def _write(node, ins: list) -> None:
    if isinstance(node, tuple):  # (count, body): a loop
        count, body = node
        at = len(ins)
        ins.append(None)
        for n in body:
            _write(n, ins)
        ins[at] = build("loop", count, len(ins))
        return
    ins.append({
        "load": lambda: build("dma.load", sram(0), hbm(0), "bf16", 8, 8),
        "store": lambda: build("dma.store", hbm(4096), sram(0), "bf16", 8, 8),
        "mm": lambda: build("mm", acc(0), sram(0), sram(512), 8, 16, 8, "bf16", "bf16", 0),
        "vec": lambda: build("v.exp", sram(1024), sram(1024), 8, 8, "bf16", "bf16"),
        "nop": lambda: build("nop"),
        "barrier": lambda: build("barrier"),
        "signal": lambda: build("sem.signal", "vec", 1),
        "wait": lambda: build("sem.wait", "mx", 1, 2),
        "netbar": lambda: build("net.barrier"),
    }[node]())


@settings(max_examples=150, deadline=None)
@given(st.lists(_BODY, min_size=1, max_size=8))
def test_random_nests_of_every_item(nodes):
    ins: list = []
    for n in nodes:
        _write(n, ins)
    _same(Program(tuple(ins) + (build("halt"),)))


def test_lowered_kernels():
    chip = make_chip(cores=4)
    for graph in (mw.attention_graph(1, 4, 2, 300, 300, 64, True),
                  mw.gemm_graph("bf16", 100, 640, 70)):
        for progs in lower(graph, chip).kernel_programs:
            for prog in progs.values():
                _same(prog)


def test_loops_that_do_not_nest_are_refused():
    body = build("v.exp", sram(0), sram(0), 8, 8, "bf16", "bf16")
    prog = Program((build("loop", 2, 4), build("loop", 2, 5), body, body, body,
                    build("halt")))
    with pytest.raises(SimError, match="pc 1: loop end 5 is not inside the enclosing block"):
        compiled._code(prog, True)
