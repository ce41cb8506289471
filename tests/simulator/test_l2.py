"""The L2 reuse model against hand-counted blocks, and its effect on a simulated run.

Chip: conftest.py's (1 GHz, 100 GB/s HBM, DMA latency 100 ns, 64 B bursts); a 64x64 bf16
tile is 8 KiB, one contiguous block.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.chip import L2Config
from isa import DType, MemRef, Program, Space, build
from simulator.memory.l2 import hit_fraction
from simulator.run import simulate
from tests.simulator.conftest import make_chip
from tests.simulator.programs import loop, program

S, H = Space.SRAM, Space.HBM
TILE = 64 * 64 * 2  # bytes of a 64x64 bf16 tile
L2_BW = 1000e9  # 1000 B/ns: ten times HBM


def load(src: int = 0, rows: int = 64, cols: int = 64, reg=None, **kw):
    return build("dma.load", MemRef(S, 0), MemRef(H, src, reg), DType.BF16, rows, cols, **kw)


def prog(*ins) -> Program:
    return Program(tuple(ins))


def l2_chip(capacity: int, cores: int = 1, bandwidth: float = L2_BW):
    return make_chip(cores=cores, l2=L2Config(capacity, bandwidth))


def test_no_l2_serves_nothing():
    p = prog(load(), load())
    assert hit_fraction([p, p], make_chip(cores=2)) == 0.0  # default L2Config: capacity 0
    assert hit_fraction([p, p], l2_chip(0, 2)) == 0.0
    assert hit_fraction([p, p], l2_chip(1 << 20, 2, bandwidth=0.0)) == 0.0


def test_two_cores_loading_the_same_block_in_one_window_hit_half():
    # window 0: core 0 misses 8 KiB, core 1 finds it resident: 8 KiB hit of 16 KiB loaded
    p = prog(load())
    assert hit_fraction([p, p], l2_chip(1 << 20, 2)) == pytest.approx(0.5)


def test_different_blocks_never_hit():
    assert hit_fraction([prog(load(0)), prog(load(TILE))], l2_chip(1 << 20, 2)) == 0.0


def test_a_re_read_after_more_than_capacity_bytes_of_other_blocks_misses():
    p = prog(load(0), load(TILE), load(2 * TILE), load(0))
    # capacity 2 tiles: loading the third evicts block 0 (least recent), so its re-read misses
    assert hit_fraction([p], l2_chip(2 * TILE)) == 0.0
    # capacity 3 tiles: block 0 is still resident: 1 tile hit of 4 loaded
    assert hit_fraction([p], l2_chip(3 * TILE)) == pytest.approx(0.25)


def test_a_touch_refreshes_a_block_in_the_lru():
    # 0, 1, 0 (touch), 2 -> evicts 1, not 0; then 0 hits: hits = 2 tiles of 5
    p = prog(load(0), load(TILE), load(0), load(2 * TILE), load(0))
    assert hit_fraction([p], l2_chip(2 * TILE)) == pytest.approx(2 / 5)


def test_a_longer_run_from_the_same_start_misses_only_the_extra_bytes():
    # 4 KiB from 0, then 8 KiB from 0: the second misses 4 KiB and hits 4 KiB of 12 KiB
    p = prog(load(rows=32), load(rows=64))
    assert hit_fraction([p], l2_chip(1 << 20)) == pytest.approx(4096 / (4096 + 8192))
    # a shorter run of resident data hits entirely: 8 KiB miss, then 4 KiB hit
    p = prog(load(rows=64), load(rows=32))
    assert hit_fraction([p], l2_chip(1 << 20)) == pytest.approx(4096 / (4096 + 8192))


def test_a_load_re_read_by_its_loop_hits_after_the_first_trip():
    # a loop of 4 re-reading one tile (no register): one block of 8 KiB span moving 32 KiB
    p = program([loop(4, [load()])])
    assert hit_fraction([p], l2_chip(1 << 20)) == pytest.approx(3 / 4)
    # stepping the source by a tile each trip: 32 KiB span, all of it fetched once
    p = program([loop(4, [load(reg=0)], "a0", TILE)])
    assert hit_fraction([p], l2_chip(1 << 20)) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=12), st.integers(1, 4),
       st.integers(0, 10))
def test_hit_fraction_is_a_fraction_and_grows_with_capacity(blocks, cores, tiles):
    p = prog(*[load(b * TILE) for b in blocks])
    small = hit_fraction([p] * cores, l2_chip(tiles * TILE, cores))
    big = hit_fraction([p] * cores, l2_chip((tiles + 1) * TILE, cores))
    assert 0.0 <= small <= big <= 1.0
    # with room for every block, each distinct block misses exactly once
    whole = hit_fraction([p] * cores, l2_chip(8 * TILE, cores))
    assert whole == pytest.approx(1 - len(set(blocks)) / (len(blocks) * cores))


def test_a_shared_tile_moves_half_its_bytes_from_l2_in_a_run():
    chip = l2_chip(1 << 20, 2)
    p = prog(load())
    plain = simulate({0: p, 1: p}, make_chip(cores=2))
    r = simulate({0: p, 1: p}, chip)
    # h = 0.5: of 16 KiB loaded, 8 KiB from HBM and 8 KiB from L2
    assert plain.bytes["hbm_read"] == 2 * TILE and plain.bytes["l2_read"] == 0
    assert r.bytes["hbm_read"] == pytest.approx(TILE)
    assert r.bytes["l2_read"] == pytest.approx(TILE)
    assert r.energy_j["l2"] == pytest.approx(TILE * 0.5e-12)  # 0.5 pJ/B
    assert r.energy_j["hbm"] == pytest.approx(TILE * 5e-12)  # half of plain's
    # time: both halves run concurrently; HBM carries 2 x 4 KiB at 100 B/ns (81.92 ns), the
    # L2 2 x 4 KiB at 1000 B/ns (8.192 ns); plus the 100 ns latency tail
    assert plain.time_s * 1e9 == pytest.approx(100 + 2 * TILE / 100)
    assert r.time_s * 1e9 == pytest.approx(100 + TILE / 100)


def test_identical_cores_shortcut_keeps_the_l2_split():
    chip = l2_chip(1 << 20, 4)
    p = prog(load(), load(TILE))
    fast = simulate({c: p for c in range(4)}, chip, dedupe=True)
    full = simulate({c: p for c in range(4)}, chip, dedupe=False)
    # each block: one miss, three hits -> h = 3/4, computed before the cores are grouped
    assert full.bytes["l2_read"] == pytest.approx(0.75 * 8 * TILE)
    assert fast.bytes == pytest.approx(full.bytes)
    assert fast.time_s == pytest.approx(full.time_s)


def test_stores_stay_on_hbm():
    chip = l2_chip(1 << 20, 2)
    store = build("dma.store", MemRef(H, 0), MemRef(S, 0), DType.BF16, 64, 64)
    r = simulate({0: prog(load(), store), 1: prog(load(), store)}, dataclasses.replace(chip))
    assert r.bytes["hbm_write"] == 2 * TILE and r.bytes["l2_read"] == pytest.approx(TILE)


def test_a_block_larger_than_the_l2_is_not_served_by_it():
    # an 8 KiB tile read twice through a 4 KiB L2: at most 4 KiB of the re-read can be
    # resident, so at most 4 KiB of the 16 KiB loaded may hit
    p = prog(load(), load())
    assert hit_fraction([p], l2_chip(TILE // 2)) * 2 * TILE <= TILE // 2


def test_a_loop_re_reading_a_tile_larger_than_the_l2_gets_at_most_capacity_hits():
    # 4 trips over one 8 KiB tile with a 4 KiB L2: each re-read can find at most 4 KiB
    # resident, 3 x 4 KiB of 32 KiB
    p = program([loop(4, [load()])])
    assert hit_fraction([p], l2_chip(TILE // 2)) * 4 * TILE <= 3 * TILE // 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12), st.integers(0, 30)),
                         max_size=40), min_size=1, max_size=5),
       st.integers(1, 200), st.booleans())
def test_the_extensions_replay_is_the_python_one(cores, capacity, floats):
    """The LRU replay in C (``_fastcore.l2_replay``) gives the Python loop's hits and
    bytes, to the bit: evictions, refreshes, longer runs from one start, re-reads."""
    import numpy as np

    from simulator.memory import l2

    if l2._fastcore is None:
        pytest.skip("the extension is not built")
    blocks = [b for core in cores for b in core]
    lo = np.array([4 * s for s, _, _ in blocks], dtype=np.int64)
    hi = lo + np.array([4 * n for _, n, _ in blocks], dtype=np.int64)
    moved = np.array([4 * n + extra for _, n, extra in blocks], dtype=np.int64)
    if floats:
        moved = moved * 0.75
    cut = np.cumsum([0] + [len(core) for core in cores]).astype(np.int64)
    want = l2._replay(lo, hi, moved, cut, capacity)
    got = l2._fastcore.l2_replay(lo, hi, moved.astype(np.float64), cut, capacity)
    assert got == want
