"""The optimizer and loss kernels of a training step compute what numpy computes."""

from __future__ import annotations

import numpy as np
import pytest

from isa import DataSegment, DType, Program, Space, build
from isa import numerics as nx
from mapper.emit import resolve
from mapper.kernels.adamw import AdamW, adamw_programs
from mapper.kernels.cross_entropy import CrossEntropy, cross_entropy_programs, fit
from simulator.run import simulate
from tests.simulator.conftest import make_chip

H = Space.HBM


def _programs(per_core, segments=()):
    return {c: Program(tuple(resolve(items)) + (build("halt"),), tuple(segments) if c == 0
                       else ()) for c, items in enumerate(per_core)}


def _f32(r, addr, n):
    return nx.from_bytes(r.read(H, addr, 4 * n), DType.FP32, n)


@pytest.mark.parametrize("n", [4096 * 3 + 256, 1000, 4096 * 11 + 100])
def test_adamw_kernel_matches_numpy(n):
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(np.float32)
    base = [i * 4 * n for i in range(4)]
    const = 4 * 4 * n
    a = AdamW(n, *base, const=const, lr=1e-2, step=3, block=4096)
    segs = [DataSegment(H, at, nx.to_bytes(x, DType.FP32).tobytes())
            for at, x in zip(base + [const], (p, g, m, v, np.array([a.eps ** 2])))]
    chip = make_chip(cores=2)
    r = simulate(_programs(adamw_programs(a, chip.cores), segs), chip, functional=True)
    assert r.races == ()
    b1, b2 = a.betas
    m2 = b1 * m + (1 - b1) * g
    v2 = b2 * v + (1 - b2) * g * g
    upd = (a.lr / (1 - b1 ** 3)) * m2 / np.sqrt(v2 / (1 - b2 ** 3) + a.eps ** 2)
    p2 = p * (1 - a.lr * a.weight_decay) - upd
    np.testing.assert_allclose(_f32(r, base[0], n), p2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_f32(r, base[2], n), m2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_f32(r, base[3], n), v2, rtol=1e-6, atol=1e-7)


def test_cross_entropy_gradient_is_the_softmax_over_a_wide_vocabulary():
    rows, vocab = 20, 1000  # ragged row tiles and a ragged last column block
    rng = np.random.default_rng(1)
    x = nx.round_to(3 * rng.standard_normal((rows, vocab)), DType.BF16)
    chip = make_chip(cores=3)
    c = fit(CrossEntropy(rows, vocab, 0, 4 * rows * vocab, rows_per_tile=8, block=128),
            chip.core.sram.capacity)
    seg = DataSegment(H, 0, nx.to_bytes(x, DType.BF16).tobytes())
    r = simulate(_programs(cross_entropy_programs(c, chip.cores), [seg]), chip, functional=True)
    assert r.races == ()
    got = nx.from_bytes(r.read(H, c.grad, 2 * rows * vocab), DType.BF16, rows * vocab)
    e = np.exp(x - x.max(1, keepdims=True))
    want = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(got.reshape(rows, vocab), want, rtol=2 ** -7, atol=1e-6)
