"""A sweep file: the base run and the parameters to vary, validated with located errors.

```yaml
name: array-size
base: {model: llama2-7b, chip: edge, phase: decode, batch: 1, ctx: 512}
parameters:
  chip.core.array.rows: [16, 32, 64]      # a list: these values
  chip.hbm.bandwidth: {log: [10 GB/s, 100 GB/s], count: 3}   # or a range
  mapping.quant: [null, int8]
mode: grid            # grid | random (samples: N) | optuna (trials: N, objectives: [...])
seed: 0
timeout: 120          # seconds per point
max_points: 100000    # refuse larger sweeps up front (raise it to lift the limit)
```
Parameter paths: ``chip.<field...>`` (the chip description), ``system.<...>`` (``topology``,
``link.bandwidth``), ``mapping.<MapOptions field or tp/pp/dp/ep>``, and the base fields
(``batch``, ``seq``, ``ctx``, ``tokens``, ``model``, ``chip``, ``system``, ``phase``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from hardware.units import UnitError, parse
from hardware.yamlfile import read_yaml
from isa.errors import TesseraError

MAX_POINTS = 100_000
BASE_FIELDS = ("model", "chip", "system", "phase", "batch", "seq", "ctx", "tokens")
MODES = ("grid", "random", "optuna")
_SIZE_FIELD = {"grid": "parameters", "random": "samples", "optuna": "trials"}
OBJECTIVES = ("latency_s", "energy_j", "area_mm2", "cost_usd", "tokens_per_s", "step_s",
              "peak_memory_bytes", "mfu", "capacity_req_s", "tokens_per_usd",
              "ttft_p99_s", "tbt_p99_s", "usd_per_mtok")


class SweepError(TesseraError):
    """A sweep file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class SweepSpec:
    name: str
    base: dict
    parameters: dict[str, list]
    mode: str = "grid"
    samples: int = 0
    objectives: tuple[str, ...] = ("latency_s", "energy_j")
    seed: int = 0
    timeout: float = 600.0
    source: str = "<sweep>"
    directions: dict[str, str] = field(default_factory=dict)
    max_points: int = MAX_POINTS

    def points(self) -> list[dict]:
        """The points a grid or random sweep visits, in a fixed order; a tied parameter
        ("a,b": [[1, 2], ...]) sets its paths together."""
        keys = list(self.parameters)
        if self.mode == "grid":
            combos = itertools.product(*(self.parameters[k] for k in keys))
            return [_untie(dict(zip(keys, c))) for c in combos]
        rng = random.Random(self.seed)
        return [_untie({k: rng.choice(self.parameters[k]) for k in keys})
                for _ in range(self.samples)]

    @property
    def columns(self) -> list[str]:
        """The result columns the parameters become (tied paths one column each)."""
        return [p for k in self.parameters for p in k.split(",")]

    def size(self) -> int:
        if self.mode == "grid":
            return math.prod(len(v) for v in self.parameters.values())
        return self.samples


def _untie(point: dict) -> dict:
    out = {}
    for k, v in point.items():
        if "," in k:
            out.update(zip(k.split(","), v))
        else:
            out[k] = v
    return out


