"""Multistage GEMM load pipelines, loops in row-wise and attention kernels, row tiles sized
for the cores and the SRAM: same numbers as numpy, small programs, no races."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardware.chip import DmaConfig
from isa import DataSegment, DType, Program, Space, build
from isa import numerics as nx
from mapper import reference as ref
from mapper.emit import resolve, steps
from mapper.graph import Graph, Kind, Tensor
from mapper.kernels.attention import Attention, attention_programs
from mapper.kernels.gemm import Tiling, plan_sram
from mapper.kernels.rowwise import RowKernel, View, add_op, row_programs
from mapper.lower import lower
from mapper.lowerings import _fit
from mapper.lowerings import gemm_of as _gemm
from simulator.run import simulate
from tests.simulator.conftest import make_chip
from tests.simulator.test_dedupe import gemm_graph

H = Space.HBM


def programs(per_core: list[list]) -> dict[int, Program]:
    return {c: Program(tuple(resolve(items)) + (build("halt"),))
            for c, items in enumerate(per_core)}


def read(result, addr: int, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return nx.from_bytes(result.read(H, addr, DType.BF16.nbytes(n)), DType.BF16, n).reshape(
        shape)


def segment(addr: int, x: np.ndarray) -> DataSegment:
    return DataSegment(H, addr, nx.to_bytes(x, DType.BF16).tobytes())


# ---- emit.steps with a group ----------------------------------------------------------------

def test_steps_loop_whole_groups_and_unroll_the_rest():
    def step(k, in_loop):
        return [build("sem.signal", "dma", k % 3 if in_loop else 7)]

    out = steps(8, step, (("a0", 64),), 0, group=3)
    # 8 steps in groups of 3: a loop of 2 iterations over 3 steps (k % 3 picks the buffer),
    # then steps 6 and 7 with absolute addresses
    assert out[0] == ("loop", 2, 3, (("a0", 64),))
    assert [i["sem"] for i in out[1:4]] == [0, 1, 2]
    assert len(out) == 1 + 3 + 2
    # one group is not worth a loop
    assert not any(isinstance(i, tuple) for i in steps(4, step, (), 0, group=3))


# ---- multistage GEMM ------------------------------------------------------------------------

def gemm_run(monkeypatch, tiling: Tiling, m: int, k: int, n: int, chip, functional=True):
    import mapper.lower as low

    monkeypatch.setattr(low, "_choose_tilings", lambda *a: {"lin": tiling})
    rng = np.random.default_rng(1)
    x = ref.bf16(rng.standard_normal((m, k)))
    w = ref.bf16(rng.standard_normal((k, n)))
    low_ = lower(gemm_graph(m, k, n), chip, weights={"w": w} if functional else None,
                 inputs={"x": x})
    return low_, simulate(low_.programs, chip, functional=functional), x, w


@pytest.mark.parametrize("stages", [3, 4])
def test_multistage_gemm_matches_numpy(monkeypatch, stages):
    # K = 264 in 16-steps: 17 steps, the last ragged (8); 3x3 output tiles on 2 cores, so
    # the counting FREE/FULL semaphores carry over from one tile to the next
    m, k, n = 48, 264, 48
    chip = make_chip(cores=2)
    low_, r, x, w = gemm_run(monkeypatch, Tiling(16, 16, 16, stages=stages), m, k, n, chip)
    assert r.races == ()
    got = read(r, low_.addresses["y"], (m, n))
    want = ref.bf16(x @ w)
    np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=2 ** -7 * np.abs(want).max())
    # the A/W buffers: one per stage; the K loop steps ``stages`` tiles per iteration
    g = _gemm(gemm_graph(m, k, n), gemm_graph(m, k, n).nodes[0], {}, Tiling(16, 16, 16))
    assert len(plan_sram(g, Tiling(16, 16, 16, stages=stages)).a) == stages
    loops = [i for i in low_.programs[0].instructions if i.mnemonic == "loop"]
    assert loops and 16 * 2 * stages in {i["inc0"] for i in loops}  # a0 += stages * 32 B


def test_split_k_gemm_matches_numpy_and_fills_idle_cores(monkeypatch):
    # 2 output tiles (N ragged) on 8 cores, K = 1040 in 16-steps (65, the last ragged):
    # split-K runs 4 parts of 16-17 steps, each tile's partial sums in fp32 scratch, then
    # sums them row-wise after a chip-wide sync
    import mapper.kernels.gemm as gk
    from mapper.kernels.gemm import k_splits

    m, k, n, t = 16, 1040, 24, Tiling(16, 16, 16)
    chip = make_chip(cores=8)
    g = _gemm(gemm_graph(m, k, n), gemm_graph(m, k, n).nodes[0], {}, t)
    assert k_splits(g, t, chip.cores) == 4
    low_, r, x, w = gemm_run(monkeypatch, t, m, k, n, chip)
    assert r.races == ()
    got = read(r, low_.addresses["y"], (m, n))
    want = ref.bf16(x @ w)
    np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=2 ** -7 * np.abs(want).max())
    split = gemm_run(monkeypatch, t, m, k, n, chip, functional=False)[1].time_s
    monkeypatch.setattr(gk, "SPLIT_MAX", 1)
    whole = gemm_run(monkeypatch, t, m, k, n, chip, functional=False)[1].time_s
    assert split < 0.5 * whole


def test_split_k_estimate_counts_every_parts_loads():
    """The tiling estimate's L2 rule sees what every part of a split-K GEMM loads (it saw
    one part's, so every load counted as a miss and the split tiling was estimated at
    2.6x its simulated time and never confirmed): A and W come from HBM once, the parts'
    repeated loads of a wave's rows and columns from the L2."""
    from hardware.chips import load_chip
    from mapper.kernels.gemm import k_splits
    from mapper.tiling import estimate

    chip = load_chip("h200")
    t = Tiling(128, 64, 128, 4)
    g = _gemm(gemm_graph(512, 65536, 512), gemm_graph(512, 65536, 512).nodes[0], {}, t)
    parts = k_splits(g, t, chip.cores)
    assert parts == 8
    unique = 2 * (512 * 65536 + 65536 * 512)  # bf16 A and W
    loaded = 4 * 4 * parts * (65536 // 64 // parts) * 2 * (128 * 64 + 64 * 128)
    hbm = chip.hbm_effective_bw
    assert unique / hbm < estimate(g, t, chip) < 0.5 * loaded / hbm


def test_deeper_pipelines_hide_a_long_dma_latency(monkeypatch):
    # 2 us of DMA latency against 16x16x16 steps of ~100 ns: with 2 stages the array waits
    # for every other load's latency; 4 stages keep more loads in flight
    chip = make_chip(cores=1)
    slow = dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, dma=DmaConfig(latency=2e-6, burst_bytes=64)))
    times = {s: gemm_run(monkeypatch, Tiling(16, 16, 16, stages=s), 16, 512, 16, slow,
                         functional=False)[1].time_s for s in (2, 4)}
    assert times[4] < 0.75 * times[2]


