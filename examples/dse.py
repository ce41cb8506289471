"""Design-space exploration from Python: a chip variant built in code, prefill and decode on
it and on its base, and a two-parameter sweep into a pandas DataFrame.

    python examples/dse.py                       # llama2-7b on a TPUv4-like chip (~1 min)
    python examples/dse.py --model tiny-llama --chip edge   # seconds

Everything here is the public API (docs/api.md): ``experiments.api``.
"""

from __future__ import annotations

import argparse

import pandas as pd

from experiments import api


def doubled(chip) -> dict:  # noqa: ANN001
    """Overrides for twice the array edge (and the SRAM port that feeds it)."""
    core = chip.core
    return {"core.array.rows": 2 * core.array.rows, "core.array.cols": 2 * core.array.cols,
            "core.sram.bytes_per_cycle": 2 * core.sram.bytes_per_cycle}


def compare(model: str, chip: str, seq: int, batch: int, ctx: int) -> pd.DataFrame:
    """Prefill and decode on the chip and on a variant: twice the HBM bandwidth, twice
    the array edge."""
    base = api.chip(chip)
    variant = api.chip(base, {"hbm.bandwidth": 2 * base.hbm.bandwidth, **doubled(base)})
    rows = []
    for name, c in ((base.name, base), (f"{base.name}: 2x HBM, 2x array", variant)):
        prefill = api.run(model, c, phase="prefill", batch=1, seq=seq)
        decode = api.run(model, c, phase="decode", batch=batch, ctx=ctx)
        rows.append({"chip": name, "ttft_ms": prefill.headline()["latency_s"] * 1e3,
                     "prefill_j": prefill.headline()["energy_j"],
                     "decode_step_ms": decode.headline()["latency_s"] * 1e3,
                     "decode_tokens_per_s": batch / decode.headline()["latency_s"],
                     "decode_hbm_gb": decode.totals()["hbm_read_bytes"] / 1e9})
    return pd.DataFrame(rows)


def sweep(model: str, chip: str, batch: int, ctx: int, workers: int) -> pd.DataFrame:
    """Decode over array size x HBM bandwidth."""
    base = api.chip(chip)
    a, bw = base.core.array, base.hbm.bandwidth
    big = doubled(base)
    array = "chip.core.array.rows,chip.core.array.cols,chip.core.sram.bytes_per_cycle"
    return api.sweep({"model": model, "chip": chip, "phase": "decode", "batch": batch,
                      "ctx": ctx},
                     {array: [[a.rows, a.cols, base.core.sram.bytes_per_cycle],
                              [big["core.array.rows"], big["core.array.cols"],
                               big["core.sram.bytes_per_cycle"]]],
                      "chip.hbm.bandwidth": [bw, 2 * bw]}, workers=workers)


def main(argv: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="llama2-7b")
    p.add_argument("--chip", default="tpuv4")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    table = compare(a.model, a.chip, a.seq, a.batch, a.ctx)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    df = sweep(a.model, a.chip, a.batch, a.ctx, a.workers)
    cols = ["chip.core.array.rows", "chip.hbm.bandwidth", "latency_s", "energy_j", "status"]
    print(df[cols].to_string(index=False))
    return table, df


if __name__ == "__main__":
    main()
