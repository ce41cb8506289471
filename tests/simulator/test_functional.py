"""Functional mode: programs compute what numpy computes, and unsynchronised ones are caught."""

from __future__ import annotations

import numpy as np
import pytest

from isa import DataSegment, DType, MemRef, Program, Space, build
from isa import numerics as nx
from simulator.errors import SimError
from simulator.run import simulate
from tests.simulator.conftest import make_chip
from tests.simulator.programs import tiled_gemm

S, H, A = Space.SRAM, Space.HBM, Space.ACC
RNG = np.random.default_rng(7)


def hbm(addr: int, values: np.ndarray, dt: DType) -> DataSegment:
    return DataSegment(Space.HBM, addr, nx.to_bytes(values, dt).tobytes())


def read(result, addr: int, dt: DType, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return nx.from_bytes(result.read(Space.HBM, addr, dt.nbytes(count)), dt, count).reshape(shape)


def with_data(program: Program, *segments: DataSegment) -> Program:
    return Program(program.instructions, tuple(segments))


@pytest.mark.parametrize("dt", [DType.BF16, DType.INT8])
def test_tiled_gemm_matches_numpy(dt):
    M, K, N, T = 32, 48, 32, 16
    if dt == DType.INT8:
        a = RNG.integers(-128, 128, (M, K))
        b = RNG.integers(-128, 128, (K, N))
    else:
        a = RNG.standard_normal((M, K))
        b = RNG.standard_normal((K, N))
    a_q = nx.from_bytes(nx.to_bytes(a, dt), dt, a.size).reshape(M, K).astype(np.float64)
    b_q = nx.from_bytes(nx.to_bytes(b, dt), dt, b.size).reshape(K, N).astype(np.float64)
    prog = with_data(tiled_gemm(M, K, N, T, dt, 0, 0x10000, 0x20000),
                     hbm(0, a, dt), hbm(0x10000, b, dt))
    r = simulate(prog, make_chip(), functional=True)
    assert r.races == ()
    out = read(r, 0x20000, dt.accumulator, (M, N))
    if dt == DType.INT8:
        np.testing.assert_array_equal(out, (a @ b).astype(np.int64))
    else:
        np.testing.assert_allclose(out, a_q @ b_q, rtol=1e-5, atol=1e-4)


def row_program(mnemonic: str, rows: int, cols: int, extra_mem: int | None = None, **kw):
    ops = [build("dma.load", MemRef(S, 0), MemRef(H, 0), DType.BF16, rows, cols)]
    if extra_mem is not None:
        ops.append(build("dma.load", MemRef(S, 0x8000), MemRef(H, extra_mem), DType.FP32, 1,
                         2 * cols if mnemonic == "v.layernorm" else cols))
    ops += [build("sem.signal", "dma", 0), build("sem.wait", "vec", 0)]
    mems = [MemRef(S, 0x4000), MemRef(S, 0)] + ([MemRef(S, 0x8000)] if extra_mem else [])
    ops += [build(mnemonic, *mems, rows, cols, "fp32", "bf16", **kw),
            build("sem.signal", "vec", 1), build("sem.wait", "dma", 1),
            build("dma.store", MemRef(H, 0x10000), MemRef(S, 0x4000), DType.FP32, rows, cols)]
    return Program(tuple(ops))


def bf16(x: np.ndarray) -> np.ndarray:
    return nx.from_bytes(nx.to_bytes(x, DType.BF16), DType.BF16, x.size).reshape(x.shape)


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("mnemonic, ref", [
    ("v.softmax", lambda x: np.exp(x - x.max(1, keepdims=True))
     / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)),
    ("v.gelu", gelu_tanh),
    ("v.silu", lambda x: x / (1 + np.exp(-x))),
])
def test_row_and_elementwise_ops_match_numpy(mnemonic, ref):
    x = RNG.standard_normal((8, 64)) * 3
    prog = with_data(row_program(mnemonic, 8, 64), hbm(0, x, DType.BF16))
    r = simulate(prog, make_chip(), functional=True)
    np.testing.assert_allclose(read(r, 0x10000, DType.FP32, (8, 64)), ref(bf16(x)),
                               rtol=1e-5, atol=1e-6)


