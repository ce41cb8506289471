"""Render the instruction table as Markdown: ``docs/isa.md`` is this function's output."""

from __future__ import annotations

from isa.dtypes import DType
from isa.encoding import LAYOUTS
from isa.table import OPCODE_BITS, TABLE, WORD_BITS, OpSpec

_INTRO = f"""# Tessera ISA reference

_Generated from `isa/table.py` by `tessera isa --markdown`; do not edit by hand._

Every instruction is one fixed-width {WORD_BITS}-bit word: four little-endian 64-bit lanes,
bit *i* of the word being bit *i* mod 64 of lane *i* div 64. Bits 0-{OPCODE_BITS - 1} hold the
opcode; the fields follow in the order listed, from bit {OPCODE_BITS}; every bit after the last
field is reserved and must be zero (a decoder rejects a word that sets one). A memory operand
is three fields: `space` (0 hbm, 1 sram, 2 acc), `addr` (byte address) and `reg` (0: none,
1-8: address register a0-a7, whose value is added to `addr`). Signed fields are two's
complement; float immediates are IEEE float32 bit patterns.

Each instruction runs on one engine of a core (dma, mx, vec, net, ctl); engines run
concurrently, each in program order, and are ordered against each other only by `sem.*`
instructions. `loop` executes without unrolling: address registers start at 0, are
incremented after each iteration and restored when the loop exits, so nested loops compose.

Data types ({len(DType)}, 4-bit code): {", ".join(f"`{d.asm_name}`={int(d)}" for d in DType)}.
int4 packs two elements per byte, element 0 in the low nibble. Accumulators hold fp32 for
float operands and int32 for integer operands.
"""


def _summary() -> str:
    rows = ["| opcode | mnemonic | engine | timing | semantics |", "|---|---|---|---|---|"]
    for s in TABLE:
        eng = s.engine.value if s.engine else "`eng` operand"
        link = f"[`{s.mnemonic}`](#{_anchor(s)})"
        rows.append(f"| `{s.opcode:#04x}` | {link} | {eng} | {s.timing} | {s.semantics} |")
    return "\n".join(rows)


def _anchor(s: OpSpec) -> str:
    return s.mnemonic.replace(".", "")


def _detail(s: OpSpec) -> str:
    lay = LAYOUTS[s.opcode]
    lines = [f"### {s.mnemonic}", "", f"`{_syntax(s)}`", "", s.semantics + ".", ""]
    if not s.operands:
        return "\n".join(lines + ["No operands.", ""])
    lines += ["| field | bits | operand | kind | default |", "|---|---|---|---|---|"]
    for i, f in enumerate(s.fields):
        op = next(o for o in s.operands if s.slices[o.name].start <= i < s.slices[o.name].stop)
        first = s.slices[op.name].start == i
        lo = lay.offsets[i]
        kind = (op.kind.doc + (f" — {op.doc}" if op.doc else "")) if first else ""
        default = "" if not (first and op.optional) else f"`{op.default}`"
        lines.append(f"| `{f.name}` | {lo}-{lo + f.bits - 1} | {op.name if first else ''} "
                     f"| {kind} | {default} |")
    used = OPCODE_BITS + sum(f.bits for f in s.fields)
    if used < WORD_BITS:
        lines.append(f"| reserved | {used}-{WORD_BITS - 1} | | zero | |")
    return "\n".join(lines + [""])


def _syntax(s: OpSpec) -> str:
    parts = [f"[{o.name}]" if o.optional else o.name for o in s.operands]
    return s.mnemonic + (" " + ", ".join(parts) if parts else "")


def isa_markdown() -> str:
    """The whole reference page."""
    body = "\n".join(_detail(s) for s in TABLE)
    return f"{_INTRO}\n## Instructions\n\n{_summary()}\n\n## Encodings\n\n{body}".rstrip() + "\n"


def isa_text() -> str:
    """A terminal-width table for ``tessera isa``."""
    out = [f"{'opcode':6}  {'mnemonic':18} {'engine':6} operands"]
    for s in TABLE:
        eng = s.engine.value if s.engine else "(eng)"
        ops = ", ".join(f"[{o.name}]" if o.optional else o.name for o in s.operands)
        out.append(f"0x{s.opcode:02x}    {s.mnemonic:18} {eng:6} {ops}")
    return "\n".join(out)
