"""Pipeline bubbles come out of the simulated schedule and match the textbook formulas on
uniform stages; transfers and uneven stages only lengthen them."""

from __future__ import annotations

import pytest

from experiments.train.schedule import order, simulate_pipeline


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(4, 8), (4, 4), (8, 16), (2, 1)])
def test_gpipe_and_1f1b_take_m_plus_p_minus_1_stage_times(schedule, p, m):
    f, b = 1.0, 2.0
    t = simulate_pipeline(schedule, p, m, [f] * p, [b] * p)
    assert t.step_s == pytest.approx((m + p - 1) * (f + b))
    assert t.bubble_s == pytest.approx((p - 1) * (f + b))


@pytest.mark.parametrize("p,m,v", [(4, 8, 2), (4, 16, 4), (2, 4, 2), (8, 16, 2)])
def test_interleaved_divides_the_bubble_by_the_virtual_stages(p, m, v):
    f, b = 1.0, 2.0  # per virtual stage: a device holds v of them
    t = simulate_pipeline("interleaved", p, m, [f] * (p * v), [b] * (p * v), v=v)
    assert t.bubble_s == pytest.approx((p - 1) * (f + b))
    assert t.step_s == pytest.approx(m * v * (f + b) + (p - 1) * (f + b))


def test_1f1b_keeps_at_most_p_minus_s_micro_batches_in_flight():
    p, m = 4, 12
    for s in range(p):
        live = peak = 0
        for op in order("1f1b", p, m, 1, s):
            live += 1 if op.kind == "F" else -1
            peak = max(peak, live)
        assert peak == p - s  # GPipe would hold all m


def test_transfers_and_a_slow_stage_lengthen_the_step():
    base = simulate_pipeline("1f1b", 4, 8, [1.0] * 4, [2.0] * 4).step_s
    assert simulate_pipeline("1f1b", 4, 8, [1.0] * 4, [2.0] * 4, p2p_s=0.1).step_s > base
    slow = simulate_pipeline("1f1b", 4, 8, [1.0, 1.0, 1.5, 1.0], [2.0, 2.0, 3.0, 2.0]).step_s
    assert slow >= 8 * 4.5  # the slow stage runs every micro-batch


def test_interleaved_needs_whole_groups_of_micro_batches():
    with pytest.raises(ValueError, match="multiple"):
        simulate_pipeline("interleaved", 4, 6, [1.0] * 8, [1.0] * 8, v=2)
