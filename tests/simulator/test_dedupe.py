"""The identical-cores shortcut is exact: same result as simulating every core."""

from __future__ import annotations

import dataclasses

import pytest

from isa import DType
from mapper.graph import Graph, Kind, Tensor
from mapper.kernels.gemm import Tiling
from mapper.lower import lower
from simulator.engine.dedupe import group_identical
from simulator.run import simulate
from tests.simulator.conftest import make_chip


def gemm_graph(m: int, k: int, n: int) -> Graph:
    g = Graph()
    g.add(Tensor("x", (m, k), DType.BF16, Kind.INPUT))
    g.add(Tensor("w", (k, n), DType.BF16, Kind.WEIGHT))
    g.add(Tensor("y", (m, n), DType.BF16))
    g.op("linear", "lin", ["x", "w"], ["y"], bias=False)
    return g


@pytest.fixture
def tiles_16(monkeypatch):
    import mapper.lower as low

    monkeypatch.setattr(low, "_choose_tilings", lambda g, c, *rest: {"lin": Tiling(16, 16, 16)})


@pytest.mark.parametrize("m,k,n,cores,classes", [(64, 64, 96, 4, 1), (100, 48, 70, 3, 3),
                                                 (256, 32, 40, 5, 3)])
def test_grouped_simulation_equals_full(m, k, n, cores, classes, tiles_16):
    chip = make_chip(cores=cores)
    progs = lower(gemm_graph(m, k, n), chip).programs
    full = simulate(progs, chip, dedupe=False)
    fast = simulate(progs, chip, dedupe=True)
    reps, _ = group_identical({(0, c): p for c, p in progs.items()})
    assert len(reps) == classes  # ragged edge tiles make their own classes
    assert fast.time_s == pytest.approx(full.time_s, rel=1e-12)
    assert fast.energy_j == pytest.approx(full.energy_j, rel=1e-12)
    assert fast.bytes == pytest.approx(full.bytes, rel=1e-12)
    assert fast.instructions == full.instructions
    for e in full.engines:
        assert fast.engines[e].busy_s == pytest.approx(full.engines[e].busy_s, rel=1e-12)


def test_wave_quantization_shows_in_time():
    """One more output tile than there are cores costs a second wave."""
    chip = dataclasses.replace(make_chip(cores=4))
    import mapper.lower as low

    tiling = {"lin": Tiling(16, 64, 16)}
    orig = low._choose_tilings
    low._choose_tilings = lambda g, c, *rest: tiling
    try:
        t4 = simulate(lower(gemm_graph(16, 512, 64), chip).programs, chip).time_s  # 4 tiles
        t5 = simulate(lower(gemm_graph(16, 512, 80), chip).programs, chip).time_s  # 5 tiles
    finally:
        low._choose_tilings = orig
    # the fifth tile runs alone in a second wave: 8 k-steps of a 16x64x16 matmul, each
    # 4 folds x (2*16 + 16 + 16 - 2) = 248 cycles at 1 GHz
    assert t5 - t4 == pytest.approx(8 * 248e-9, rel=0.05)


def test_identity_is_by_value_whatever_objects_a_program_is_made_of():
    """Programs are grouped (and their costs cached) by a digest of their signature: equal
    for programs that differ only in addresses, however their instruction objects are
    shared (one object for repeated requests, or a new one each time), and different when
    any other field differs."""
    from isa import Instruction, Program, build
    from mapper.emit import hbm, sram
    from simulator.engine.dedupe import addresses, identity

    def load(at: int, rows: int = 8) -> Instruction:
        return build("dma.load", sram(0), hbm(at), DType.BF16, rows, 64)

    wait = build("sem.wait", "dma", 1)
    shared = Program((wait, load(0), wait, load(4096), build("halt")))
    fresh = Program(tuple(Instruction(i.opcode, i.args) for i in
                          (wait, load(1 << 20), wait, load(1 << 21), build("halt"))))
    assert identity(shared) == identity(fresh)
    assert addresses(fresh)[1::2].tolist() == [1 << 20, 1 << 21]  # src addresses, in order
    other = Program((wait, load(0), wait, load(4096, rows=16), build("halt")))
    assert identity(other) != identity(shared)
    swapped = Program((load(0), wait, wait, load(4096), build("halt")))
    assert identity(swapped) != identity(shared)


@pytest.mark.parametrize("extension", [True, False])
def test_short_and_long_programs_are_signed_alike(monkeypatch, extension):
    """A short program is signed in a plain loop, a long one with array work (its objects
    found in one pass by the extension, or by sorting their ids without it): the same
    distinct signatures, pc indices and addresses every way."""
    from isa import Program, build
    from mapper.emit import hbm, sram
    from simulator.engine import dedupe

    body = []
    for i in range(40):
        body += [build("sem.wait", "dma", i % 3),
                 build("dma.load", sram(64 * (i % 2)), hbm(4096 * i), DType.BF16, 8, 64),
                 build("loop", 2, 4 * i + 5, "a0", 128) if i % 7 == 0 else build("nop")]
    prog = Program(tuple(body) + (build("halt"),))
    small = dedupe._signature_small(prog.instructions)
    monkeypatch.setattr(dedupe, "SMALL", 0)
    if not extension:
        monkeypatch.setattr(dedupe, "_fastcore", None)
    elif dedupe._fastcore is None:
        pytest.skip("the extension is not built")
    large = dedupe._signature(prog)
    assert [s for s, _ in small.distinct] == [s for s, _ in large.distinct]
    assert [i for _, i in small.distinct] == [i for _, i in large.distinct]
    assert small.per_pc.tolist() == large.per_pc.tolist()
    assert small.addresses.tolist() == large.addresses.tolist()
    assert small.starts.tolist() == large.starts.tolist()
