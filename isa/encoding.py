"""Fixed-width 256-bit instruction words, encoded and decoded a whole array at a time.

A word is four little-endian 64-bit lanes; bit ``i`` of the word is bit ``i % 64`` of lane
``i // 64``. Bits 0-7 hold the opcode; the table's fields follow in order from bit 8, a field
may straddle two lanes, and every bit after the last field is reserved and must be zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from isa.errors import DecodeError
from isa.operands import F32, AReg, Choice, DTypeKind, Flags, Label, Mem, SInt, UInt
from isa.program import Instruction
from isa.table import OPCODE_BITS, TABLE, WORD_BITS, OpSpec

WORD_BYTES = WORD_BITS // 8
LANES = WORD_BITS // 64


@dataclass(frozen=True)
class Piece:
    """The part of field ``index`` that lies in one lane: value bits [src, src+width)."""

    index: int
    lane: int
    shift: int
    width: int
    src: int


@dataclass(frozen=True)
class Layout:
    spec: OpSpec
    offsets: tuple[int, ...]  # first bit of each field
    pieces: tuple[Piece, ...]
    used: tuple[int, ...]  # per lane: mask of bits the opcode and fields occupy


def _layout(spec: OpSpec) -> Layout:
    offsets, pieces, used = [], [], [0] * LANES
    used[0] = (1 << OPCODE_BITS) - 1
    bit = OPCODE_BITS
    for i, f in enumerate(spec.fields):
        offsets.append(bit)
        done = 0
        while done < f.bits:
            lane, shift = divmod(bit + done, 64)
            width = min(f.bits - done, 64 - shift)
            pieces.append(Piece(i, lane, shift, width, done))
            used[lane] |= ((1 << width) - 1) << shift
            done += width
        bit += f.bits
    return Layout(spec, tuple(offsets), tuple(pieces), tuple(used))


LAYOUTS: dict[int, Layout] = {s.opcode: _layout(s) for s in TABLE}


def encode_words(instructions: Sequence[Instruction]) -> np.ndarray:
    """Encode instructions into an (N, 4) uint64 array of words."""
    words = np.zeros((len(instructions), LANES), dtype=np.uint64)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, ins in enumerate(instructions):
        groups[ins.opcode].append(i)
    for opcode, idx in groups.items():
        lay = LAYOUTS[opcode]
        rows = np.asarray(idx)
        words[rows, 0] = opcode
        if not lay.spec.fields:
            continue
        cols = np.array([instructions[i].args for i in idx], dtype=np.int64).reshape(len(idx), -1)
        for p in lay.pieces:
            part = (cols[:, p.index] >> p.src).astype(np.uint64) & np.uint64((1 << p.width) - 1)
            words[rows, p.lane] |= part << np.uint64(p.shift)
    return words


def encode(instructions: Sequence[Instruction]) -> bytes:
    """Encode instructions into ``32 * N`` bytes."""
    return encode_words(instructions).astype("<u8").tobytes()


def decode(data: bytes | np.ndarray, base: int = 0) -> list[Instruction]:
    """Decode words back into instructions, rejecting any word that is not a valid instruction.

    ``base`` is the byte offset of ``data`` in its file, used only in error messages.
    """
    if len(data) % WORD_BYTES:
        raise DecodeError(f"code section of {len(data)} bytes is not a whole number of "
                          f"{WORD_BYTES}-byte words")
    words = np.frombuffer(bytes(data), dtype="<u8").reshape(-1, LANES).astype(np.uint64)
    opcodes = (words[:, 0] & np.uint64(0xFF)).astype(np.int64)
    out: list[Instruction | None] = [None] * len(words)
    for opcode in np.unique(opcodes).tolist():
        rows = np.nonzero(opcodes == opcode)[0]
        lay = LAYOUTS.get(opcode)
        if lay is None:
            _fail(int(rows[0]), base, f"unknown opcode {opcode:#04x}")
        _check_reserved(words[rows], rows, lay, base)
        cols = _extract(words[rows], lay)
        _check_values(cols, rows, lay, base)
        for r, vals in zip(rows.tolist(), cols.tolist()):
            out[r] = Instruction(opcode, tuple(vals))
    return out  # type: ignore[return-value]


def _extract(words: np.ndarray, lay: Layout) -> np.ndarray:
    cols = np.zeros((len(words), len(lay.spec.fields)), dtype=np.int64)
    for p in lay.pieces:
        part = (words[:, p.lane] >> np.uint64(p.shift)) & np.uint64((1 << p.width) - 1)
        cols[:, p.index] |= (part << np.uint64(p.src)).astype(np.int64)
    for i, f in enumerate(lay.spec.fields):
        if f.signed:
            sign = 1 << (f.bits - 1)
            cols[:, i] = (cols[:, i] ^ sign) - sign
    return cols


def _check_reserved(words: np.ndarray, rows: np.ndarray, lay: Layout, base: int) -> None:
    for lane in range(LANES):
        bad = np.nonzero(words[:, lane] & ~np.uint64(lay.used[lane]))[0]
        if len(bad):
            _fail(int(rows[bad[0]]), base,
                  f"{lay.spec.mnemonic}: reserved bits set in bits {lane * 64}..{lane * 64 + 63}")


def _check_values(cols: np.ndarray, rows: np.ndarray, lay: Layout, base: int) -> None:
    """Vectorised range checks per operand kind, so no decoded word is silently wrong."""
    spec = lay.spec
    for op in spec.operands:
        sl = spec.slices[op.name]
        c = cols[:, sl]
        kind = op.kind
        bad: np.ndarray
        if isinstance(kind, UInt):
            bad = (c[:, 0] < kind.lo) | (c[:, 0] > kind.top)
        elif isinstance(kind, Mem):
            allowed = np.isin(c[:, 0], [int(s) for s in kind.spaces])
            bad = ~allowed | (c[:, 2] > 8)
        elif isinstance(kind, (Choice, DTypeKind)):
            n = len(kind.names) if isinstance(kind, Choice) else 8
            bad = c[:, 0] >= n
        elif isinstance(kind, AReg):
            bad = c[:, 0] > 8
        elif isinstance(kind, F32):
            bad = (c[:, 0] >> 23 & 0xFF) == 0xFF
        elif isinstance(kind, (SInt, Label, Flags)):
            continue
        else:  # pragma: no cover - a new kind must add its check here
            raise AssertionError(f"no decode check for {type(kind).__name__}")
        hit = np.nonzero(bad)[0]
        if len(hit):
            raw = tuple(int(v) for v in c[hit[0]])
            why = kind.check_raw(raw) or f"invalid value {raw}"
            _fail(int(rows[hit[0]]), base, f"{spec.mnemonic} operand '{op.name}': {why}")


def _fail(index: int, base: int, msg: str) -> None:
    raise DecodeError(f"instruction {index} (byte offset {base + index * WORD_BYTES:#x}): {msg}")


__all__ = ["LAYOUTS", "WORD_BYTES", "decode", "encode", "encode_words"]
