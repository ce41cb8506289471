"""A system: chips joined by links in a topology, as frozen dataclasses (loaded by
``hardware.systems``)."""

from __future__ import annotations

from dataclasses import dataclass

from hardware.chip import ChipConfig
from hardware.topology import Topology

# Collective algorithms a system may name (simulator.network.collectives implements each;
# "hierarchical" runs rings per dimension of the topology).
COLLECTIVES = ("ring", "bidir-ring", "direct", "halving-doubling", "hierarchical")


@dataclass(frozen=True)
class Protocol:
    """A way collectives use the links (NCCL's LL, LL128, Simple): a fixed cost per
    collective (launch, synchronisation, handshakes) and the payload share of the bytes on
    the wire (flags, headers, how well the copies keep the link busy)."""

    name: str
    latency: float  # s per collective
    efficiency: float  # payload bytes / wire bytes, in (0, 1]


IDEAL = Protocol("ideal", 0.0, 1.0)


@dataclass(frozen=True)
class LinkConfig:
    bandwidth: float  # bytes/s, each direction of one link
    latency: float  # s per hop
    pj_per_byte: float = 10.0  # per byte per hop
    # Collectives pick, per call, the protocol with the lowest estimated time (as NCCL's
    # tuner does); none: every byte at full bandwidth, no fixed cost.
    protocols: tuple[Protocol, ...] = ()


@dataclass(frozen=True)
class SystemConfig:
    name: str
    chips: tuple[ChipConfig, ...]
    topology: Topology
    link: LinkConfig
    collective: str = "ring"