def test_layernorm_and_rmsnorm_match_numpy():
    x = RNG.standard_normal((4, 64)) + 1.5
    gamma, beta = RNG.standard_normal(64), RNG.standard_normal(64)
    xq = bf16(x).astype(np.float64)
    params = np.concatenate([gamma, beta])
    prog = with_data(row_program("v.layernorm", 4, 64, 0x20000, eps=1e-5),
                     hbm(0, x, DType.BF16), hbm(0x20000, params, DType.FP32))
    r = simulate(prog, make_chip(), functional=True)
    mu, var = xq.mean(1, keepdims=True), xq.var(1, keepdims=True)
    ref = (xq - mu) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(read(r, 0x10000, DType.FP32, (4, 64)), ref, rtol=1e-4, atol=1e-4)

    prog = with_data(row_program("v.rmsnorm", 4, 64, 0x20000, eps=1e-6),
                     hbm(0, x, DType.BF16), hbm(0x20000, gamma, DType.FP32))
    r = simulate(prog, make_chip(), functional=True)
    ref = xq / np.sqrt((xq ** 2).mean(1, keepdims=True) + 1e-6) * gamma
    np.testing.assert_allclose(read(r, 0x10000, DType.FP32, (4, 64)), ref, rtol=1e-4, atol=1e-4)


def test_output_is_rounded_to_bf16():
    x = RNG.standard_normal((2, 16))
    prog = row_program("v.relu", 2, 16)
    ins = list(prog.instructions)
    ins[3] = build("v.relu", MemRef(S, 0x4000), MemRef(S, 0), 2, 16, "bf16", "bf16")
    ins[-1] = build("dma.store", MemRef(H, 0x10000), MemRef(S, 0x4000), DType.BF16, 2, 16)
    r = simulate(Program(tuple(ins), (hbm(0, x, DType.BF16),)), make_chip(), functional=True)
    np.testing.assert_array_equal(read(r, 0x10000, DType.BF16, (2, 16)), np.maximum(bf16(x), 0))


def test_missing_semaphore_is_reported_as_a_race():
    prog = Program((
        build("dma.load", MemRef(S, 0), MemRef(H, 0), DType.BF16, 16, 16),
        build("mm", MemRef(A, 0), MemRef(S, 0), MemRef(S, 0x1000), 16, 16, 16, "bf16", "bf16"),
    ))
    r = simulate(prog, make_chip(), functional=True)
    assert len(r.races) == 1
    assert "data race on sram [0x0, 0x200)" in r.races[0]
    assert "pc 0 (dma.load) on dma" in r.races[0] and "pc 1 (mm) on mx" in r.races[0]


def test_semaphore_orders_the_same_accesses():
    prog = Program((
        build("dma.load", MemRef(S, 0), MemRef(H, 0), DType.BF16, 16, 16),
        build("sem.signal", "dma", 0), build("sem.wait", "mx", 0),
        build("mm", MemRef(A, 0), MemRef(S, 0), MemRef(S, 0x1000), 16, 16, 16, "bf16", "bf16"),
    ))
    assert simulate(prog, make_chip(), functional=True).races == ()


def test_race_found_even_when_timing_keeps_accesses_apart():
    # The vector op runs long after the DMA by timing alone, but nothing orders them.
    prog = Program((
        build("v.relu", MemRef(S, 0x4000), MemRef(S, 0x4000), 64, 64, "bf16", "bf16"),
        build("v.relu", MemRef(S, 0x100), MemRef(S, 0x100), 1, 16, "bf16", "bf16"),
        build("dma.load", MemRef(S, 0x100), MemRef(H, 0), DType.BF16, 1, 16),
    ))
    assert len(simulate(prog, make_chip(), functional=True).races) == 1


def test_out_of_range_sram_access_is_an_error():
    prog = Program((build("dma.load", MemRef(S, (1 << 20) - 16), MemRef(H, 0), DType.BF16, 1,
                          16),))
    with pytest.raises(SimError, match=r"operand 'dst' reaches sram \[0xffff0, 0x100010\), "
                                       r"outside its 0x100000 bytes"):
        simulate(prog, make_chip(), functional=True)


def test_functional_memory_is_refused_up_front_when_too_large():
    import dataclasses

    from hardware.chip import MemoryConfig

    chip = make_chip()
    huge = dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, sram=MemoryConfig(capacity=1 << 40, bytes_per_cycle=64)))
    with pytest.raises(SimError, match="exceeds the .* memory limit; raise --memory-limit"):
        simulate(Program((build("nop"),)), huge, functional=True)
