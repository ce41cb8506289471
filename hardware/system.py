"""A system: chips joined by links in a topology, as frozen dataclasses (loaded by
``hardware.systems``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hardware.chip import ChipConfig
from hardware.loader import spec
from hardware.topology import Topology

# Collective algorithms a system may name (simulator.network.collectives implements each;
# "hierarchical" runs rings per dimension of the topology).
COLLECTIVES = ("ring", "bidir-ring", "direct", "halving-doubling", "hierarchical")


@dataclass(frozen=True)
class Protocol:
    """A way collectives use the links (NCCL's LL, LL128, Simple): a fixed cost per
    collective (launch, synchronisation, handshakes), a latency per step of the algorithm
    (each step's chunk is flagged, polled and forwarded: NCCL's tuner charges ``hwLat`` per
    ring step, so a ring all-reduce of p chips pays it 2(p-1) times) and the payload share
    of the bytes on the wire (flags, headers, how well the copies keep the link busy)."""

    name: str = "protocol"
    latency: float = field(default=0.0, metadata=spec("time", "non_negative", "per collective"))
    efficiency: float = field(default=1.0, metadata=spec(
        bounds="fraction", help="payload bytes / wire bytes"))
    step_latency: float = field(default=0.0, metadata=spec(
        "time", "non_negative", "per step of the collective's algorithm"))


IDEAL = Protocol("ideal", 0.0, 1.0)


@dataclass(frozen=True)
class LinkConfig:
    bandwidth: float = field(metadata=spec("bandwidth", help="each direction of one link"))
    latency: float = field(default=0.0, metadata=spec("time", "non_negative", "per hop"))
    pj_per_byte: float = field(default=10.0, metadata=spec(
        "energy_pj", "non_negative", "energy per byte per hop"))
    # Collectives pick, per call, the protocol with the lowest estimated time (as NCCL's
    # tuner does); none: every byte at full bandwidth, no fixed cost.
    protocols: tuple[Protocol, ...] = ()


@dataclass(frozen=True)
class ScaleOut:
    """The scale-out fabric of a cluster: each chip's NIC and the leaf switches' uplinks."""

    link: LinkConfig  # one NIC, each direction
    oversubscription: float = field(default=1.0, metadata=spec(
        bounds="positive", help="a leaf's NIC bandwidth / its uplink bandwidth"))


@dataclass(frozen=True)
class HostConfig:
    """The host tier (CPU + DRAM) behind each group of chips: where ZeRO-Offload keeps the
    optimizer states and runs the optimizer. Defaults: a two-socket server of 8 GPUs
    (DGX-class: 2 TB DDR5 at ~600 GB/s over 16 channels, PCIe 5 x16 per GPU at 64 GB/s each
    way, ~4 TFLOP/s fp32 of AVX-512 on 2 x 56 cores; vendor spec sheets)."""

    memory: float = field(default=2e12, metadata=spec("bytes", "positive", "host DRAM"))
    bandwidth: float = field(default=600e9, metadata=spec("bandwidth", help="host DRAM"))
    link: float = field(default=64e9, metadata=spec(
        "bandwidth", help="one chip's host link, each way"))
    flops: float = field(default=4e12, metadata=spec(
        bounds="positive", help="host fp32 FLOP/s"))
    chips_per_host: int = field(default=8, metadata=spec(
        bounds="positive", help="chips sharing one host"))


@dataclass(frozen=True)
class SystemConfig:
    name: str
    chips: tuple[ChipConfig, ...]
    topology: Topology
    link: LinkConfig
    collective: str = "ring"
    scale_out: ScaleOut | None = None  # a cluster topology's NICs and fabric
    host: HostConfig = field(default_factory=HostConfig)
