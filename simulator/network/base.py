"""The network engine's view of the system: what chip-to-chip instructions do and cost.

``SingleChipNetwork`` is the system of one chip: collectives over a group of one move
nothing, ``net.barrier`` is a chip-wide rendezvous of all cores (a kernel boundary: it costs
the chip's ``kernel_gap``), and point-to-point transfers have no peer. Multi-chip systems
subclass ``Network`` with topologies, links and collective algorithms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from isa.operands import Engine
from simulator.engine.sync import Barrier
from simulator.errors import SimError

if TYPE_CHECKING:
    from isa.program import Instruction
    from simulator.engine.core import CoreSim
    from simulator.engine.machine import Machine


class Network:
    """Base: chip-wide barriers; subclasses add transfers between chips."""

    # chip -> {group a program names: the group it means on that chip}: data-parallel
    # replicas run one set of programs, each with its own groups
    aliases: dict[int, dict[int, int]] = {}

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        self.barriers: dict[int, Barrier] = {}

    def group(self, core: CoreSim, named: int) -> int:
        """The group ``named`` stands for on ``core``'s chip."""
        mine = self.aliases.get(core.chip_id)
        return mine.get(named, named) if mine else named

    def execute(self, core: CoreSim, pc: int, ins: Instruction, regs: list[int]):
        if ins.mnemonic == "net.barrier":
            yield from self._barrier(core, self.group(core, ins["group"]))
        else:
            yield from self.transfer(core, pc, ins, regs)

    def _barrier(self, core: CoreSim, group: int):
        parties = self.group_cores(core, group)
        bar = self.barriers.get(group)
        if bar is None:
            bar = self.barriers[group] = Barrier(self.machine.env, parties)
        fn = self.machine.functional
        if fn is not None:
            fn.on_barrier_arrive(core, Engine.NETWORK, ("net", group))
        yield bar.arrive(core.weight)
        if fn is not None:
            fn.on_barrier_leave(core, Engine.NETWORK, ("net", group))
        if core.gap_ns:
            yield self.machine.env.timeout(core.gap_ns)

    def group_cores(self, core: CoreSim, group: int) -> int:
        if group != 0:
            raise SimError(f"{core.where(0)}: chip group {group} is not defined by this system")
        return sum(c.weight for c in self.machine.cores)

    def transfer(self, core: CoreSim, pc: int, ins: Instruction, regs: list[int]):
        raise NotImplementedError

    def link_bytes_hops(self) -> float:
        return 0.0

    def functional(self, state, core: CoreSim, ctx, ins: Instruction) -> None:  # noqa: ANN001
        """Move the bytes of a network instruction in functional mode."""
        raise NotImplementedError


class SingleChipNetwork(Network):
    """One chip: collectives over the whole (one-chip) group are local; sends have no peer."""

    def transfer(self, core: CoreSim, pc: int, ins: Instruction, regs: list[int]):
        if ins.mnemonic in ("net.send", "net.recv"):
            raise SimError(f"{core.where(pc)}: {ins.mnemonic} to chip {ins['peer']}, but this "
                           f"system has one chip (use a multi-chip system)")
        if ins["group"] != 0:
            raise SimError(f"{core.where(pc)}: chip group {ins['group']} is not defined by a "
                           f"one-chip system")
        return
        yield  # a generator that takes no time: a group of one chip exchanges nothing

    def functional(self, state, core: CoreSim, ctx, ins: Instruction) -> None:  # noqa: ANN001
        """A collective over a group of one chip: the output is the input."""
        from isa.dtypes import DType

        dt = DType(ins["dtype"])
        n = dt.nbytes(ins["count"])
        ctx.write_bytes(ctx.mem("dst"), ctx.read_bytes(ctx.mem("src"), n))


class LoneChipNetwork(SingleChipNetwork):
    """One chip standing for every chip of a system that runs the same programs (the
    identical-chips shortcut, ``simulator.run``): a group barrier meets this chip's cores
    only, as its identical peers arrive at the same moment."""

    def group_cores(self, core: CoreSim, group: int) -> int:
        return sum(c.weight for c in self.machine.cores)
