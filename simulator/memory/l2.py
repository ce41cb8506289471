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
from simulator.engine.dedupe import address_fields, address_starts, addresses, shapes
from simulator.engine.timing import dma_bytes
from simulator.memory.bounds import loop_contexts_of

try:
    from simulator.engine import _fastcore
except ImportError:  # not built: the replay runs in Python (same result)
    _fastcore = None


def hit_fraction(programs: Iterable[Program], chip: ChipConfig) -> float:
    """Share of the run's HBM-load bytes that the L2 serves (0 without an L2)."""
    capacity = chip.l2.capacity
    if capacity <= 0 or chip.l2.bandwidth <= 0:
        return 0.0
    lo, hi, moved, cut = _blocks(list(programs), chip)
    if _fastcore is not None and (moved.dtype.kind == "f" or not len(moved)
                                  or int(moved.max()) < 1 << 53):  # ints exact as doubles
        i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
        hits, loaded = _fastcore.l2_replay(i64(lo), i64(hi), np.ascontiguousarray(
            moved, dtype=np.float64), i64(cut), int(capacity))
    else:
        hits, loaded = _replay(lo, hi, moved, cut, capacity)
    return hits / loaded if loaded else 0.0


def _replay(lo: np.ndarray, hi: np.ndarray, moved: np.ndarray, cut: np.ndarray,
            capacity: int) -> tuple[float, float]:
    """(bytes hit, bytes loaded) over the loads' windows (the extension's ``l2_replay``
    does the same in C: a 32k-token prefill's 300 k loads, a second here)."""
    starts, ends, nbytes, cut = lo.tolist(), hi.tolist(), moved.tolist(), cut.tolist()
    per_core = [list(zip(starts[cut[i]:cut[i + 1]], ends[cut[i]:cut[i + 1]],
                         nbytes[cut[i]:cut[i + 1]])) for i in range(len(cut) - 1)]
    lru: OrderedDict[int, int] = OrderedDict()  # block start -> bytes resident from it
    held = 0
    loaded = hits = 0.0
    for window in zip_longest(*per_core):
        for block in window:
            if block is None:
                continue
            lo_, hi_, nbytes_ = block
            loaded += nbytes_
            size = min(hi_ - lo_, int(nbytes_))  # a strided load spans gaps
            resident = lru.get(lo_, 0)
            if resident:
                lru.move_to_end(lo_)
            miss = max(0, size - resident)  # a longer run from the same start: the rest
            # bytes moved beyond the data (a loop re-reading it) hit while it fits
            again = nbytes_ - size
            hits += (size - miss) + again * min(1.0, capacity / size)
            keep = min(size, capacity)
            if keep > resident:
                lru[lo_] = keep
                held += keep - resident
            while held > capacity and lru:
                held -= lru.popitem(last=False)[1]
    return hits, loaded


def _blocks(programs: list[Program], chip: ChipConfig
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The programs' blocks, one for each load, in program order, as arrays (start, end,
    bytes moved; ``cut[i]:cut[i + 1]`` are program ``i``'s): its source address
    (from ``dedupe.addresses``) with the offsets its register takes in its loop context,
    and its bytes times its loops' trip counts (``bounds.loop_contexts_of``). Array work
    over the loads of all the programs at once (a decode step's kernels are tens of
    instructions a core: array calls per program would cost more than the work), from
    each program's distinct signatures (``dedupe.shapes``)."""
    loads: dict = {}  # a load's (bytes charged, span) by its address-free signature
    is_load, is_loop, charged, extent, code = [], [], [], [], []
    per_pc, addrs, first, sizes = [], [], [], [0]
    n_addrs = 0
    for prog in programs:
        distinct, which = shapes(prog)
        per_pc.append(which + len(is_load))
        addrs.append(addresses(prog))
        first.append(address_starts(prog) + n_addrs)  # programs' addresses end to end
        n_addrs += len(addrs[-1])
        sizes.append(len(which))
        for sig, ins in distinct:
            load = ins.opcode == _LOAD
            is_load.append(load)
            is_loop.append(ins.opcode == _LOOP)
            known = (0, 0)
            if load:
                known = loads.get(sig)
                if known is None:
                    known = loads[sig] = (dma_bytes(ins, chip)[1], _extent(ins))
            charged.append(known[0])
            extent.append(known[1])
            code.append(ins.args[_SRC + 1] if load else 0)  # register code, not an address
    if not any(is_load):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(len(programs) + 1, dtype=np.int64)
    u_all = np.concatenate(per_pc)
    starts = np.cumsum(sizes)
    ctx, lo_tab, hi_tab, trips = loop_contexts_of(
        [p.instructions for p in programs], starts, np.array(is_loop, dtype=bool)[u_all])
    pcs = np.flatnonzero(np.array(is_load, dtype=bool)[u_all])
    u = u_all[pcs]
    addr = np.concatenate(addrs)[np.concatenate(first)[pcs] + _K_SRC]
    c, reg = ctx[pcs], np.array(code, dtype=np.int64)[u]
    start = addr + lo_tab[c, reg]
    end = addr + hi_tab[c, reg] + np.array(extent, dtype=np.int64)[u]
    exact = all(isinstance(x, int) for x in charged)
    moved = np.array(charged, dtype=np.int64 if exact else np.float64)[u] * trips[c]
    cut = np.searchsorted(pcs, starts)  # each program's first load
    return start, end, moved, cut


_LOAD = BY_MNEMONIC["dma.load"].opcode
_LOOP = BY_MNEMONIC["loop"].opcode
_SRC = BY_MNEMONIC["dma.load"].index("src.addr")  # then src.reg
_K_SRC = address_fields(_LOAD).index(_SRC)  # among its addresses


def _extent(ins: Instruction) -> int:
    """Bytes from a load's first to last source byte (strided rows included)."""
    return dict(footprint(ins))["src"]
