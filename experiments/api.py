"""Tessera's Python API for design-space exploration scripts: what the CLI does, as calls.

    from experiments import api

    chip = api.chip("h100", {"core.array.rows": 64, "hbm.bandwidth": "4 TB/s"})
    rep = api.run("llama2-7b", chip, phase="decode", batch=8, ctx=2048)
    rep.headline()["latency_s"], rep.totals()["energy_hbm_j"]
    df = api.sweep({"model": "llama2-7b", "chip": "tpuv4", "phase": "decode"},
                   {"chip.core.array.rows,chip.core.array.cols": [[64, 64], [128, 128]]})

Every function takes names (presets, files) or the loaded values, checks its input the way
the CLI does (the same one-line errors, as exceptions of ``isa.errors.TesseraError``), and
returns values: a ``RunReport``, a ``SimResult``, a pandas DataFrame. The ``tessera``
commands are thin layers over these functions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.run import Budget, RunReport, run_model
from hardware.chip import ChipConfig
from hardware.chips import list_presets, load_chip, with_overrides
from hardware.system import SystemConfig
from hardware.systems import list_systems, load_system
from isa.errors import TesseraError
from mapper.model import ModelConfig, list_models, load_model
from mapper.parallel import Parallel
from mapper.pipeline import MapOptions
from simulator.result import SimResult

if TYPE_CHECKING:  # pandas is imported where a frame is made: not at start-up
    import pandas as pd

PHASES = ("prefill", "decode", "generate")


class ApiError(TesseraError):
    """A bad argument to an API call (named in the message)."""


def chip(name_or_config: str | Path | ChipConfig, overrides: dict | None = None) -> ChipConfig:
    """A chip preset, chip YAML or ChipConfig, with dotted fields replaced (units allowed:
    ``{"hbm.bandwidth": "4 TB/s"}``); the result is checked like a chip file."""
    base = name_or_config if isinstance(name_or_config, ChipConfig) else load_chip(
        name_or_config)
    return with_overrides(base, overrides, "overrides") if overrides else base


def system(name_or_config: str | Path | SystemConfig, chip_overrides: dict | None = None,
           link_bandwidth: float | str | None = None) -> SystemConfig:
    """A system preset, system YAML or SystemConfig; ``chip_overrides`` apply to every chip,
    ``link_bandwidth`` (bytes/s or "400 GB/s") to the links."""
    from hardware.units import parse

    s = name_or_config if isinstance(name_or_config, SystemConfig) else load_system(
        name_or_config)
    if chip_overrides:
        s = dataclasses.replace(s, chips=tuple(_chip(c, chip_overrides) for c in s.chips))
    if link_bandwidth is not None:
        s = dataclasses.replace(s, link=dataclasses.replace(
            s.link, bandwidth=parse(link_bandwidth, "bandwidth")))
    return s


def model(name_or_config: str | Path | ModelConfig, **fields: object) -> ModelConfig:
    """A model preset, model YAML, Hugging Face config.json or ModelConfig, with fields
    replaced (``layers=4``), checked like a model file."""
    from mapper.model import model_from_dict

    m = name_or_config if isinstance(name_or_config, ModelConfig) else load_model(
        name_or_config)
    if not fields:
        return m
    data = {f.name: getattr(getattr(m, f.name), "value", getattr(m, f.name))
            for f in dataclasses.fields(m)}
    return model_from_dict({**data, **fields}, f"{m.name} (modified)")


def run(model: str | Path | ModelConfig, chip: str | Path | ChipConfig | None = None, *,
        system: str | Path | SystemConfig | None = None, phase: str = "decode",
        batch: int = 1, seq: int = 512, ctx: int = 2048, tokens: int = 32,
        tp: int = 1, pp: int = 1, dp: int = 1, ep: int = 1, micro_batches: int = 1, cp: int = 1,
        sp: bool = False,
        options: MapOptions | None = None, decode_samples: int = 0,
        budget: Budget | None = None, allow_long_context: bool = False,
        trace: bool = False, emit_asm: Path | None = None, warn=None, note=None,  # noqa: ANN001
        **map_options: object) -> RunReport:
    """Map and simulate a model: ``tessera run``. ``map_options`` are ``MapOptions``
    fields (``quant="int8"``, ``fusion=False``, ...). With ``system`` the model is split
    TP x PP x DP (x EP). Raises a TesseraError before mapping when the work does not fit
    the memory or the instruction budget. ``trace`` keeps a timeline of the first phase,
    ``emit_asm`` writes its programs as assembly; ``warn`` / ``note`` (str -> None) hear of
    a long context and of a long run (which then shows progress)."""
    if phase not in PHASES:
        raise ApiError(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
    for name, v in (("batch", batch), ("seq", seq), ("ctx", ctx), ("tokens", tokens)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ApiError(f"{name} must be a positive integer, got {v!r}")
    m = _model(model)
    par = None
    if system is not None:
        s = _system(system)
        c = s.chips[0]
        try:
            par = Parallel(tp, pp, dp, micro_batches, ep, cp, sp)
        except ValueError as exc:
            raise ApiError(str(exc)) from None
    else:
        if (tp, pp, dp, ep, cp, sp) != (1, 1, 1, 1, 1, False):
            raise ApiError("tp/pp/dp/ep/cp/sp need a multi-chip system (presets: "
                           f"{', '.join(list_systems())})")
        s, c = None, _chip(chip if chip is not None else "h100")
    try:
        opts = dataclasses.replace(options or MapOptions(), **map_options)
    except TypeError as exc:
        known = ", ".join(f.name for f in dataclasses.fields(MapOptions))
        raise ApiError(f"{exc} (mapping options: {known})") from None
    if not opts.functional and options is None and "layers_mapped" not in map_options:
        opts = dataclasses.replace(opts, layers_mapped=1)
    if opts.functional and "layers_mapped" not in map_options:
        opts = dataclasses.replace(opts, layers_mapped=None)
    try:
        rep = run_model(m, c, phase, batch, seq, ctx, tokens, opts, decode_samples,
                        trace=trace, emit_asm=emit_asm, system=s, par=par,
                        budget=budget or Budget(), allow_long_context=allow_long_context,
                        warn=warn, note=note)
    except ValueError as exc:  # a split or an option the model refuses
        if isinstance(exc, TesseraError):
            raise
        raise ApiError(str(exc)) from None
    from experiments.uncertainty import report_fields

    rep.notes["uncertainty"] = report_fields(rep, c if s is None else None)
    return rep


def price_iteration(model: str | Path | ModelConfig, chip: str | Path | ChipConfig,
                    prefill: list[tuple[int, int]] | tuple = (), decode: list[int] | tuple = (),
                    **map_options: object):  # noqa: ANN201
    """One serving iteration of a continuous batch: prefill chunks as (tokens, past cached
    tokens) and decode steps by context length; an ``IterationCost`` (time_s, energy_j,
    per-kernel seconds). Each kernel is simulated once and reused (``experiments.iteration``)."""
    from experiments.iteration import Iteration, price

    for t, p in prefill:
        if t < 1 or p < 0:
            raise ApiError(f"prefill chunk ({t}, {p}): tokens must be >= 1, past >= 0")
    if any(c < 1 for c in decode):
        raise ApiError("decode contexts must be >= 1")
    if not prefill and not decode:
        raise ApiError("an iteration needs at least one prefill chunk or decode sequence")
    try:
        opts = dataclasses.replace(MapOptions(), **map_options)
    except TypeError as exc:
        raise ApiError(str(exc)) from None
    return price(_model(model), _chip(chip), Iteration(tuple(map(tuple, prefill)),
                                                       tuple(decode)), opts)


def serve(model: str | Path | ModelConfig, chip: str | Path | ChipConfig | None = None, *,
          system: str | Path | SystemConfig | None = None, find_capacity: bool = False,
          **spec: object) -> tuple[dict, pd.DataFrame]:
    """A serving simulation (``tessera serve``): the summary (or, with ``find_capacity``,
    the run at the highest rate within the SLOs, with ``capacity_req_s``) and one row per
    request. ``spec``: the fields of ``experiments.serve.run.ServeSpec`` (``rate``,
    ``requests``, ``prompt_len``, ``tp``, ``disaggregate=(P, D)``, ``slo_ttft``, ...) and
    the scheduler's (``scheduler``, ``queue``, ``chunk``, ``max_seqs``, ``preempt``)."""
    from experiments.serve.metrics import requests_frame
    from experiments.serve.run import find_capacity as capacity
    from experiments.serve.run import serve as run_serve
    from experiments.serve.run import spec_from_knobs

    s = _system(system) if system is not None else None
    c = s.chips[0] if s is not None else _chip(chip if chip is not None else "h200")
    if isinstance(spec.get("disaggregate"), tuple):
        spec["disaggregate"] = ":".join(map(str, spec["disaggregate"]))
    sp = spec_from_knobs(spec)
    m = _model(model)
    if find_capacity:
        rate, best, probes = capacity(m, c, s, sp)
        import pandas as pd

        return {**best, "capacity_req_s": rate}, pd.DataFrame(probes)
    out, summary = run_serve(m, c, s, sp)
    return summary, requests_frame(out)


