"""The shared bandwidth's fluid model: max-min fair shares under each transfer's cap, checked
against a plain per-transfer water-filling written here, on fixed and on random loads."""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.memory.bandwidth import SharedBandwidth


def _finishes(capacity: float, transfers: list[tuple[float, float, float, int]]
              ) -> list[float]:
    """When each (start, bytes, cap, weight) transfer ends on a ``SharedBandwidth``."""
    env = simpy.Environment()
    bw = SharedBandwidth(env, capacity, "test")
    out = [math.nan] * len(transfers)

    def one(i: int, start: float, nbytes: float, cap: float, weight: int):
        yield env.timeout(start)
        yield bw.transfer(nbytes, cap, weight)
        out[i] = env.now

    for i, t in enumerate(transfers):
        env.process(one(i, *t))
    env.run()
    return out


def _reference(capacity: float, transfers: list[tuple[float, float, float, int]]
               ) -> list[float]:
    """The same loads, each transfer's rate water-filled over every transfer in flight."""
    left = {i: t[1] for i, t in enumerate(transfers)}
    done = [math.nan] * len(transfers)
    now = 0.0
    while left:
        active = [i for i in left if transfers[i][0] <= now + 1e-12]
        rates: dict[int, float] = {}
        room, n = capacity, sum(transfers[i][3] for i in active)
        for i in sorted(active, key=lambda j: transfers[j][2]):
            rates[i] = min(transfers[i][2], room / n)
            room -= rates[i] * transfers[i][3]
            n -= transfers[i][3]
        arrivals = [transfers[i][0] for i in left if transfers[i][0] > now + 1e-12]
        step = min([left[i] / rates[i] for i in active] + [a - now for a in arrivals])
        for i in active:
            left[i] -= rates[i] * step
        now += step
        for i in active:
            if left[i] <= 1e-9 * max(1.0, transfers[i][1]):
                done[i] = now
                del left[i]
    return done


def test_equal_transfers_share_evenly() -> None:
    assert _finishes(10.0, [(0, 100, math.inf, 1), (0, 100, math.inf, 1)]) == \
        pytest.approx([20.0, 20.0])


def test_a_capped_transfer_leaves_its_share_to_the_others() -> None:
    # 10 B/ns: the capped one moves at 2, the others at 4 until it ends at 10 ns, then at 5
    got = _finishes(10.0, [(0, 20, 2.0, 1), (0, 100, math.inf, 1), (0, 100, 8.0, 1)])
    assert got == pytest.approx([10.0, 22.0, 22.0])


def test_a_weighted_transfer_counts_for_its_cores() -> None:
    # one transfer standing for three cores' (60 B each) takes three shares of four: 2 B/ns
    # each until the lone one ends at 10 ns, then 8/3 B/ns each for the 40 B left
    assert _finishes(8.0, [(0, 60, math.inf, 3), (0, 20, math.inf, 1)]) == \
        pytest.approx([25.0, 10.0])


def test_bytes_and_busy_time_are_counted() -> None:
    env = simpy.Environment()
    bw = SharedBandwidth(env, 4.0)
    bw.transfer(40, 1.0, 2)
    env.run()
    assert bw.bytes_moved == 80 and bw.busy_ns == pytest.approx(40.0)


_transfer = st.tuples(st.sampled_from([0.0, 0.0, 3.0, 7.5, 20.0]),
                      st.floats(1.0, 500.0),
                      st.sampled_from([math.inf, 0.5, 1.0, 2.5, 6.0]),
                      st.integers(1, 4))


@settings(max_examples=60, deadline=None)
@given(st.lists(_transfer, min_size=1, max_size=12))
def test_finishes_equal_per_transfer_water_filling(transfers: list) -> None:
    assert _finishes(10.0, transfers) == pytest.approx(_reference(10.0, transfers), rel=1e-7)
