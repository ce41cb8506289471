"""The binary program file: a small header, a section table, and CRC-checked sections.

Layout (all integers little-endian)::

    0   4  magic  b"TSRA"
    4   2  format version (1)
    6   2  section count
    8   4  instruction word width in bits (256)
    12  4  reserved, zero
    16  .. section table: per section u32 kind, u32 crc32, u64 offset, u64 size
    ..  .. section payloads

Sections: CODE (kind 1): the instruction words. DATA (kind 2): segments, each u8 space,
7 zero bytes, u64 address, u64 length, then the bytes padded to 8. SYMBOLS (kind 3):
u32 count, then per symbol u8 kind (0 label, 1 constant), u8 zero, u16 name length,
i64 value, then the UTF-8 name. Every check that fails raises ``DecodeError``: a truncated,
corrupted or foreign file never becomes a wrong program.
"""

from __future__ import annotations

import re
import struct
import zlib
from enum import IntEnum

from isa.encoding import WORD_BYTES, decode, encode
from isa.errors import DecodeError
from isa.operands import Label, Space
from isa.program import DataSegment, Program
from isa.table import WORD_BITS

MAGIC = b"TSRA"
VERSION = 1
_HEADER = struct.Struct("<4sHHII")
_SECTION = struct.Struct("<IIQQ")
_SEGMENT = struct.Struct("<B7xQQ")
_SYMBOL = struct.Struct("<BxHq")
_NAME = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*\Z")


class Section(IntEnum):
    CODE = 1
    DATA = 2
    SYMBOLS = 3


def write_binary(program: Program) -> bytes:
    """Serialise a program; ``read_binary`` gives it back exactly."""
    payloads = [
        (Section.CODE, encode(program.instructions)),
        (Section.DATA, _pack_data(program)),
        (Section.SYMBOLS, _pack_symbols(program)),
    ]
    offset = _HEADER.size + _SECTION.size * len(payloads)
    table, body = [], []
    for kind, blob in payloads:
        table.append(_SECTION.pack(kind, zlib.crc32(blob), offset, len(blob)))
        body.append(blob)
        offset += len(blob)
    header = _HEADER.pack(MAGIC, VERSION, len(payloads), WORD_BITS, 0)
    return header + b"".join(table) + b"".join(body)


def read_binary(data: bytes, name: str = "<bytes>") -> Program:
    """Parse and validate a binary program; errors name the file and what is wrong."""
    try:
        return _read(bytes(data))
    except DecodeError as exc:
        raise DecodeError(f"{name}: {exc}") from None


def _read(data: bytes) -> Program:
    if len(data) < _HEADER.size:
        if not MAGIC.startswith(data[:4]):
            raise DecodeError("not a Tessera binary (bad magic number)")
        raise DecodeError(f"truncated: {len(data)} bytes, shorter than the "
                          f"{_HEADER.size}-byte header")
    magic, version, count, width, reserved = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"not a Tessera binary (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise DecodeError(f"format version {version} is not supported (this build reads {VERSION})")
    if width != WORD_BITS or reserved != 0:
        raise DecodeError(f"header declares {width}-bit words; this build reads {WORD_BITS}")
    sections = _read_sections(data, count)
    code_off, code = sections[Section.CODE]
    instructions = decode(code, base=code_off)
    labels, constants = _unpack_symbols(sections[Section.SYMBOLS][1])
    _check_targets(instructions, labels)
    return Program(tuple(instructions), _unpack_data(sections[Section.DATA][1]), labels, constants)


