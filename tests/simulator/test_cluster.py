"""Clusters: nodes behind a scale-up switch, a NIC per chip to leaf switches under a spine.
Routes take NVLink inside a node and the NICs between nodes; a collective across nodes runs
at the NIC's bandwidth; a cluster without its NIC link is a one-line error."""

from __future__ import annotations

import pytest

from experiments.train.costs import collective_cost
from hardware.chips import ConfigError
from hardware.systems import load_system, system_from_dict
from hardware.topology import Topology


def test_routes_stay_in_the_node_or_cross_leaf_and_spine():
    t = Topology("cluster", (4, 8, 2))  # 32 chips, 4 node switches, 2 leaves, a spine
    n = 32
    assert t.route(0, 5) == ((0, n), (n, 5))  # the node switch
    assert t.route(0, 9) == ((0, n + 4), (n + 4, 9))  # nodes 0 and 1 share leaf 0
    spine = n + 4 + 2
    assert t.route(0, 17) == ((0, n + 4), (n + 4, spine), (spine, n + 5), (n + 5, 17))
    assert {t.tier(*uv) for uv in t.route(0, 17)} == {"scale_out", "uplink"}
    assert t.tier(0, n) == "scale_up"


def test_a_collective_across_nodes_is_bound_by_the_nics():
    s = load_system("dgx-h100-x16")
    inside = collective_cost(s, "allreduce", list(range(8)), 256e6).time_s
    across = collective_cost(s, "allreduce", [0, 8, 16, 24, 32, 40, 48, 56], 256e6).time_s
    nvlink, nic = s.link.bandwidth, s.scale_out.link.bandwidth
    assert across > inside * 0.8 * nvlink / nic / 2  # about the bandwidth ratio (9x)
    ring = 2 * 7 / 8 * 256e6 / nic  # the ring's bytes over one NIC, each way
    assert across == pytest.approx(ring, rel=0.6)


def test_a_cluster_needs_its_nic_link():
    with pytest.raises(ConfigError, match="scale_out"):
        system_from_dict({"name": "c", "chip": "h100", "topology": {"kind": "cluster",
                          "dims": [2, 8, 1]}, "link": {"bandwidth": "450 GB/s"}}, "c.yaml")
    with pytest.raises(ConfigError, match="scale_out: only a cluster"):
        system_from_dict({"name": "c", "chip": "h100", "topology": {"kind": "switch",
                          "dims": [2]}, "link": {"bandwidth": "450 GB/s"},
                          "scale_out": {"link": {"bandwidth": "50 GB/s"}}}, "c.yaml")


@pytest.mark.parametrize("host,field", [("banana", "host"), ({"link": -1}, "host.link"),
                                        ({"bogus": 1}, "host.bogus"),
                                        ({"chips_per_host": 0}, "host.chips_per_host")])
def test_a_bad_host_tier_is_one_line_naming_its_field(host, field):
    with pytest.raises(ConfigError, match=f"c.yaml: {field}"):
        system_from_dict({"name": "c", "chip": "h100", "topology": {"kind": "switch",
                          "dims": [2]}, "link": {"bandwidth": "450 GB/s"}, "host": host},
                         "c.yaml")
