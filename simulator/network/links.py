"""Chips joined by links: transfers and collectives inside the same SimPy run as compute.

Every directed link is a ``SharedBandwidth``: concurrent transfers share it, and a transfer
occupies every link on its route at once (cut-through), paying the link latency per hop.
A collective starts when every chip of its group has reached it; its algorithm's steps run
one after another, the transfers of a step concurrently. One core per chip issues a chip's
network instructions (the mapper's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hardware.system import IDEAL, LinkConfig, Protocol
from hardware.topology import Topology
from isa.dtypes import DType
from isa.operands import MemRef
from simulator.errors import SimError
from simulator.memory.bandwidth import SharedBandwidth
from simulator.network.base import Network
from simulator.network.collectives import steps_for

if TYPE_CHECKING:
    from isa.program import Instruction
    from simulator.engine.core import CoreSim

OPS = {"net.allreduce": "allreduce", "net.allgather": "allgather",
       "net.reducescatter": "reducescatter", "net.alltoall": "alltoall", "net.bcast": "bcast"}


@dataclass
class _Instance:
    op: str
    members: list[int]
    event: object
    arrived: dict[int, tuple] = field(default_factory=dict)  # chip -> (core, ins, regs)
    results: dict[int, bytes] = field(default_factory=dict)


def link_of(system):  # noqa: ANN001, ANN201
    """(u, v) -> (bandwidth B/s, latency s) of a directed link of ``system``: the scale-up
    link, or in a cluster a chip's NIC (``scale_out.link``) or a leaf's uplink to the spine
    (the NICs of its nodes over ``scale_out.oversubscription``)."""
    topo, up, out = system.topology, system.link, system.scale_out

    def of(u: int, v: int) -> tuple[float, float]:
        tier = topo.tier(u, v)
        if tier == "scale_up" or out is None:
            return up.bandwidth, up.latency
        nic = out.link
        if tier == "scale_out":
            return nic.bandwidth, nic.latency
        _, per, per_leaf = topo.dims
        return nic.bandwidth * per * per_leaf / out.oversubscription, nic.latency
    return of


class LinkNetwork(Network):
    def __init__(self, topology: Topology, link: LinkConfig, algorithm: str = "ring",
                 groups: dict[int, list[int]] | None = None, link_of=None,  # noqa: ANN001
                 aliases: dict[int, dict[int, int]] | None = None) -> None:
        self.topology = topology
        self.link = link
        # (u, v) -> (bandwidth, latency): a cluster's scale-out links differ from its nodes'
        self.link_of = link_of or (lambda u, v: (link.bandwidth, link.latency))
        self.algorithm = algorithm
        self.groups = dict(groups or {})
        self.aliases = dict(aliases or {})
        self.bytes_hops = 0.0

    def attach(self, machine) -> None:  # noqa: ANN001
        super().attach(machine)
        env = machine.env
        self.wires = {uv: SharedBandwidth(env, self.link_of(*uv)[0] / 1e9, f"link{uv}")
                      for uv in self.topology.links}
        self.instances: dict[tuple, _Instance] = {}
        self.seen: dict[tuple[int, int], int] = {}  # (chip, group) -> collectives issued
        self.pending: dict[tuple, tuple] = {}  # send/recv rendezvous
        self.finished: dict[int, list[_Instance]] = {}  # chip -> collectives to write back
        if len(machine.chips) != self.topology.chips:
            raise SimError(f"the topology joins {self.topology.chips} chips, the system has "
                           f"{len(machine.chips)}")

    def members(self, group: int) -> list[int]:
        if group == 0:
            return list(range(self.topology.chips))
        if group not in self.groups:
            raise SimError(f"chip group {group} is not defined (groups: "
                           f"{', '.join(map(str, sorted(self.groups))) or 'none'})")
        return self.groups[group]

    def group_cores(self, core: CoreSim, group: int) -> int:
        chips = set(self.members(group))
        return sum(c.weight for c in self.machine.cores if c.chip_id in chips)

    def link_bytes_hops(self) -> float:
        return self.bytes_hops

    # ---- transfers -----------------------------------------------------------------------
    def move(self, src: int, dst: int, nbytes: float):
        """One transfer along the route, every link at once; latency per hop."""
        route = self.topology.route(src, dst)
        if not route or nbytes <= 0:
            return
        self.bytes_hops += nbytes * len(route)
        env = self.machine.env
        start = env.now
        yield env.all_of([self.wires[uv].transfer(nbytes) for uv in route])
        if self.machine.link_trace is not None:
            self.machine.link_trace.extend((uv, nbytes, start, env.now) for uv in route)
        yield env.timeout(sum(self.link_of(*uv)[1] for uv in route) * 1e9)

    def transfer(self, core: CoreSim, pc: int, ins: Instruction, regs: list[int]):
        if ins.mnemonic in ("net.send", "net.recv"):
            yield from self._point_to_point(core, ins, regs)
            return
        yield from self._collective(core, pc, ins, regs)

    def _point_to_point(self, core: CoreSim, ins: Instruction, regs: list[int]):
        env = self.machine.env
        me, peer = core.chip_id, ins["peer"]
        if peer >= self.topology.chips:
            raise SimError(f"{core.where(0)}: {ins.mnemonic} to chip {peer}: the system has "
                           f"{self.topology.chips} chips")
        src, dst = (me, peer) if ins.mnemonic == "net.send" else (peer, me)
        key = (src, dst, ins["tag"])
        other = self.pending.pop(key, None)
        if other is None:
            event = env.event()
            self.pending[key] = (event, core, ins, regs)
            yield event
            return
        event, o_core, o_ins, o_regs = other
        send = (core, ins, regs) if ins.mnemonic == "net.send" else (o_core, o_ins, o_regs)
        recv = (o_core, o_ins, o_regs) if ins.mnemonic == "net.send" else (core, ins, regs)
        if send[1]["bytes"] != recv[1]["bytes"]:
            raise SimError(f"chip {src} sends {send[1]['bytes']} bytes with tag "
                           f"{ins['tag']}, chip {dst} receives {recv[1]['bytes']}")
        yield from self.move(src, dst, ins["bytes"])
        if self.machine.functional is not None:
            self._deliver(send, recv)
        event.succeed()

    def _collective(self, core: CoreSim, pc: int, ins: Instruction, regs: list[int]):
        env = self.machine.env
        group = self.group(core, ins["group"])
        members = self.members(group)
        if core.chip_id not in members:
            raise SimError(f"{core.where(pc)}: chip {core.chip_id} is not in group {group}")
        k = self.seen.get((core.chip_id, group), 0)
        self.seen[(core.chip_id, group)] = k + 1
        inst = self.instances.get((group, k))
        if inst is None:
            inst = self.instances[(group, k)] = _Instance(OPS[ins.mnemonic], members,
                                                          env.event())
        if inst.op != OPS[ins.mnemonic]:
            raise SimError(f"{core.where(pc)}: {ins.mnemonic} meets a {inst.op} of another "
                           f"chip of group {group} (collectives must match in order)")
        inst.arrived[core.chip_id] = (core, ins, list(regs))
        if len(inst.arrived) == len(members):
            env.process(self._run(inst, ins))
        yield inst.event

    def _run(self, inst: _Instance, ins: Instruction):
        env = self.machine.env
        dt = DType(ins["dtype"])
        count, p = ins["count"], len(inst.members)
        n = dt.nbytes(count * (1 if inst.op in ("allreduce", "bcast") else p))
        root = ins["root"] if inst.op == "bcast" else 0
        plan = steps_for(inst.op, self.algorithm, inst.members, n, root,
                         self._grid(inst.members))
        proto = self.protocol(plan)
        if proto.latency:
            yield env.timeout(proto.latency * 1e9)
        for step in plan:
            if proto.step_latency:
                yield env.timeout(proto.step_latency * 1e9)
            yield env.all_of([env.process(self.move(a, b, nbytes / proto.efficiency))
                              for a, b, nbytes in step])
        if self.machine.functional is not None:
            inst.results = self._reduce(inst, dt, count, root)
            for c in inst.members:
                self.finished.setdefault(c, []).append(inst)
        inst.event.succeed()

    def protocol(self, plan: list) -> Protocol:
        """The link protocol with the lowest closed-form time for ``plan``: its fixed cost,
        then per step its step latency, the hops' latency and the largest transfer at its
        efficiency."""
        options = self.link.protocols or (IDEAL,)

        def estimate(p: Protocol) -> float:
            t = p.latency + len(plan) * p.step_latency
            for step in plan:
                hops = max((len(self.topology.route(a, b)) for a, b, _ in step), default=0)
                most = max((nbytes for _, _, nbytes in step), default=0.0)
                t += hops * self.link.latency + most / (p.efficiency * self.link.bandwidth)
            return t
        return min(options, key=estimate)

    def _grid(self, members: list[int]) -> list[list[int]] | None:
        """Rows along the first dimension of a mesh / torus, when the group is all of it."""
        t = self.topology
        if t.kind not in ("mesh", "torus") or len(t.dims) < 2 or \
                sorted(members) != list(range(t.chips)):
            return None
        x = t.dims[0]
        return [list(range(r * x, (r + 1) * x)) for r in range(t.chips // x)]

    # ---- functional data -----------------------------------------------------------------
    def _ref(self, arrival: tuple, name: str) -> MemRef:
        core, ins, regs = arrival
        ref = ins.operand(name)
        return ref if ref.reg is None else MemRef(ref.space, ref.addr + regs[ref.reg])

    def _read(self, arrival: tuple, name: str, nbytes: int) -> np.ndarray:
        core = arrival[0]
        ref = self._ref(arrival, name)
        mem = self.machine.functional.memory(core.chip_id, core.core_id, ref.space)
        return mem.read(ref.addr, nbytes, arrival[1].mnemonic)

    def _reduce(self, inst: _Instance, dt: DType, count: int, root: int) -> dict[int, bytes]:
        from isa import numerics as nx

        p = len(inst.members)
        size = {"allreduce": count, "bcast": count}.get(inst.op, count * p)
        srcs = {c: nx.from_bytes(self._read(inst.arrived[c], "src", dt.nbytes(
            count if inst.op in ("allgather", "bcast") else size)), dt,
            count if inst.op in ("allgather", "bcast") else size).astype(np.float64)
            for c in inst.members}
        if inst.op == "allreduce":
            total = sum(srcs.values())
            out = {c: total for c in inst.members}
        elif inst.op == "reducescatter":
            total = sum(srcs.values())
            out = {c: total[i * count:(i + 1) * count] for i, c in enumerate(inst.members)}
        elif inst.op == "allgather":
            whole = np.concatenate([srcs[c] for c in inst.members])
            out = {c: whole for c in inst.members}
        elif inst.op == "alltoall":
            out = {c: np.concatenate([srcs[o][i * count:(i + 1) * count] for o in inst.members])
                   for i, c in enumerate(inst.members)}
        else:
            out = {c: srcs[root] for c in inst.members}
        return {c: nx.to_bytes(v, dt).tobytes() for c, v in out.items()}

    def functional(self, state, core: CoreSim, ctx, ins: Instruction) -> None:  # noqa: ANN001
        """Write this chip's share of a finished collective (computed once, from every
        chip's input) or note a point-to-point transfer's bytes."""
        if ins.mnemonic in ("net.send", "net.recv"):
            ref = ctx.mem("src" if ins.mnemonic == "net.send" else "dst")
            ctx._note(ref, ref.addr, ref.addr + ins["bytes"], ins.mnemonic == "net.recv")
            return
        inst = self.finished[core.chip_id].pop(0)  # this chip's collectives finish in order
        data = inst.results.pop(core.chip_id)
        dt = DType(ins["dtype"])
        whole = inst.op in ("allreduce", "allgather", "bcast")
        src = ctx.mem("src")
        ctx._note(src, src.addr, src.addr + dt.nbytes(ins["count"] * (
            1 if whole else len(inst.members))), False)
        ctx.write_bytes(ctx.mem("dst"), np.frombuffer(data, np.uint8))

    def _deliver(self, send: tuple, recv: tuple) -> None:
        n = send[1]["bytes"]
        data = self._read(send, "src", n)
        core = recv[0]
        ref = self._ref(recv, "dst")
        self.machine.functional.memory(core.chip_id, core.core_id, ref.space).write(
            ref.addr, data, "net.recv")
