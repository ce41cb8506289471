"""The chip's shared L2 (GPU L2, TPU CMEM) as a reuse model of the loads of one run.

Cores that tile a GEMM or an attention re-read the same operand tiles: an A row-block is
read by every output tile of its row, a weight column-block by every tile of its column,
K/V by every query block of a head. A cache shared by the cores serves those re-reads, so
HBM sees only what is not resident. Tracking addresses during the run would break the
identical-cores shortcut (one core stands for many), so the model works on the programs
before the run, as the static bounds do:

* each static ``dma.load`` is a *block*: the address span it covers over every value its
  loop registers take, and the bytes it moves (charged bytes x its loops' trip counts);
* cores advance together, so the ``s``-th load of every core forms window ``s``;
  windows are visited in order, cores in order within a window;
* blocks are keyed by their start address: a block whose data (the smaller of its span
  and its bytes: a strided load spans gaps) is already resident from that start is a hit
  for all its bytes; otherwise the part beyond what is resident is fetched from HBM, a
  miss, and the rest of the bytes the load moves are re-reads that hit (a causal query
  tile reads a longer prefix of the same keys than the tile before it);
* resident data sits in an LRU of ``l2.capacity`` bytes, evicting the least recent.

So cores sharing an operand in the same wave hit (they run together), and a re-read one
wave later hits only if a wave's footprint fits the L2 — the two effects that set a GPU's
HBM traffic. The hit fraction ``h = hits / loaded`` then splits every load of the run: ``h``
of its bytes cross the L2's shared bandwidth, the rest HBM's. Stores go to HBM.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from itertools import zip_longest

import numpy as np

from hardware.chip import ChipConfig
from isa.footprint import footprint
from isa.program import Instruction, Program
from isa.table import BY_MNEMONIC
from simulator.engine.dedupe import shapes
from simulator.engine.timing import dma_bytes
from simulator.memory.bounds import loop_regs, widen

Block = tuple[tuple[int, int], float]  # (address span, bytes loaded)


def hit_fraction(programs: Iterable[Program], chip: ChipConfig) -> float:
    """Share of the run's HBM-load bytes that the L2 serves (0 without an L2)."""
    capacity = chip.l2.capacity
    if capacity <= 0 or chip.l2.bandwidth <= 0:
        return 0.0
    loads: dict = {}  # a load's (bytes charged, span) by its address-free signature
    per_core = [_blocks(prog, chip, loads) for prog in programs]
    lru: OrderedDict[int, int] = OrderedDict()  # block start -> bytes resident from it
    held = 0
    loaded = hits = 0.0
    for window in zip_longest(*per_core):
        for block in window:
            if block is None:
                continue
            (lo, hi), nbytes = block
            loaded += nbytes
            size = min(hi - lo, int(nbytes))  # a strided load spans gaps
            resident = lru.get(lo, 0)
            if resident:
                lru.move_to_end(lo)
            miss = max(0, size - resident)  # a longer run from the same start: the rest
            # bytes moved beyond the data (a loop re-reading it) hit while it fits
            again = nbytes - size
            hits += (size - miss) + again * min(1.0, capacity / size)
            keep = min(size, capacity)
            if keep > resident:
                lru[lo] = keep
                held += keep - resident
            while held > capacity and lru:
                held -= lru.popitem(last=False)[1]
    return hits / loaded if loaded else 0.0


def _blocks(program: Program, chip: ChipConfig, loads: dict) -> list[Block]:
    """A block for each load of the program, in program order. Only its loads and loops
    are visited (found from its distinct signatures, ``dedupe.shapes``); a loop's
    registers widen the ranges of the loads in its body, its count multiplies their
    bytes."""
    distinct, per_pc = shapes(program)
    roles = [_ROLE.get(ins.opcode, 0) for _, ins in distinct]
    if not any(roles):
        return []
    info = []
    for (sig, ins), role in zip(distinct, roles):
        known = None
        if role == _IS_LOAD:
            known = loads.get(sig)
            if known is None:
                known = loads[sig] = (dma_bytes(ins, chip)[1], _extent(ins))
        info.append(known)
    prog = program.instructions
    blocks: list[Block] = []
    ranges: dict = {}
    trips = 1
    outer: list[tuple[int, dict, int]] = []  # enclosing loops: (end, ranges, trips outside)
    which = per_pc.tolist()
    for pc in np.flatnonzero(np.asarray(roles, dtype=np.int8)[per_pc]).tolist():
        while outer and pc >= outer[-1][0]:
            _, ranges, trips = outer.pop()
        args = prog[pc].args
        known = info[which[pc]]
        if known is None:  # a loop
            outer.append((args[_END], ranges, trips))
            ranges = widen(ranges, loop_regs(prog[pc]), args[_COUNT])
            trips *= args[_COUNT]
            continue
        charged, extent = known
        addr, reg = args[_SRC], args[_SRC + 1] - 1  # reg code 0: none
        lo, hi = ranges.get(reg, (0, 0)) if reg >= 0 else (0, 0)
        blocks.append(((addr + lo, addr + hi + extent), charged * trips))
    return blocks


_LOAD = BY_MNEMONIC["dma.load"].opcode
_LOOP = BY_MNEMONIC["loop"].opcode
_END, _COUNT = BY_MNEMONIC["loop"].index("end"), BY_MNEMONIC["loop"].index("count")
_IS_LOAD = 2
_ROLE = {_LOOP: 1, _LOAD: _IS_LOAD}
_SRC = BY_MNEMONIC["dma.load"].index("src.addr")  # then src.reg


def _extent(ins: Instruction) -> int:
    """Bytes from a load's first to last source byte (strided rows included)."""
    return dict(footprint(ins))["src"]
