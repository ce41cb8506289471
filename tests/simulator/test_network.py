"""Links and collectives against closed forms; collectives and send/recv move real data."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.system import LinkConfig, SystemConfig
from hardware.systems import load_system
from hardware.topology import Topology
from isa import DataSegment, DType, MemRef, Program, Space, build
from isa import numerics as nx
from simulator.errors import SimError
from simulator.run import simulate_system
from tests.simulator.conftest import make_chip

B, LAT = 100e9, 1e-6  # link: 100 GB/s each way, 1 us per hop
H = Space.HBM


def system(kind: str, dims: tuple[int, ...], algorithm: str = "ring") -> SystemConfig:
    topo = Topology(kind, dims)
    return SystemConfig("t", (make_chip(),) * topo.chips, topo, LinkConfig(B, LAT), algorithm)


def collective(sys: SystemConfig, op: str, count: int, group: int = 0, chips=None,
               groups=None) -> float:
    ins = build(f"net.{op}", MemRef(H, 0x100000), MemRef(H, 0), count, "bf16", group)
    chips = range(len(sys.chips)) if chips is None else chips
    return simulate_system(sys, {(c, 0): Program((ins,)) for c in chips},
                           groups=groups).time_s


N = 1 << 20  # elements: a 2 MiB bf16 buffer


@pytest.mark.parametrize("p", [2, 4, 8])
def test_ring_all_reduce_closed_form(p):
    n = 2 * N
    expect = 2 * (p - 1) / p * n / B + 2 * (p - 1) * LAT
    assert collective(system("ring", (p,)), "allreduce", N) == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("op", ["allgather", "reducescatter"])
def test_all_gather_and_reduce_scatter_are_half(op):
    p = 4
    n = 2 * N * p if op == "allgather" else 2 * N * p  # gathered output / scattered input
    count = N  # per chip: allgather sends N, reducescatter outputs N
    expect = (p - 1) / p * n / B + (p - 1) * LAT
    assert collective(system("ring", (p,)), op, count) == pytest.approx(expect, rel=1e-9)


def test_ring_over_a_switch_pays_two_hops_per_step():
    p, n = 4, 2 * N
    expect = 2 * (p - 1) * (n / p / B + 2 * LAT)
    assert collective(system("switch", (p,)), "allreduce", N) == pytest.approx(expect)


def test_direct_all_reduce_on_a_switch():
    p, n = 4, 2 * N
    # two steps; in each, every chip's uplink carries (p - 1) slices of n/p
    expect = 2 * ((p - 1) * n / p / B + 2 * LAT)
    assert collective(system("switch", (p,), "direct"), "allreduce", N) == pytest.approx(expect)


def test_hierarchical_all_reduce_on_a_2d_torus():
    x = y = 4
    n = 2 * N
    t = collective(system("torus", (x, y), "hierarchical"), "allreduce", N)
    rows = (x - 1) * (n / x / B + LAT)  # reduce-scatter along rows (neighbours: one hop)
    cols = 2 * (y - 1) * (n / x / y / B + LAT)  # all-reduce of n/x down columns
    assert t == pytest.approx(rows + cols + rows)


def test_two_collectives_sharing_links_take_longer_by_the_expected_amount():
    """Ring of 4; groups {0,2} and {1,3} route through shared links (0,1) and (1,2)."""
    sys = system("ring", (4,))
    groups = {1: [0, 2], 2: [1, 3]}
    n = 2 * N

    def run(chips_groups):
        progs = {(c, 0): Program((build("net.allreduce", MemRef(H, 0x100000), MemRef(H, 0), N,
                                        "bf16", g),)) for c, g in chips_groups}
        return simulate_system(sys, progs, groups=groups).time_s
    alone = run([(0, 1), (2, 1)])
    both = run([(0, 1), (2, 1), (1, 2), (3, 2)])
    assert alone == pytest.approx(n / B + 4 * LAT)  # 2 steps of n/2 over 2 hops
    assert both - alone == pytest.approx(n / B)  # the shared links run at half speed


def write(values: np.ndarray, addr: int = 0) -> DataSegment:
    return DataSegment(H, addr, nx.to_bytes(values, DType.FP32).tobytes())


def run_functional(sys, op: str, count: int, inputs: dict[int, np.ndarray]):
    ins = build(f"net.{op}", MemRef(H, 0x100000), MemRef(H, 0), count, "fp32", 0)
    progs = {(c, 0): Program((ins,), (write(v),)) for c, v in inputs.items()}
    return simulate_system(sys, progs, functional=True)


def out(result, chip: int, count: int) -> np.ndarray:
    return nx.from_bytes(result.read(H, 0x100000, 4 * count, chip=chip), DType.FP32, count)


def test_collectives_compute_real_data():
    sys = system("ring", (4,))
    rng = np.random.default_rng(0)
    xs = {c: rng.standard_normal(8).round(3) for c in range(4)}
    r = run_functional(sys, "allreduce", 8, xs)
    for c in range(4):
        np.testing.assert_allclose(out(r, c, 8), sum(xs.values()), rtol=1e-6)
    r = run_functional(sys, "allgather", 2, {c: xs[c][:2] for c in range(4)})
    np.testing.assert_allclose(out(r, 3, 8), np.concatenate([xs[c][:2] for c in range(4)]),
                               rtol=1e-6)
    r = run_functional(sys, "reducescatter", 2, xs)
    np.testing.assert_allclose(out(r, 1, 2), sum(xs.values())[2:4], rtol=1e-6)
    r = run_functional(sys, "alltoall", 2, xs)
    np.testing.assert_allclose(out(r, 1, 8), np.concatenate([xs[c][2:4] for c in range(4)]),
                               rtol=1e-6)


def test_send_and_receive():
    sys = system("ring", (4,))
    x = np.arange(16, dtype=float)
    progs = {(0, 0): Program((build("net.send", 2, MemRef(H, 0), 64, 3),), (write(x),)),
             (2, 0): Program((build("net.recv", 0, MemRef(H, 0x100000), 64, 3),))}
    r = simulate_system(sys, progs, functional=True)
    np.testing.assert_array_equal(out(r, 2, 16), x)
    assert r.time_s == pytest.approx(64 / B + 2 * LAT)  # two hops round the ring
    assert r.bytes["link_bytes"] == 2 * 64


def test_mismatched_collectives_and_unknown_groups_are_errors():
    sys = system("ring", (2,))
    a = build("net.allreduce", MemRef(H, 0), MemRef(H, 0), 4, "bf16")
    b = build("net.allgather", MemRef(H, 0), MemRef(H, 0), 4, "bf16")
    with pytest.raises(SimError, match="meets a allreduce"):
        simulate_system(sys, {(0, 0): Program((a,)), (1, 0): Program((b,))})
    c = build("net.allreduce", MemRef(H, 0), MemRef(H, 0), 4, "bf16", 5)
    with pytest.raises(SimError, match="chip group 5 is not defined"):
        simulate_system(sys, {(0, 0): Program((c,)), (1, 0): Program((c,))})


@pytest.mark.parametrize("name", ["h100x4", "h100x8", "h200x2", "h200x4", "tpuv4-4x4x4",
                                  "edge-ring16"])
def test_system_presets(name):
    s = load_system(name)
    assert len(s.chips) == s.topology.chips


def test_torus_routes_are_dimension_order_and_wrap():
    t = Topology("torus", (4, 4))
    assert t.hops(0, 3) == 1  # wraps round the ring of 4
    assert t.route(0, 5) == ((0, 1), (1, 5))  # x first, then y


def test_trace_has_a_track_per_chip_engine_and_per_link():
    sys = system("ring", (2,))
    progs = {(c, 0): Program((build("dma.load", MemRef(Space.SRAM, 0), MemRef(H, 0), DType.BF16,
                                    8, 64),
                              build("net.allreduce", MemRef(H, 0), MemRef(H, 0), 64, "bf16"),))
             for c in range(2)}
    r = simulate_system(sys, progs, trace=True, dedupe=False)
    ev = r.chrome_trace()["traceEvents"]
    procs = {e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert procs == {"chip 0", "chip 1", "links"}
    threads = {e["args"]["name"] for e in ev if e["name"] == "thread_name"}
    assert {"core 0 dma", "core 0 net", "link 0->1", "link 1->0"} <= threads
    link_x = [e for e in ev if e["ph"] == "X" and e["name"].endswith(" B")]
    assert len(link_x) == 4  # 2 steps x 2 directions of a 2-chip ring all-reduce
