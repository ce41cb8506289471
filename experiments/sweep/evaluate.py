"""Evaluate one sweep point: build what it describes, run it, return one flat row."""

from __future__ import annotations

import dataclasses
import time
import traceback

from isa.errors import TesseraError


def evaluate(base: dict, point: dict) -> dict:
    """Metrics of one point, or a row with its error: a failed point never stops a sweep."""
    t0 = time.perf_counter()
    try:
        metrics = _run({**base, **{k: v for k, v in point.items() if "." not in k}}, point)
        return {**metrics, "status": "ok", "error": "", "wall_s": time.perf_counter() - t0}
    except (TesseraError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
        return {"status": "failed", "error": _one_line(exc), "wall_s": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - a bug in a point is recorded, the sweep goes on
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return {"status": "failed", "error": f"internal error {type(exc).__name__}: {exc} "
                f"({tb.filename.rsplit('/', 1)[-1]}:{tb.lineno})",
                "wall_s": time.perf_counter() - t0}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _run(base: dict, point: dict) -> dict:
    from experiments.area import area_mm2, cost_usd
    from experiments.run import run_model
    from experiments.sweep.check import PARALLEL
    from hardware.chips import load_chip, with_overrides
    from mapper.model import load_model
    from mapper.parallel import Parallel
    from mapper.pipeline import MapOptions

    model = load_model(base["model"])
    chip_over = {k[5:]: v for k, v in point.items() if k.startswith("chip.")}
    system = None
    if base.get("system"):
        from hardware.systems import load_system

        system = load_system(base["system"])
        if chip_over:
            system = dataclasses.replace(system, chips=tuple(
                with_overrides(c, chip_over, "sweep point") for c in system.chips))
        system = _system_overrides(system, point)
        chip = system.chips[0]
    else:
        chip = with_overrides(load_chip(base.get("chip", "edge")), chip_over, "sweep point") \
            if chip_over else load_chip(base.get("chip", "edge"))
    mapping = {k.split(".", 1)[1]: v for k, v in {**base, **point}.items()
               if k.startswith("mapping.")}
    if base.get("phase") == "train":
        return _train_row(model, chip, system, base, mapping)
    if base.get("phase") == "serve":
        knobs = {k.split(".", 1)[1]: v for k, v in {**base, **point}.items()
                 if k.startswith("serve.")}
        return _serve_row(model, chip, system, knobs)
    functional = bool(mapping.get("functional"))
    par = Parallel(**{k: int(mapping.pop(k)) for k in PARALLEL if k in mapping})
    opts = MapOptions(**mapping)
    mode = base.get("phase", "decode")
    rep = run_model(model, chip, mode, int(base.get("batch", 1)), int(base.get("seq", 512)),
                    int(base.get("ctx", 2048)), int(base.get("tokens", 16)), opts,
                    system=system, par=par if system is not None else None,
                    compose=not functional)
    runs = ([rep.prefill] if rep.prefill else []) + rep.decode
    first = runs[0].layer
    chips = len(system.chips) if system is not None else 1
    row = dict(rep.headline())
    totals = rep.totals()  # bytes and energy over the same scope as latency_s, energy_j
    row.update(scope=rep.scope, area_mm2=area_mm2(chip) * chips, cost_usd=cost_usd(chip) * chips,
               mac_utilization=first.mac_utilization, clock_hz=first.clock_hz,
               hbm_bytes=totals["hbm_read_bytes"] + totals["hbm_write_bytes"],
               **{f"util_{e}": s.utilization for e, s in first.engines.items()},
               **{k: v for k, v in totals.items() if k.startswith("energy_")})
    if "tokens_per_s" not in row:
        tokens = int(base.get("batch", 1)) * (int(base.get("seq", 512)) if mode == "prefill"
                                              else 1)
        row["tokens_per_s"] = tokens / row["latency_s"]
    if functional and (opts.quant or opts.sparsity or opts.low_rank):
        from experiments.run import compression_report, run_phase

        plain = dataclasses.replace(opts, quant=None, act_quant=None, quant_layers=None,
                                    sparsity=None, low_rank=0)
        base_run = run_phase(model, chip, runs[0].phase, plain)
        row["output_error"] = compression_report(runs[0], base_run, True)["output_error"]
    row["tokens_per_s_per_mm2"] = row["tokens_per_s"] / row["area_mm2"]
    row["tokens_per_s_per_usd"] = row["tokens_per_s"] / row["cost_usd"]
    return row


def _train_row(model, chip, system, base: dict, mapping: dict) -> dict:  # noqa: ANN001
    """A training step (``phase: train``): the knobs are mapping.tp/pp/dp/zero/recompute/
    schedule/virtual_stages/micro_batch/global_batch/recipe/sp/offload_optimizer/
    overlap_grad."""
    from experiments.area import area_mm2, cost_usd
    from experiments.train.step import TrainSpec, train_step

    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    unknown = sorted(set(mapping) - fields)
    if unknown:
        raise KeyError(f"mapping.{unknown[0]} is not a training knob ({', '.join(sorted(fields))})")
    spec = TrainSpec(**{"seq": int(base.get("seq", 2048)), **mapping})
    r = train_step(model, spec, chip, system)
    chips = len(system.chips) if system is not None else 1
    row = r.as_dict()
    row.update(latency_s=r.step_s, area_mm2=area_mm2(chip) * chips,
               cost_usd=cost_usd(chip) * chips)
    row["tokens_per_s_per_usd"] = r.tokens_per_s / row["cost_usd"]
    return row


def _serve_row(model, chip, system, knobs: dict) -> dict:  # noqa: ANN001
    """A serving run (``phase: serve``): the knobs are ``serve.*`` (``SERVE`` in
    experiments/sweep/check.py); with ``serve.find_capacity: true`` the row is the run at
    the highest rate within the SLOs, with ``capacity_req_s``."""
    from experiments.serve.run import find_capacity, serve, spec_from_knobs

    knobs = dict(knobs)
    capacity = bool(knobs.pop("find_capacity", False))
    spec = spec_from_knobs(knobs)
    if capacity:
        rate, row, _ = find_capacity(model, chip, system, spec)
        if not row:
            raise ValueError("no rate meets the SLOs")
        row = {**row, "capacity_req_s": rate}
    else:
        _, row = serve(model, chip, system, spec)
    row["latency_s"] = row["e2e_p50_s"]
    row["tokens_per_s"] = row["throughput_tok_s"]
    row["tokens_per_usd"] = 1e6 / row["usd_per_mtok"] if row["usd_per_mtok"] > 0 else 0.0
    return row


def _system_overrides(system, point: dict):  # noqa: ANN001
    from hardware.topology import Topology
    from hardware.units import parse

    for key, value in point.items():
        if key == "system.topology":
            kind, _, dims = str(value).partition(":")
            dims_t = tuple(int(x) for x in dims.split("x")) if dims else (len(system.chips),)
            system = dataclasses.replace(system, topology=Topology(kind, dims_t))
        elif key == "system.link.bandwidth":
            system = dataclasses.replace(system, link=dataclasses.replace(
                system.link, bandwidth=parse(value, "bandwidth")))
        elif key == "system.collective":
            system = dataclasses.replace(system, collective=str(value))
        elif key.startswith("system."):
            raise KeyError(f"unknown sweep parameter '{key}' (system.topology, "
                           f"system.link.bandwidth, system.collective)")
    return system