def _read_sections(data: bytes, count: int) -> dict[Section, tuple[int, bytes]]:
    end_table = _HEADER.size + _SECTION.size * count
    if len(data) < end_table:
        raise DecodeError("truncated: the section table runs past the end of the file")
    out: dict[Section, tuple[int, bytes]] = {}
    for i in range(count):
        kind, crc, off, size = _SECTION.unpack_from(data, _HEADER.size + i * _SECTION.size)
        if kind not in Section._value2member_map_:
            raise DecodeError(f"section {i} has unknown kind {kind}")
        sec = Section(kind)
        if sec in out:
            raise DecodeError(f"section {sec.name} appears twice")
        if off < end_table or off + size > len(data):
            raise DecodeError(f"truncated: section {sec.name} ({size} bytes at {off}) runs past "
                              f"the end of the {len(data)}-byte file")
        blob = data[off:off + size]
        if zlib.crc32(blob) != crc:
            raise DecodeError(f"section {sec.name} is corrupted (CRC mismatch)")
        out[sec] = (off, blob)
    missing = [s.name for s in Section if s not in out]
    if missing:
        raise DecodeError(f"missing section(s): {', '.join(missing)}")
    return out


def _pack_data(program: Program) -> bytes:
    parts = []
    for seg in program.data:
        pad = -len(seg.data) % 8
        parts.append(_SEGMENT.pack(int(seg.space), seg.addr, len(seg.data)) + seg.data + bytes(pad))
    return b"".join(parts)


def _unpack_data(blob: bytes) -> tuple[DataSegment, ...]:
    segs, pos = [], 0
    while pos < len(blob):
        if pos + _SEGMENT.size > len(blob):
            raise DecodeError("DATA section: truncated segment header")
        space, addr, length = _SEGMENT.unpack_from(blob, pos)
        pos += _SEGMENT.size
        if space >= len(Space):
            raise DecodeError(f"DATA section: segment space code {space} is not a memory space")
        if pos + length > len(blob):
            raise DecodeError("DATA section: segment runs past the section end")
        segs.append(DataSegment(Space(space), addr, blob[pos:pos + length]))
        pos += length + (-length % 8)
    return tuple(segs)


def _pack_symbols(program: Program) -> bytes:
    items = [(0, k, v) for k, v in program.labels.items()]
    items += [(1, k, v) for k, v in program.constants.items()]
    parts = [struct.pack("<I", len(items))]
    for kind, name, value in items:
        raw = name.encode()
        parts.append(_SYMBOL.pack(kind, len(raw), value) + raw)
    return b"".join(parts)


def _unpack_symbols(blob: bytes) -> tuple[dict[str, int], dict[str, int]]:
    if len(blob) < 4:
        raise DecodeError("SYMBOLS section: truncated")
    (count,), pos = struct.unpack_from("<I", blob), 4
    labels: dict[str, int] = {}
    constants: dict[str, int] = {}
    for _ in range(count):
        if pos + _SYMBOL.size > len(blob):
            raise DecodeError("SYMBOLS section: truncated symbol")
        kind, n, value = _SYMBOL.unpack_from(blob, pos)
        pos += _SYMBOL.size
        try:
            name = blob[pos:pos + n].decode()
        except UnicodeDecodeError:
            raise DecodeError("SYMBOLS section: a symbol name is not UTF-8") from None
        pos += n
        if kind > 1 or len(name) != n or not _NAME.match(name):
            raise DecodeError(f"SYMBOLS section: bad symbol {name!r}")
        table = labels if kind == 0 else constants
        if name in table:
            raise DecodeError(f"SYMBOLS section: symbol {name!r} appears twice")
        table[name] = value
    if pos != len(blob):
        raise DecodeError("SYMBOLS section: trailing bytes")
    return labels, constants


def _check_targets(instructions: list, labels: dict[str, int]) -> None:
    n = len(instructions)
    for name, pc in labels.items():
        if not 0 <= pc <= n:
            raise DecodeError(f"label {name!r} points at {pc}, outside the {n}-instruction program")
    for i, ins in enumerate(instructions):
        spec = ins.spec
        for op in spec.operands:
            if isinstance(op.kind, Label):
                target = ins.args[spec.slices[op.name]][0]
                if not i < target <= n:
                    raise DecodeError(f"instruction {i} ({spec.mnemonic}): target {target} "
                                      f"outside {i + 1}..{n}")


__all__ = ["MAGIC", "VERSION", "WORD_BYTES", "read_binary", "write_binary"]
