"""``tessera presets``: the bundled chips, systems and models with their key figures."""

from __future__ import annotations

import argparse
import json

FOLDERS = {"chips": "hardware/presets/chips", "systems": "hardware/presets/systems",
           "models": "mapper/presets"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "presets", help="list the chip, system and model presets with their key figures",
        description="Every bundled chip (peak TFLOP/s per data type, HBM capacity and "
                    "bandwidth, cores, L2), system (chips, topology, link bandwidth) and "
                    "model (parameters, layers, hidden size, heads, FFN, experts, positions). "
                    "Give any of them by name to --chip, --system or --model.")
    p.add_argument("kind", nargs="?", choices=("chips", "systems", "models"),
                   help="only this kind (default: all three)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(handler=run)


def chip_figures(chip) -> dict:  # noqa: ANN001
    """Key figures of a chip, in the units the table prints them."""
    a = chip.core.array
    return {"name": chip.name, "cores": chip.cores, "array": f"{a.rows}x{a.cols}",
            "clock_ghz": chip.clock_hz / 1e9,
            "peak_tflops": {dt.asm_name: 2 * macs / 1e12
                            for dt, macs in chip.peak_macs_per_s.items()},
            "hbm_gb": chip.hbm.capacity / 1e9, "hbm_tb_s": chip.hbm.bandwidth / 1e12,
            "l2_mib": chip.l2.capacity / 2**20,
            "sram_kib_per_core": chip.core.sram.capacity / 1024,
            "tdp_w": chip.power.tdp_w}


def system_figures(system) -> dict:  # noqa: ANN001
    t = system.topology
    return {"name": system.name, "chips": len(system.chips), "chip": system.chips[0].name,
            "topology": f"{t.kind} {'x'.join(map(str, t.dims))}",
            "link_gb_s": system.link.bandwidth / 1e9,
            "link_latency_us": system.link.latency * 1e6,
            "collective": system.collective}


def model_figures(model) -> dict:  # noqa: ANN001
    return {"name": model.name, "params_b": model.params / 1e9, "layers": model.layers,
            "hidden": model.hidden, "heads": model.heads, "kv_heads": model.kv_heads,
            "ffn": model.ffn, "experts": model.experts, "vocab": model.vocab,
            "max_seq": model.max_seq}


def collect(kind: str | None = None) -> dict[str, list[dict]]:
    """{kind: [figures of each preset]} for the kinds asked."""
    from hardware.chips import list_presets, load_chip
    from hardware.systems import list_systems, load_system
    from mapper.model import list_models, load_model

    out: dict[str, list[dict]] = {}
    if kind in (None, "chips"):
        out["chips"] = [chip_figures(load_chip(n)) for n in list_presets()]
    if kind in (None, "systems"):
        out["systems"] = [system_figures(load_system(n)) for n in list_systems()]
    if kind in (None, "models"):
        out["models"] = [model_figures(load_model(n)) for n in list_models()]
    return out


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    found = collect(args.kind)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for kind, rows in found.items():
        if kind == "chips":  # one column per data type's peak
            rows = [{**{k: v for k, v in r.items() if k != "peak_tflops"},
                     **{f"tflops_{dt}": v for dt, v in r["peak_tflops"].items()}}
                    for r in rows]
        table = pd.DataFrame(rows).fillna("-")
        print(f"{kind} ({FOLDERS[kind]}):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print()
    return 0
