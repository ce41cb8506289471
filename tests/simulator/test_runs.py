"""Consecutive vector instructions run as one timeout (``streams.RUN``) in performance mode;
a traced run sees every instruction on its own. Both give the same figures."""

from __future__ import annotations

import pytest

from experiments import measured_work as mw
from mapper.lower import lower
from simulator.engine.machine import RunLimits
from simulator.engine.streams import RUN, engine_streams
from simulator.run import simulate
from tests.simulator.conftest import make_chip

FULL = RunLimits(steady_state=False)


@pytest.mark.parametrize("graph", [
    mw.attention_graph(1, 4, 4, 512, 512, 64, True),  # softmax chains between the MMAs
    mw.rows_graph("layernorm", 300, 256),
    mw.rows_graph("silu_mul", 64, 1024),
])
def test_vector_runs_equal_every_instruction_on_its_own(graph):
    chip = make_chip(cores=4)
    for progs in lower(graph, chip).kernel_programs:
        fast = simulate(progs, chip, limits=FULL, _store=False)
        each = simulate(progs, chip, limits=FULL, trace=True, _store=False)
        assert fast.time_s == pytest.approx(each.time_s, rel=1e-12)
        assert fast.instructions == each.instructions
        assert fast.bytes == each.bytes
        assert fast.energy_j == pytest.approx(each.energy_j, rel=1e-12)
        for e, st in each.engines.items():
            assert fast.engines[e].instructions == st.instructions
            assert fast.engines[e].busy_s == pytest.approx(st.busy_s, rel=1e-12, abs=1e-18)


def test_only_the_vector_stream_folds_and_only_when_asked():
    chip = make_chip(cores=2)
    progs = lower(mw.attention_graph(1, 2, 2, 256, 256, 64, True), chip).kernel_programs[0]
    prog = next(iter(progs.values())) if isinstance(progs, dict) else progs

    def tags(items):
        for it in items:
            yield it[0]
            if it[0] == 1:  # LOOP
                yield from tags(it[1].body)
    folded = engine_streams(prog, runs=True)
    plain = engine_streams(prog, runs=False)
    assert any(t == RUN for s in folded.values() for t in tags(s))
    assert not any(t == RUN for s in plain.values() for t in tags(s))
    assert all(t != RUN for e, s in folded.items() if e.value != "vec" for t in tags(s))
