"""PyTorch's multi-tensor optimizer kernels: the launches PyTorch makes, and the arithmetic
of the fused and foreach AdamW against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from isa import DataSegment, DType, Program, Space, build
from isa import numerics as nx
from mapper.emit import resolve
from mapper.kernels.adamw import AdamW
from mapper.kernels.multi_tensor import (
    CHUNK,
    MAX_BLOCKS,
    core_programs,
    foreach_adamw,
    fused_adamw,
    launches,
)
from mapper.lower import sync
from simulator.run import simulate
from tests.simulator.conftest import make_chip

H = Space.HBM


def test_launches_cut_at_the_block_and_tensor_limits():
    big = launches([16 * 2 ** 20] * 5, 4)  # 1,280 chunks of a 4-list kernel
    assert [len(k) for k in big] == [MAX_BLOCKS] * 4
    assert big[1][0] == (1, 64 * CHUNK, CHUNK)  # the second launch starts inside tensor 1
    small = launches([10] * 40, 4)  # 36 tensors at most per 4-list launch
    assert [len(k) for k in small] == [36, 4]
    assert [len(k) for k in launches([10] * 40, 1)] == [40]
    ragged = launches([CHUNK + 5], 2)
    assert ragged == [[(0, 0, CHUNK), (0, CHUNK, 5)]]


def _run(ops, sizes, cores, arrays):
    """Every op as its launches, one after another, in one functional simulation."""
    n = sum(sizes)
    names = ("p", "g", "m", "v", "d")
    bases = {k: 4 * i * n for i, k in enumerate(names)}
    offsets = [sum(sizes[:t]) for t in range(len(sizes))]
    items = {c: [] for c in range(cores)}
    for op in ops:
        for chunks in launches(sizes, op.depth):
            progs = core_programs(op, chunks, cores, bases, offsets)
            for c in range(cores):
                items[c] += (progs[c] if c < len(progs) else []) + list(sync(0))
    segs = tuple(DataSegment(H, bases[k], nx.to_bytes(arrays[k], DType.FP32).tobytes())
                 for k in arrays)
    chip = make_chip(cores=cores)
    progs = {c: Program(tuple(resolve(items[c])) + (build("halt"),), segs if c == 0 else ())
             for c in range(cores)}
    r = simulate(progs, chip, functional=True)
    assert r.races == ()
    return {k: nx.from_bytes(r.read(H, bases[k], 4 * n), DType.FP32, n) for k in ("p", "m", "v")}


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_adamw_as_pytorch_runs_it_matches_numpy(impl):
    sizes = [CHUNK + 3000, 2500]  # a ragged chunk, a ragged step, two blocks on one core
    n = sum(sizes)
    rng = np.random.default_rng(2)
    p, g, m = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(np.float32)
    a = AdamW(n, 0, 0, 0, 0, lr=1e-2, step=3)
    ops = [fused_adamw(a)] if impl == "fused" else foreach_adamw(a)
    got = _run(ops, sizes, 2, {"p": p, "g": g, "m": m, "v": v})
    b1, b2 = a.betas
    m2 = b1 * m + (1 - b1) * g
    v2 = b2 * v + (1 - b2) * g * g
    if impl == "fused":  # eps inside the root, as Tessera's kernel
        upd = (a.lr / (1 - b1 ** 3)) * m2 / np.sqrt(v2 / (1 - b2 ** 3) + a.eps ** 2)
    else:  # torch: m / (sqrt(v) / sqrt(c2) + eps)
        upd = (a.lr / (1 - b1 ** 3)) * m2 / (np.sqrt(v2) / np.sqrt(1 - b2 ** 3) + a.eps)
    p2 = p * (1 - a.lr * a.weight_decay) - upd
    np.testing.assert_allclose(got["m"], m2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["v"], v2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["p"], p2, rtol=1e-5, atol=1e-6)


def test_each_step_of_a_block_waits_for_its_loads():
    """A block's steps do not overlap: two chunks on one core cost at least 64 round trips
    to memory, and the foreach path (eight kernels, more bytes) costs more than the fused."""
    from experiments.train.costs import pytorch_optimizer_cost

    chip = make_chip(cores=1)
    fused = pytorch_optimizer_cost(chip, [2 * CHUNK], "fused").time_s
    assert fused >= 2 * (CHUNK // 2048) * chip.core.dma.latency
    assert pytorch_optimizer_cost(chip, [2 * CHUNK], "foreach").time_s > fused