def train(model: str | Path | ModelConfig, chip: str | Path | ChipConfig | None = None, *,
          system: str | Path | SystemConfig | None = None, **spec: object):  # noqa: ANN201
    """One training step (``tessera train``): a ``TrainReport`` (``step_s``,
    ``tokens_per_s``, ``mfu``, ``memory`` with its breakdown, ``energy_j``, ``breakdown``;
    ``as_dict()`` for the flat figures). ``spec``: the fields of
    ``experiments.train.step.TrainSpec`` (``micro_batch``, ``seq``, ``global_batch``, ``tp``,
    ``pp``, ``dp``, ``ep``, ``sp``, ``zero``, ``recompute``, ``schedule``, ``virtual_stages``,
    ``offload_optimizer``, ``recipe``). A split that does not fit is a TesseraError with the
    memory breakdown."""
    from experiments.train.step import TrainSpec, train_step

    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    unknown = sorted(set(spec) - fields)
    if unknown:
        raise ApiError(f"{unknown[0]}: not a training knob (expected one of: "
                       f"{', '.join(sorted(fields))})")
    s = _system(system) if system is not None else None
    c = s.chips[0] if s is not None else _chip(chip if chip is not None else "h100")
    return train_step(_model(model), TrainSpec(**spec), c, s)  # type: ignore[arg-type]


