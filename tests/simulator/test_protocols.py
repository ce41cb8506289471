"""Link protocols (NCCL's LL / Simple): each collective picks the fastest by closed form,
waits its fixed cost and moves bytes / efficiency; YAML errors name the file and field."""

from __future__ import annotations

import dataclasses
import re

import pytest

from hardware.chips import ConfigError
from hardware.system import LinkConfig, Protocol, SystemConfig
from hardware.systems import load_system
from hardware.topology import Topology
from isa import MemRef, Program, Space, build
from simulator.network.collectives import steps_for
from simulator.network.links import LinkNetwork
from simulator.run import simulate_system
from tests.simulator.conftest import make_chip

B, LAT = 100e9, 1e-6  # link: 100 GB/s each way, 1 us per hop
LL = Protocol("LL", 1e-6, 0.25)  # low fixed cost, a quarter of the wire is payload
SIMPLE = Protocol("Simple", 20e-6, 1.0)  # high fixed cost, full bandwidth
H = Space.HBM


def system(protocols=(LL, SIMPLE), chips: int = 2) -> SystemConfig:
    topo = Topology("ring", (chips,))
    return SystemConfig("t", (make_chip(),) * chips, topo, LinkConfig(B, LAT, 10.0, protocols))


def allreduce(sys: SystemConfig, count: int):
    ins = build("net.allreduce", MemRef(H, 0x1000000), MemRef(H, 0), count, "bf16", 0)
    return simulate_system(sys, {(c, 0): Program((ins,)) for c in range(len(sys.chips))})


def picked(sys: SystemConfig, nbytes: float) -> Protocol:
    net = LinkNetwork(sys.topology, sys.link, sys.collective)
    return net.protocol(steps_for("allreduce", "ring", [0, 1], nbytes, 0, None))


def closed_form(p: Protocol, n: float) -> float:
    """2-chip ring all-reduce: 2 steps, each chip sends n/2 one hop."""
    return p.latency + 2 * (1 * LAT + n / 2 / (p.efficiency * B))


# LL vs Simple on 2 chips: 3 us + 4n/B vs 22 us + n/B, equal at n = 19 us * B / 3 = 633 kB
SMALL, LARGE = 4096, 8 << 20


def test_small_all_reduce_picks_low_latency_and_large_picks_high_efficiency():
    sys = system()
    assert picked(sys, SMALL) == LL
    assert picked(sys, LARGE) == SIMPLE
    assert picked(system((SIMPLE, LL)), SMALL) == LL  # order of the list does not matter


@pytest.mark.parametrize("nbytes,proto", [(SMALL, LL), (LARGE, SIMPLE)])
def test_all_reduce_time_is_the_chosen_protocols_closed_form(nbytes, proto):
    r = allreduce(system(), nbytes // 2)
    # e.g. 4 KiB with LL: 1 us + 2 * (1 us + 2048 B / (0.25 * 100 B/ns)) = 3.16384 us
    assert r.time_s == pytest.approx(closed_form(proto, nbytes), rel=1e-9)
    assert r.time_s < closed_form(SIMPLE if proto is LL else LL, nbytes)
    # wire bytes: 2 steps x 2 chips x n/2 payload / efficiency, one hop each
    assert r.bytes["link_bytes"] == pytest.approx(2 * nbytes / proto.efficiency)


def test_a_step_latency_makes_small_collectives_grow_with_the_ranks():
    """NCCL charges a latency per ring step: an all-reduce of p chips has 2(p - 1) steps,
    so with p = 4 it pays the step latency 6 times, with p = 2 twice (closed form, tested
    on a ring where every step is one hop)."""
    step = Protocol("LL", latency=1e-6, efficiency=0.25, step_latency=0.5e-6)
    n = 4096
    for chips in (2, 4):
        r = allreduce(system((step,), chips), n // 2)
        steps = 2 * (chips - 1)
        assert r.time_s == pytest.approx(
            step.latency + steps * (step.step_latency + LAT + n / chips / (0.25 * B)),
            rel=1e-9)


def test_no_protocols_is_the_ideal_link():
    r = allreduce(system(()), LARGE // 2)
    assert r.time_s == pytest.approx(2 * (LAT + LARGE / 2 / B), rel=1e-9)


def test_a_kernel_gap_is_not_part_of_a_collective():
    sys = system()
    gap = dataclasses.replace(sys, chips=tuple(dataclasses.replace(c, kernel_gap=5e-6)
                                               for c in sys.chips))
    assert allreduce(gap, SMALL // 2).time_s == pytest.approx(allreduce(sys, SMALL // 2).time_s)


def test_protocols_load_from_yaml(tmp_path):
    f = tmp_path / "two.yaml"
    f.write_text(_yaml("""
    - {name: LL, latency: 1 us, efficiency: 0.25}
    - {name: Simple, latency: 20 us, efficiency: 1}
"""))
    s = load_system(f)
    assert [(p.name, p.latency, p.efficiency) for p in s.link.protocols] == [
        ("LL", pytest.approx(1e-6), 0.25), ("Simple", pytest.approx(20e-6), 1.0)]
    assert allreduce(s, SMALL // 2).time_s == pytest.approx(closed_form(LL, SMALL), rel=1e-9)


def _yaml(protocols: str) -> str:
    return ("name: t\nchip: h100\ntopology: {kind: ring, dims: [2]}\n"
            "link:\n  bandwidth: 100 GB/s\n  latency: 1 us\n  protocols:" + protocols)


@pytest.mark.parametrize("entry,message", [
    ("{name: LL, latency: 1 us, efficiency: 0}", "efficiency: must be in \\(0, 1\\]"),
    ("{name: LL, latency: 1 us, efficiency: 1.5}", "efficiency: must be in \\(0, 1\\]"),
    ("{name: LL, latency: -1 us, efficiency: 0.5}", "latency: must be a non-negative"),
    ("{name: LL, latency: 1 us, efficiency: 0.5, speed: 3}", "speed: unknown field"),
    ("{name: LL, latency: 1 GB, efficiency: 0.5}", "not a time unit"),
    ("{name: LL, latency: 1 us, efficiency: fast}", "expected a number, got 'fast'"),
    ("LL", "expected a mapping"),
])
def test_a_bad_protocol_is_one_line_naming_file_and_field(tmp_path, entry, message):
    f = tmp_path / "bad.yaml"
    f.write_text(_yaml(f"\n    - {entry}\n"))
    with pytest.raises(ConfigError, match=r"^bad\.yaml: link\.protocols\[0\]") as info:
        load_system(f)
    text = str(info.value)
    assert "\n" not in text
    assert re.search(message, text)


def test_protocols_must_be_a_list(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(_yaml(" {name: LL}\n"))
    with pytest.raises(ConfigError, match=r"^bad\.yaml: link\.protocols: expected a list"):
        load_system(f)


def test_the_h200_pair_preset_has_nccl_like_protocols():
    s = load_system("h200x2")
    assert [p.name for p in s.link.protocols] == ["LL", "LL128", "Simple"]
    assert all(0 < p.efficiency <= 1 for p in s.link.protocols)