def point_id(point: dict) -> str:
    """A stable name for a point: resuming recognises what is already done by it."""
    text = json.dumps(point, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def load_sweep(path: str | Path) -> SweepSpec:
    p = Path(path)
    return sweep_from_dict(read_yaml(p, SweepError), p.name)


def sweep_from_dict(data: object, source: str = "<sweep>") -> SweepSpec:
    if not isinstance(data, dict):
        raise SweepError(f"{source}: expected a mapping at the top level")
    known = ("name", "base", "parameters", "mode", "samples", "trials", "objectives", "seed",
             "timeout", "max_points")
    for k in data:
        if k not in known:
            raise SweepError(f"{source}: {k}: unknown field (expected one of: "
                             f"{', '.join(known)})")
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise SweepError(f"{source}: base: expected a mapping")
    for k in base:
        if k not in BASE_FIELDS and not str(k).startswith(("mapping.", "serve.")):
            raise SweepError(f"{source}: base.{k}: unknown field (expected one of: "
                             f"{', '.join(BASE_FIELDS)}, mapping.*, serve.*)")
    limit = data.get("max_points", MAX_POINTS)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise SweepError(f"{source}: max_points: expected a positive integer, got {limit!r}")
    params = _parameters(data.get("parameters"), source, limit)
    mode = data.get("mode", "grid")
    if mode not in MODES:
        raise SweepError(f"{source}: mode: expected one of {', '.join(MODES)}, got {mode!r}")
    samples = data.get("samples", data.get("trials", 0))
    if mode != "grid" and (not isinstance(samples, int) or samples < 1):
        raise SweepError(f"{source}: {'samples' if mode == 'random' else 'trials'}: a positive "
                         f"integer is needed for mode {mode}")
    objectives = data.get("objectives", ("latency_s", "energy_j"))
    if not isinstance(objectives, (list, tuple)):
        raise SweepError(f"{source}: objectives: expected a list, got {objectives!r}")
    for o in objectives:
        if o not in OBJECTIVES:
            raise SweepError(f"{source}: objectives: unknown '{o}' (expected one of "
                             f"{', '.join(OBJECTIVES)})")
    seed, timeout = data.get("seed", 0), data.get("timeout", 600)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SweepError(f"{source}: seed: expected an integer, got {seed!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not 0 < timeout < math.inf:
        raise SweepError(f"{source}: timeout: expected a positive number of seconds, got "
                         f"{timeout!r}")
    spec = SweepSpec(str(data.get("name", Path(source).stem)), dict(base), params, mode,
                     samples, tuple(objectives), seed, float(timeout), source,
                     max_points=limit)
    if spec.size() > limit:  # a product of lengths: the grid itself is never built
        hint = "narrow the ranges, use mode: random or optuna, " if mode == "grid" else ""
        raise SweepError(f"{source}: {_SIZE_FIELD[mode]}: {spec.size():,} points exceed the "
                         f"limit of {limit:,} ({hint}or raise max_points: in the sweep file)")
    from experiments.sweep.check import check_spec

    check_spec(spec, SweepError)  # paths and values, so no point fails for a typo
    return spec


def _parameters(params: object, source: str, limit: int) -> dict[str, list]:
    if not isinstance(params, dict) or not params:
        raise SweepError(f"{source}: parameters: expected a mapping of dotted paths to values")
    out = {}
    for path, spec in params.items():
        where = f"{source}: parameters.{path}"
        parts = str(path).split(",")
        for part in parts:
            if part.split(".")[0] not in ("chip", "system", "mapping", "serve") and \
                    part not in BASE_FIELDS:
                raise SweepError(f"{where}: a path starts with chip., system., mapping. "
                                 f"or serve. "
                                 f"(or is one of {', '.join(BASE_FIELDS)})")
        values = _values(spec, where, limit)
        if len(parts) > 1 and not all(isinstance(v, list) and len(v) == len(parts)
                                      for v in values):
            raise SweepError(f"{where}: tied paths take lists of {len(parts)} values each")
        out[str(path)] = values
    return out


def _plain(v: object) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _values(spec: object, where: str, limit: int) -> list:
    if isinstance(spec, list):
        if not spec:
            raise SweepError(f"{where}: an empty list")
        for i, v in enumerate(spec):  # plain values, or a list of them for tied paths (a
            # YAML alias could even nest a list in itself)
            if not (_plain(v) or isinstance(v, list) and all(_plain(x) for x in v)):
                raise SweepError(f"{where}[{i}]: expected a value (number, string, boolean, "
                                 f"null) or, for tied paths, a list of values")
        return spec
    if isinstance(spec, dict) and set(spec) in ({"log", "count"}, {"linear", "count"}):
        kind = "log" if "log" in spec else "linear"
        lo_hi, count = spec[kind], spec["count"]
        if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and isinstance(count, int)
                and count >= 1):
            raise SweepError(f"{where}: expected {{{kind}: [low, high], count: N}}")
        if count > limit:  # refused before the values are built
            raise SweepError(f"{where}: count {count:,} exceeds the limit of {limit:,} points "
                             f"(raise max_points: in the sweep file)")
        family = "bandwidth" if any(isinstance(x, str) and "/s" in x for x in lo_hi) else None
        try:
            lo, hi = (parse(x, family) if family else float(x) for x in lo_hi)
        except (UnitError, ValueError, TypeError, OverflowError):
            raise SweepError(f"{where}: cannot read the range {lo_hi}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise SweepError(f"{where}: the range {lo_hi} has an end that is not finite")
        if count == 1:
            return [lo]
        if kind == "log":
            if lo <= 0 or hi <= 0:
                raise SweepError(f"{where}: a log range needs positive ends")
            return [lo * (hi / lo) ** (i / (count - 1)) for i in range(count)]
        return [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    raise SweepError(f"{where}: expected a list of values or {{log|linear: [a, b], count: N}}")