def run_program(program: str | Path, chip: str | Path | ChipConfig = "edge", *,
                functional: bool = False, trace: bool = False) -> SimResult:
    """Simulate one program (``.s`` assembly or ``.bin``) on a chip: ``tessera sim``."""
    from experiments.commands.sim_cmd import load_program
    from simulator.run import simulate

    return simulate(load_program(Path(program)), _chip(chip), functional=functional,
                    trace=trace)


def sweep(base: dict, parameters: dict, *, mode: str = "grid", samples: int = 0,
          objectives: tuple[str, ...] = ("latency_s", "energy_j"), seed: int = 0,
          workers: int = 1, out: str | Path | None = None, name: str = "api") -> pd.DataFrame:
    """Run a sweep (``tessera sweep``): ``base`` and ``parameters`` as in a sweep file. One
    row per point; rows stream to ``out`` (a temporary folder when None)."""
    import tempfile

    from experiments.sweep.runner import run_sweep
    from experiments.sweep.spec import sweep_from_dict

    spec = sweep_from_dict({"name": name, "base": base, "parameters": parameters,
                            "mode": mode, **({"samples": samples} if samples else {}),
                            "objectives": list(objectives), "seed": seed}, f"<{name}>")
    if out is not None:
        return run_sweep(spec, Path(out), workers, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        return run_sweep(spec, Path(tmp), workers, progress=False)


def validate(preset: str, measured: str | Path) -> tuple[pd.DataFrame, dict]:
    """Predict every row of a measured CSV on a preset (``tessera validate``): the rows with
    prediction and error, and the summary (MAPE, ...)."""
    from experiments.validate import load_target, summary
    from experiments.validate import validate as validate_file

    kind, df = validate_file(load_target(preset), Path(measured))
    return df, summary(kind, df)


_chip, _system, _model = chip, system, model  # for functions whose arguments take the names


def presets() -> dict[str, list[str]]:
    """The names of the bundled chips, systems and models."""
    return {"chips": list_presets(), "systems": list_systems(), "models": list_models()}


__all__ = ["ApiError", "chip", "model", "presets", "price_iteration", "run", "run_program",
           "serve",
           "sweep", "system", "validate"]