def test_stages_below_two_still_double_buffer():
    g = _gemm(gemm_graph(16, 64, 16), gemm_graph(16, 64, 16).nodes[0], {}, Tiling(16, 16, 16))
    assert len(plan_sram(g, Tiling(16, 16, 16, stages=1)).a) == 2


# ---- row-wise kernels loop --------------------------------------------------------------------

def add_graph(rows: int, cols: int) -> Graph:
    g = Graph()
    for name in ("x", "y"):
        g.add(Tensor(name, (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("z", (rows, cols), DType.BF16))
    g.op("add", "add", ["x", "y"], ["z"])
    return g


def test_a_rowwise_kernel_of_many_rows_is_a_small_looping_program():
    rows, cols = 4096, 64
    chip = make_chip(cores=2)
    rng = np.random.default_rng(2)
    x, y = (ref.bf16(rng.standard_normal((rows, cols))) for _ in range(2))
    low_ = lower(add_graph(rows, cols), chip, weights={}, inputs={"x": x, "y": y})
    r = simulate(low_.programs, chip, functional=True)
    assert r.races == ()
    np.testing.assert_array_equal(read(r, low_.addresses["z"], (rows, cols)), ref.bf16(x + y))
    # 4096 rows / 128 per tile = 32 tiles, 16 per core: each tile executes 2 loads, a store,
    # an add and 8 semaphore ops; the program holds only a few tiles' worth
    static = sum(len(p.instructions) for p in low_.programs.values())
    assert r.instructions >= 32 * 12
    assert static * 3 < r.instructions
    # four times the rows: four times the work, the same program size
    big = lower(add_graph(4 * rows, cols), chip)
    assert sum(len(p.instructions) for p in big.programs.values()) == static
    assert simulate(big.programs, chip).instructions > 4 * (r.instructions - 20)


@pytest.mark.parametrize("rows,cores", [(4096, 2), (1000, 3), (37, 4), (5, 8)])
def test_row_kernels_stay_correct_for_ragged_tiles(rows, cores):
    cols = 32
    chip = make_chip(cores=cores)
    rng = np.random.default_rng(rows)
    x, y = (ref.bf16(rng.standard_normal((rows, cols))) for _ in range(2))
    low_ = lower(add_graph(rows, cols), chip, weights={}, inputs={"x": x, "y": y})
    r = simulate(low_.programs, chip, functional=True)
    assert r.races == ()
    np.testing.assert_array_equal(read(r, low_.addresses["z"], (rows, cols)), ref.bf16(x + y))


def test_row_tiles_give_every_core_a_few_tiles_and_fit_the_sram():
    def kern(rows, cols):
        return RowKernel(rows, (View(0, cols, DType.BF16), View(0, cols, DType.BF16)),
                         View(0, cols, DType.BF16), add_op(cols, DType.BF16), (), 128)

    chip = make_chip(cores=4)
    # 64 rows on 4 cores, 4 tiles each: 4 rows a tile; 100 rows: 7 -> the next power, 8
    assert _fit(kern(64, 64), chip).rows_per_tile == 4
    assert _fit(kern(100, 64), chip).rows_per_tile == 8
    assert _fit(kern(1 << 16, 64), chip).rows_per_tile == 128  # the cap
    # 8192 bf16 columns: 16 KiB a row, 6 buffers a row of tile (2 x (2 in + 1 out)) -> 96 KiB
    # per row; the 1 MiB SRAM holds 8 rows of tile (768 KiB), not 16
    assert _fit(kern(1 << 16, 8192), chip).rows_per_tile == 8
    progs = row_programs(_fit(kern(64, 64), chip), 4)
    assert len(progs) == 4


# ---- attention loops --------------------------------------------------------------------------

def test_attention_prefill_with_many_kv_tiles_loops_and_matches_numpy():
    # one sequence: 32 new tokens after 224 cached, 2 query heads sharing 1 KV head (GQA),
    # hd 16, 16x16 tiles: a query tile attends 240 or 256 keys = 15 or 16 KV tiles
    b, heads, kvh, hd, sq, skv = 1, 2, 1, 16, 32, 256
    past = skv - sq
    q_addr, k_addr, v_addr, o_addr = 0, 0x10000, 0x20000, 0x30000
    a = Attention(b, heads, kvh, hd, sq, skv, past, True, q_addr, heads * hd, k_addr, v_addr,
                  skv, o_addr, DType.BF16, tq=16, tkv=16)
    rng = np.random.default_rng(4)
    q = ref.bf16(rng.standard_normal((sq, heads * hd)))
    k = ref.bf16(rng.standard_normal((kvh, skv, hd)))
    v = ref.bf16(rng.standard_normal((kvh, skv, hd)))
    progs = programs(attention_programs(a, 2))
    progs[0] = dataclasses.replace(progs[0], data=(segment(q_addr, q), segment(k_addr, k),
                                                   segment(v_addr, v)))
    r = simulate(progs, make_chip(cores=2), functional=True)
    assert r.races == ()
    got = read(r, o_addr, (sq, heads, hd))
    want = ref.attention(q.reshape(sq, heads, hd), k.transpose(1, 0, 2), v.transpose(1, 0, 2),
                         True, np.arange(past, skv), np.arange(skv))
    np.testing.assert_allclose(got, want, atol=0.03)
    # the K/V stream runs in loops: the program is much smaller than what it executes
    assert all(any(i.mnemonic == "loop" for i in p.instructions) for p in progs.values())
    static = sum(len(p.instructions) for p in progs.values())
    assert static * 3 < r.instructions


def test_causal_items_are_dealt_so_no_core_gets_all_the_long_tiles():
    # 8 query tiles per head (item k of a head attends to k+1 key tiles); 132 cores: plain
    # round-robin gives core 3 tiles 3 and 7 of every head it sees (cost 4 + 8), core 0 tiles
    # 0 and 4 (1 + 5): twice the work. The snake pairs tile q with tile 7 - q.
    from mapper.kernels.attention import Attention, deal, items

    a = Attention(batch=8, heads=32, kv_heads=32, hd=128, sq=1024, skv=1024, q_pos0=0,
                  causal=True, q=0, ldq=3 * 32 * 128, k_cache=0, v_cache=0, max_ctx=1024,
                  out=0, tq=128, tkv=128)
    work = items(a)
    load = [sum(it.n_kv for it in mine) for mine in deal(work, 132)]
    round_robin = [sum(it.n_kv for it in work[c::132]) for c in range(132)]
    assert sum(load) == sum(round_robin) == sum(it.n_kv for it in work)
    assert max(round_robin) / min(round_robin) > 1.8
    assert max(load) / min(load) < 1.2


def decode_matches_numpy(b: int, hq: int, hkv: int, skv: int, d: int, causal: bool, chip,  # noqa: ANN001
                         seed: int):  # noqa: ANN201
    """One decode step of ``b`` sequences, functional, against numpy; the lowered graph."""
    from experiments.measured_work import attention_graph

    rng = np.random.default_rng(seed)
    qkv = ref.bf16(rng.standard_normal((b, (hq + 2 * hkv) * d)))
    kc, vc = (ref.bf16(rng.standard_normal((b, hkv, skv, d))) for _ in range(2))
    low_ = lower(attention_graph(b, hq, hkv, 1, skv, d, causal), chip, weights={},
                 inputs={"qkv": qkv, "kc": kc, "vc": vc})
    r = simulate(low_.programs, chip, functional=True)
    assert r.races == ()
    got = read(r, low_.addresses["o"], (b, hq * d))
    for s in range(b):
        want = ref.attention(qkv[s, :hq * d].reshape(1, hq, d), kc[s].transpose(1, 0, 2),
                             vc[s].transpose(1, 0, 2), False, None, None).reshape(hq * d)
        np.testing.assert_allclose(got[s], want, rtol=2 ** -6, atol=2 ** -6)
    return low_


@pytest.mark.parametrize("causal", [False, True])
def test_split_kv_decode_matches_numpy(causal):
    # 2 sequences x 1 KV head (GQA: 2 query heads each) = 2 work items on 8 cores, 1100
    # cached keys in 128-key tiles (9, the last ragged): flash-decoding splits each item's
    # keys in 2 parts, writes their partial outputs, and combines them after a sync. A
    # model's decode step is causal: its one query is the last position, so it hides
    # nothing and splits the same
    from mapper.kernels.attention import kv_parts

    b, hq, hkv, skv, d = 2, 2, 1, 1100, 16
    chip = make_chip(cores=8)
    low_ = decode_matches_numpy(b, hq, hkv, skv, d, causal, chip, seed=5)
    a_items = b * hkv
    from mapper.kernels.attention import Attention
    a = Attention(b, hq, hkv, d, 1, skv, skv - 1, causal, 0, 0, 0, 0, skv, 0, tq=1, tkv=128)
    assert kv_parts(a, a_items, chip.cores) == 2
    # two phases: the parts, a chip-wide sync, the combine (then the kernel's own sync)
    syncs = [i for i in low_.programs[0].instructions if i.mnemonic == "net.barrier"]
    assert len(syncs) == 2


def test_a_norm_whose_row_fits_only_once_runs_single_buffered_and_correct():
    """One row of x, its output and the norm weights fit the SRAM once but not twice: the
    kernel keeps one buffer set (no overlap) instead of refusing the row."""
    from mapper.kernels.rowwise import norm_op, sram_bytes

    rows, cols = 12, 512
    g = Graph()
    g.add(Tensor("x", (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("w", (cols,), DType.FP32, Kind.WEIGHT))
    g.add(Tensor("y", (rows, cols), DType.BF16))
    g.op("norm", "n", ["x", "w"], ["y"], kind="rmsnorm", eps=1e-6)
    one = RowKernel(1, (View(0, cols, DType.BF16),), View(0, cols, DType.BF16),
                    norm_op("rmsnorm", cols, DType.BF16, DType.BF16, 1e-6), rows_per_tile=1)
    from mapper.kernels.rowwise import Param

    one = dataclasses.replace(one, params=(Param(0, cols),))
    cap = (sram_bytes(dataclasses.replace(one, buffers=1)) +
           sram_bytes(one)) // 2  # between one buffer set and two
    chip = make_chip(cores=2)
    chip = dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, sram=dataclasses.replace(chip.core.sram, capacity=cap)))
    rng = np.random.default_rng(0)
    x = ref.bf16(rng.standard_normal((rows, cols)))
    w = 1 + 0.1 * rng.standard_normal(cols)
    low_ = lower(g, chip, weights={"w": w}, inputs={"x": x})
    r = simulate(low_.programs, chip, functional=True)
    assert r.races == ()
    want = ref.bf16(ref.rmsnorm(x, w, 1e-6))
    np.testing.assert_allclose(read(r, low_.addresses["y"], (rows, cols)), want, rtol=2 ** -7,
                               atol=2 ** -7 * np.abs(want).max())


def test_decode_items_queue_on_a_core_with_two_q_buffers_and_match_numpy():
    """Decode keeps two Q buffers (``resident_q``): a core's next item loads its Q and first
    K/V tile while this one finishes, as a GPU's several small decode blocks an SM do; the
    results stay exact, and a core with several items hides part of each new item's
    round trip behind the last one's tiles."""
    import dataclasses as dc

    from experiments.measured_work import attention_graph
    from mapper.kernels.attention import Attention, resident_q

    b, hq, hkv, skv, d = 6, 2, 1, 300, 16  # 6 items on 2 cores: 3 each, no split
    chip = make_chip(cores=2)
    decode_matches_numpy(b, hq, hkv, skv, d, True, chip, seed=7)
    a = Attention(b, hq, hkv, d, 1, skv, skv - 1, True, 0, 0, 0, 0, skv, 0, tq=1, tkv=64)
    assert resident_q(a) == 2 and resident_q(dc.replace(a, sq=64, q_pos0=skv - 64)) == 1
    # a slow HBM round trip (5 us): with one Q buffer each of a core's two later items waits
    # it out before its first tile; with two, the loads start under the previous item
    slow = dc.replace(chip, core=dc.replace(chip.core, dma=dc.replace(chip.core.dma,
                                                                      latency=5e-6)))
    import mapper.kernels.attention as att
    two = simulate(lower(attention_graph(b, hq, hkv, 1, skv, d, True), slow).programs,
                   slow).time_s
    original = att.resident_q
    att.resident_q = lambda a: 1
    try:
        one = simulate(lower(attention_graph(b, hq, hkv, 1, skv, d, True), slow).programs,
                       slow).time_s
    finally:
        att.resident_q = original
    assert one - two > 4e-6
