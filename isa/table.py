"""The instruction table: every instruction of the Tessera tensor ISA, defined once.

The assembler's operand checks, the encoder and decoder, the disassembler, ``docs/isa.md``
and the simulator's dispatch are all derived from ``TABLE``. Each row names its timing class
(``TIMING``: how ``simulator.engine.timing`` prices it) and its footprint kind (``isa.footprint``:
the bytes each memory operand touches); flags are read by name (``Instruction.flag``).
Adding an instruction is one row here plus its semantics in
``simulator/functional/semantics.py`` (and a cost function if its timing class is new);
``tests/isa/test_registry.py`` fails until every row has all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isa.operands import (
    F32,
    AReg,
    Choice,
    DTypeKind,
    Engine,
    Field,
    Flags,
    Kind,
    Label,
    Mem,
    SInt,
    Space,
    UInt,
)

WORD_BITS = 256
OPCODE_BITS = 8

HBM, SRAM, ACC = Space.HBM, Space.SRAM, Space.ACC
ENGINE_NAMES = ("dma", "mx", "vec", "net")
# Vector op classes: each has a cost per element (``VectorConfig.op_cycles``), per row and
# a latency in the chip description.
VECTOR_CLASSES = ("simple", "transcendental", "reduce", "quant", "softmax", "norm",
                  "welford")
# How an instruction is priced: free (control and synchronisation: no engine time of its
# own), by the matrix, DMA or copy formula, by the link model at run time (network), or
# by its vector class.
TIMING = ("free", "matrix", "dma", "copy", "memcpy", "network", *VECTOR_CLASSES)
FOOTPRINT_KINDS = ("none", "dma", "copy", "mm", "vector", "collective", "p2p")


@dataclass(frozen=True)
class Operand:
    name: str
    kind: Kind
    default: object = None
    doc: str = ""

    @property
    def optional(self) -> bool:
        return self.default is not None


@dataclass(frozen=True)
class OpSpec:
    """One row of the table. ``engine`` None means the ``eng`` operand names the engine."""

    mnemonic: str
    opcode: int
    engine: Engine | None
    operands: tuple[Operand, ...]
    semantics: str
    timing: str = "free"  # one of TIMING
    footprint: str = "none"  # one of FOOTPRINT_KINDS
    fields: tuple[Field, ...] = field(init=False)
    slices: dict[str, slice] = field(init=False, repr=False)
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flds: list[Field] = []
        slices: dict[str, slice] = {}
        for op in self.operands:
            start = len(flds)
            flds.extend(op.kind.fields(op.name))
            slices[op.name] = slice(start, len(flds))
        object.__setattr__(self, "fields", tuple(flds))
        object.__setattr__(self, "slices", slices)
        positions: dict[str, int] = {}
        for i, f in enumerate(flds):
            positions.setdefault(f.name, i)
        object.__setattr__(self, "_positions", positions)
        if self.timing not in TIMING or self.footprint not in FOOTPRINT_KINDS:
            raise AssertionError(f"{self.mnemonic}: timing {self.timing!r} / footprint "
                                 f"{self.footprint!r} not in TIMING / FOOTPRINT_KINDS")
        used = OPCODE_BITS + sum(f.bits for f in flds)
        if used > WORD_BITS:
            raise AssertionError(f"{self.mnemonic}: {used} bits exceed the {WORD_BITS}-bit word")

    def flag_bit(self, name: str) -> int:
        """Bit of flag ``name`` in the ``flags`` operand."""
        kinds = [op.kind for op in self.operands if isinstance(op.kind, Flags)]
        if not kinds or name not in kinds[0].names:
            raise KeyError(f"{self.mnemonic} has no flag {name!r}")
        return kinds[0].names.index(name)

    @property
    def n_required(self) -> int:
        return sum(1 for op in self.operands if not op.optional)

    def index(self, name: str) -> int:
        """Position of field ``name`` (e.g. ``rows`` or ``src.addr``) in ``Instruction.args``."""
        try:
            return self._positions[name]
        except KeyError:
            raise KeyError(f"{self.mnemonic} has no field {name!r}") from None


def _m(*spaces: Space) -> Mem:
    return Mem(tuple(spaces))


U16 = UInt(16, lo=1)
DT = DTypeKind()
VMEM = _m(SRAM, ACC)
NMEM = _m(HBM, SRAM)


def _shape() -> tuple[Operand, ...]:
    return (Operand("rows", U16, doc="tile rows"), Operand("cols", U16, doc="tile columns"))


def _dma(mn: str, opcode: int, dst: Mem, src: Mem, sem: str) -> OpSpec:
    return OpSpec(mn, opcode, Engine.DMA, timing="dma", footprint="dma", operands=(
        Operand("dst", dst), Operand("src", src), Operand("dtype", DT), *_shape(),
        Operand("stride", UInt(32), 0, "HBM-side row stride in elements (0: cols)"),
        Operand("depth", U16, 1, "number of planes (3-D tile)"),
        Operand("stride2", UInt(40), 0, "HBM-side plane stride in elements (0: rows*stride)"),
        Operand("pitch", UInt(16), 0, "SRAM-side row pitch in elements (0: cols)"),
        Operand("window", UInt(16), 0, "KiB the issuing kernel keeps in flight on this core "
                "(0: no limit): the HBM part moves at most window / dma.latency"),
    ), semantics=sem)


def _unary(mn: str, opcode: int, what: str, timing: str) -> OpSpec:
    return OpSpec(mn, opcode, Engine.VECTOR, timing=timing, footprint="vector", operands=(
        Operand("dst", VMEM), Operand("src", VMEM), *_shape(),
        Operand("odt", DT, doc="output type"), Operand("idt", DT, doc="input type"),
    ), semantics=f"dst[r,c] = {what}(src[r,c]), computed in fp32, rounded to odt")


def _binary(mn: str, opcode: int, expr: str) -> OpSpec:
    return OpSpec(mn, opcode, Engine.VECTOR, timing="simple", footprint="vector", operands=(
        Operand("dst", VMEM), Operand("a", VMEM), Operand("b", VMEM), *_shape(),
        Operand("odt", DT), Operand("adt", DT), Operand("bdt", DT),
        Operand("bcast", Choice(("none", "row", "col", "scalar")), "none",
                "b is [rows,cols] | [1,cols] | [rows,1] | [1,1]"),
    ), semantics=f"dst[r,c] = {expr} with b broadcast as bcast says")


def _rowop(mn: str, opcode: int, timing: str, sem: str, mem3: Operand | None = None,
           tail: tuple[Operand, ...] = ()) -> OpSpec:
    """A row-wise vector op: dst, src[, a third memory operand], shape, types[, immediates]."""
    third = (mem3,) if mem3 is not None else ()
    return OpSpec(mn, opcode, Engine.VECTOR, timing=timing, footprint="vector", operands=(
        Operand("dst", VMEM), Operand("src", VMEM), *third, *_shape(),
        Operand("odt", DT), Operand("idt", DT), *tail,
    ), semantics=sem)


def _gradop(mn: str, opcode: int, sem: str, params: str) -> OpSpec:
    """A norm's backward over rows: x, the output gradient dy and the norm's parameters."""
    return OpSpec(mn, opcode, Engine.VECTOR, timing="norm", footprint="vector", operands=(
        Operand("dst", VMEM), Operand("src", VMEM, doc="x [rows, cols]"),
        Operand("dy", VMEM, doc="dL/dy [rows, cols] in idt"),
        Operand("params", VMEM, doc=params), *_shape(),
        Operand("odt", DT), Operand("idt", DT),
    ), semantics=sem)


def _coll(mn: str, opcode: int, sem: str, *extra: Operand) -> OpSpec:
    return OpSpec(mn, opcode, Engine.NETWORK, timing="network", footprint="collective",
                  operands=(
        Operand("dst", NMEM), Operand("src", NMEM),
        Operand("count", UInt(32, lo=1), doc="elements (per chip, see semantics)"),
        Operand("dtype", DT), Operand("group", UInt(8), 0, "chip group (0: all chips)"), *extra,
    ), semantics=sem)


_EPS = Operand("eps", F32(), 1e-5, "added to the variance")
_SCALES = Operand("scales", VMEM, doc="fp32 scales: [rows] or [rows, cols/group]")
_GROUP = Operand("group", UInt(16), 0, "columns per scale (0: one scale per row)")
_ENG = Operand("eng", Choice(ENGINE_NAMES), doc="engine whose queue executes it")
_SEM = Operand("sem", UInt(8), doc="semaphore number 0..255 of this core")
_PEER = Operand("peer", UInt(16), doc="chip id of the peer")
_TAG = Operand("tag", UInt(8), 0, "matches a send with its recv")

TABLE: tuple[OpSpec, ...] = (
    # control
    OpSpec("nop", 0x00, Engine.CONTROL, (), "do nothing"),
    OpSpec("halt", 0x01, Engine.CONTROL, (),
           "stop dispatching; the core finishes when its engines drain"),
    OpSpec("loop", 0x02, Engine.CONTROL, (
        Operand("count", UInt(32, lo=1), doc="iterations"),
        Operand("end", Label(), doc="first instruction after the body"),
        Operand("r0", AReg(), "none"), Operand("inc0", SInt(40), 0, "added to r0 per iteration"),
        Operand("r1", AReg(), "none"), Operand("inc1", SInt(40), 0, "added to r1 per iteration"),
    ), "run [pc+1, end) count times, adding inc0 to r0 and inc1 to r1 after each; "
       "restore both on exit"),
    # DMA
    _dma("dma.load", 0x10, _m(SRAM), _m(HBM), "tile HBM -> SRAM (strided on the HBM side)"),
    _dma("dma.store", 0x11, _m(HBM), _m(SRAM), "tile SRAM -> HBM (strided on the HBM side)"),
    _dma("dma.storeadd", 0x13, _m(HBM), _m(SRAM),
         "tile SRAM added into HBM in dtype (a reduce-add store, as TMA's; concurrent "
         "storeadds to one place commute and do not race)"),
    OpSpec("dma.copy", 0x12, Engine.DMA, (
        Operand("dst", VMEM), Operand("src", VMEM), Operand("dtype", DT), *_shape(),
    ), "dense tile copy within the core (SRAM/accumulator)", "copy", "copy"),
    OpSpec("dma.memcpy", 0x14, Engine.DMA, (
        Operand("dst", _m(HBM)), Operand("src", _m(HBM)), Operand("dtype", DT), *_shape(),
    ), "dense copy of rows x cols elements within HBM on the chip's copy engine "
       "(copy_engine; a GPU driver's large device-to-device copy), not the core's DMA",
        "memcpy", "copy"),
    # matrix engine
    OpSpec("mm", 0x20, Engine.MATRIX, (
        Operand("dst", _m(ACC), doc="accumulator tile [m,n] in fp32 / int32"),
        Operand("a", _m(SRAM), doc="activation tile [m,k] (or [k,m] with ta)"),
        Operand("w", _m(SRAM),
                doc="weight tile [k,n] (or [n,k] with tw; 2:4-compressed with sp24)"),
        Operand("m", U16), Operand("k", U16), Operand("n", U16),
        Operand("adt", DT), Operand("wdt", DT),
        Operand("flags", Flags(("accum", "ta", "tw", "sp24")), 0,
                "accum: add to dst; ta/tw: operand transposed; sp24: 2:4 sparse weights"),
    ), "dst (+)= a @ w, products exact, accumulated in fp32 (floats) or int32 (integers)",
        "matrix", "mm"),
    # vector engine: elementwise unary
    _unary("v.exp", 0x30, "exp", "transcendental"),
    _unary("v.gelu", 0x31, "gelu_tanh", "transcendental"),
    _unary("v.silu", 0x32, "silu", "transcendental"),
    _unary("v.relu", 0x33, "relu", "simple"),
    _unary("v.rsqrt", 0x34, "rsqrt", "transcendental"),
    _unary("v.recip", 0x35, "reciprocal", "transcendental"),
    _unary("v.cast", 0x36, "identity", "simple"),
    _unary("v.dsilu", 0x37, "silu'", "transcendental"),
    _unary("v.dgelu", 0x38, "gelu_tanh'", "transcendental"),
    _unary("v.cos", 0x39, "cos", "transcendental"),
    _unary("v.sin", 0x3A, "sin", "transcendental"),
    # vector engine: elementwise binary
    _binary("v.add", 0x40, "a + b"),
    _binary("v.sub", 0x41, "a - b"),
    _binary("v.mul", 0x42, "a * b"),
    _binary("v.max", 0x43, "max(a, b)"),
    # vector engine: rows
    _rowop("v.rsum", 0x48, "reduce", "dst[r,0] = sum_c src[r,c]"),
    _rowop("v.rmax", 0x49, "reduce", "dst[r,0] = max_c src[r,c]"),
    OpSpec("v.welford", 0x4E, Engine.VECTOR, (
        Operand("dst", VMEM, doc="fp32: each row's sum, then its sum of squares ld on"),
        Operand("src", VMEM), *_shape(), Operand("odt", DT), Operand("idt", DT),
        Operand("ld", U16, doc="elements from the sums to the sums of squares (>= rows)"),
    ), "dst[r] = sum_c src[r,c]; dst[ld + r] = sum_c src[r,c]^2 (a LayerNorm's statistics, "
       "priced as the per-element Welford update a GPU kernel runs)", "welford", "vector"),
    _rowop("v.scale", 0x4A, "simple", "dst = src * s", tail=(Operand("s", F32()),)),
    _rowop("v.adds", 0x4D, "simple", "dst = src + s", tail=(Operand("s", F32()),)),
    _rowop("v.quant", 0x4B, "quant",
           "dst = saturate(round_half_even(src / scale)) in odt (symmetric linear)",
           _SCALES, (_GROUP,)),
    _rowop("v.dequant", 0x4C, "quant", "dst = src * scale", _SCALES, (_GROUP,)),
    _rowop("v.softmax", 0x50, "softmax", "dst[r,:] = softmax(src[r,:])",
           tail=(Operand("flags", Flags(("warp",)), 0,
                         "warp: each row on one lane group (VectorConfig.group_lanes), as "
                         "a GPU's warp-per-row softmax runs rows that fit its registers"),)),
    _rowop("v.layernorm", 0x51, "norm", "dst[r,:] = (x - mean) / sqrt(var + eps) * gamma + beta",
           Operand("params", VMEM, doc="fp32 gamma[cols] then beta[cols]"), (_EPS,)),
    _rowop("v.rmsnorm", 0x52, "norm", "dst[r,:] = x / sqrt(mean(x^2) + eps) * gamma",
           Operand("params", VMEM, doc="fp32 gamma[cols]"), (_EPS,)),
    _gradop("v.rmsgrad", 0x56, "dst = dL/dx of rmsnorm(x) * gamma given dy = dL/dy",
            "fp32 gamma[cols], then eps"),
    _gradop("v.lngrad", 0x57, "dst = dL/dx of layernorm(x) * gamma + beta given dy = dL/dy",
            "fp32 gamma[cols], then eps (beta has no part in dL/dx)"),
    _rowop("v.rope", 0x53, "simple",
           "rotate-half rotary embedding applied to each head of width hd",
           Operand("table", VMEM, doc="fp32 [rows, hd]: cos(hd/2 values) then sin(hd/2) per row"),
           (Operand("hd", U16, doc="head dimension"),)),
    _rowop("v.lut", 0x55, "simple",
           "dst[r,c] = table[src[r,c] mod 2^bits(idt)] (decodes log / clustered codes)",
           Operand("table", VMEM, doc="fp32 [2^bits(idt)]: the value of each code")),
    _rowop("v.cmask", 0x54, "simple",
           "dst[r,c] = -inf where c > r + offset, else src[r,c] (causal mask)",
           tail=(Operand("offset", SInt(32), 0, "diagonal offset"),)),
    # network
    OpSpec("net.send", 0x60, Engine.NETWORK, (
        _PEER, Operand("src", NMEM), Operand("bytes", UInt(32, lo=1)), _TAG,
    ), "send bytes to chip peer", "network", "p2p"),
    OpSpec("net.recv", 0x61, Engine.NETWORK, (
        _PEER, Operand("dst", NMEM), Operand("bytes", UInt(32, lo=1)), _TAG,
    ), "receive bytes from chip peer", "network", "p2p"),
    _coll("net.allreduce", 0x62, "dst[i] = sum over the group of src[i]; count elements"),
    _coll("net.allgather", 0x63, "dst = concat over the group of src; count elements per chip"),
    _coll("net.reducescatter", 0x64, "dst = this chip's slice of the sum; count elements out"),
    _coll("net.alltoall", 0x65, "block j of src goes to chip j; count elements per block"),
    _coll("net.bcast", 0x66, "dst = src of chip root", Operand("root", UInt(16), 0)),
    OpSpec("net.barrier", 0x67, Engine.NETWORK, (Operand("group", UInt(8), 0),),
           "wait until every chip of the group reaches it", "network"),
    # synchronisation
    OpSpec("sem.signal", 0x70, None, (_ENG, _SEM), "in eng's order: sem += 1"),
    OpSpec("sem.wait", 0x71, None, (_ENG, _SEM, Operand("count", UInt(8, lo=1), 1)),
           "in eng's order: block until sem >= count, then sem -= count"),
    OpSpec("barrier", 0x72, Engine.CONTROL, (),
           "dispatch waits until every engine of the core drains"),
)


BY_MNEMONIC: dict[str, OpSpec] = {s.mnemonic: s for s in TABLE}
BY_OPCODE: dict[int, OpSpec] = {s.opcode: s for s in TABLE}
assert len(BY_MNEMONIC) == len(TABLE) == len(BY_OPCODE), "duplicate mnemonic or opcode"
