"""Binary -> canonical assembly text that re-assembles to the identical binary.

Canonical form: constants first (``.equ``), then one instruction per line with its labels,
operands in table order, trailing operands equal to their defaults omitted, then data
sections as ``.bytes``. A jump target without a name gets a local label ``.L<index>``,
which the assembler does not export, so the symbol table round-trips unchanged.
"""

from __future__ import annotations

from isa.operands import Label
from isa.program import Instruction, Program

BYTES_PER_LINE = 16


def disassemble(program: Program) -> str:
    names: dict[int, list[str]] = {}
    for name, pc in program.labels.items():
        names.setdefault(pc, []).append(name)
    targets = {t for ins in program.instructions for t in _targets(ins)}
    for pc in sorted(targets):
        names.setdefault(pc, [f".L{pc}"])
    first = {pc: ns[0] for pc, ns in names.items()}
    out = [f".equ {k}, {v}" for k, v in program.constants.items()]
    if out:
        out.append("")
    for pc, ins in enumerate(program.instructions):
        out.extend(f"{n}:" for n in names.get(pc, ()))
        out.append("    " + format_instruction(ins, first))
    out.extend(f"{n}:" for n in names.get(len(program.instructions), ()))
    for seg in program.data:
        out.append(f".data {seg.space.asm_name}, {seg.addr:#x}")
        for i in range(0, len(seg.data), BYTES_PER_LINE):
            chunk = seg.data[i:i + BYTES_PER_LINE]
            out.append("    .bytes " + ", ".join(f"{b:#04x}" for b in chunk))
    return "\n".join(out) + "\n"


def _targets(ins: Instruction) -> list[int]:
    spec = ins.spec
    return [ins.args[spec.slices[o.name]][0] for o in spec.operands if isinstance(o.kind, Label)]


def format_instruction(ins: Instruction, labels: dict[int, str] | None = None) -> str:
    """One instruction in canonical text (``labels`` names jump targets)."""
    spec = ins.spec
    parts = []
    for op in spec.operands:
        raw = ins.args[spec.slices[op.name]]
        if isinstance(op.kind, Label) and labels and raw[0] in labels:
            parts.append(labels[raw[0]])
        else:
            parts.append(op.kind.fmt(raw))
    while parts and spec.operands[len(parts) - 1].optional and \
            ins.args[spec.slices[spec.operands[len(parts) - 1].name]] == \
            spec.operands[len(parts) - 1].kind.encode(spec.operands[len(parts) - 1].default):
        parts.pop()
    return spec.mnemonic + (" " + ", ".join(parts) if parts else "")
