"""Check a sweep's parameter paths and values when the file is loaded, not at every point.

A path that names nothing, or a value no point could run with, would otherwise fail every
point of the sweep one by one; here it is one line naming the file, the path and what it
accepts, as ``tessera run`` reports a bad option.
"""

from __future__ import annotations

import dataclasses

from isa.errors import TesseraError

PHASES = ("prefill", "decode", "generate", "train", "serve")
# training knobs (phase: train), with their closed sets of values (None: any integer >= 0)
TRAIN = {"zero": (0, 1, 2, 3), "recompute": ("none", "selective", "full"),
         "schedule": ("gpipe", "1f1b", "interleaved"), "recipe": ("megatron", "pytorch"),
         "virtual_stages": None, "micro_batch": None, "global_batch": None,
         "sp": (False, True), "offload_optimizer": (False, True),
         "overlap_grad": (False, True)}
COUNTS = ("batch", "seq", "ctx", "tokens")
SYSTEM_PATHS = ("system.topology", "system.link.bandwidth", "system.collective")
BOOLS = ("fusion", "functional")


def _choices() -> dict[str, tuple]:
    """Mapping options with a closed set of values (None: off), from their fields."""
    from mapper.pipeline import MapOptions

    return {f.name: ((None,) if f.default is None else ()) + f.metadata["choices"]
            for f in dataclasses.fields(MapOptions) if f.metadata.get("choices")}
PARALLEL = ("tp", "pp", "dp", "ep", "micro", "cp")  # the integer splits of mapping.*


def check_spec(spec, error: type[TesseraError]) -> None:  # noqa: ANN001
    """Raise ``error`` naming the first parameter path or value that cannot run."""
    src = spec.source
    for key in ("model", "chip", "system", "phase", *COUNTS):
        if key in spec.base:
            _check(key, spec.base[key], f"{src}: base.{key}", error)
    chip = _base_chip(spec, error)
    for key, values in spec.parameters.items():
        paths = key.split(",")
        for i, value in _sample(values):
            parts = value if len(paths) > 1 else [value]
            for path, v in zip(paths, parts):
                where = f"{src}: parameters.{key}[{i}]" if len(values) > 1 else \
                    f"{src}: parameters.{key}"
                if path.startswith("chip."):
                    _check_chip(chip, path, v, where, error)
                else:
                    _check(path, v, where, error)


CHECK_ALL = 64  # longer value lists are ranges: monotone, so their ends stand for them


def _sample(values: list) -> list[tuple[int, object]]:
    """(index, value) pairs to check: all of a short list; the ends (and one value of each
    type) of a long one."""
    if len(values) <= CHECK_ALL:
        return list(enumerate(values))
    picked = {0: values[0], len(values) - 1: values[-1]}
    seen: set[type] = {type(values[0]), type(values[-1])}
    for i, v in enumerate(values):
        if type(v) not in seen:
            seen.add(type(v))
            picked[i] = v
    return sorted(picked.items())


def _base_chip(spec, error: type[TesseraError]):  # noqa: ANN001, ANN202
    from hardware.chips import load_chip
    from hardware.systems import load_system

    try:
        if spec.base.get("system"):
            return load_system(spec.base["system"]).chips[0]
        return load_chip(spec.base.get("chip", "edge"))
    except TesseraError as exc:
        raise error(f"{spec.source}: base: {exc}") from None


def _check_chip(chip, path: str, value: object, where: str,  # noqa: ANN001
                error: type[TesseraError]) -> None:
    from hardware.chips import with_overrides

    try:
        with_overrides(chip, {path[5:]: value}, "chip", check_chip=False)
    except TesseraError as exc:
        raise error(f"{where}: {path} = {value!r}: {exc}") from None


def _check(path: str, value: object, where: str, error: type[TesseraError]) -> None:
    """A base field, ``mapping.*`` or ``system.*`` path with its value."""
    if path.startswith("system."):
        if path not in SYSTEM_PATHS:
            raise error(f"{where}: unknown path '{path}' (expected one of: "
                        f"{', '.join(SYSTEM_PATHS)})")
        return
    if path.startswith("mapping."):
        _check_mapping(path[8:], value, where, error)
        return
    if path.startswith("serve."):
        from experiments.serve.run import SERVE_KNOBS

        if path[6:] not in SERVE_KNOBS:
            raise error(f"{where}: unknown path '{path}' (expected serve. + one of: "
                        f"{', '.join(SERVE_KNOBS)})")
        return
    if path == "phase" and value not in PHASES:
        raise error(f"{where}: phase {value!r}: expected one of {', '.join(PHASES)}")
    if path in COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise error(f"{where}: {path} {value!r}: expected a positive integer")
    if path in ("model", "chip", "system"):
        _load(path, value, where, error)


def _load(path: str, value: object, where: str, error: type[TesseraError]) -> None:
    from hardware.chips import load_chip
    from hardware.systems import load_system
    from mapper.model import load_model

    loader = {"model": load_model, "chip": load_chip, "system": load_system}[path]
    try:
        loader(str(value))
    except TesseraError as exc:
        raise error(f"{where}: {exc}") from None


def _check_mapping(name: str, value: object, where: str, error: type[TesseraError]) -> None:
    from mapper.pipeline import MapOptions

    known = [f.name for f in dataclasses.fields(MapOptions)] + list(PARALLEL) + list(TRAIN)
    if name in TRAIN:
        allowed = TRAIN[name]
        if allowed is None and (isinstance(value, bool) or not isinstance(value, int)
                                or value < 0):
            raise error(f"{where}: mapping.{name} {value!r}: expected a non-negative integer")
        if allowed is not None and value not in allowed:
            raise error(f"{where}: mapping.{name} {value!r}: expected one of "
                        f"{', '.join(map(str, allowed))}")
        return
    if name not in known:
        raise error(f"{where}: unknown path 'mapping.{name}' (expected mapping. + one of: "
                    f"{', '.join(known)})")
    choices = _choices()
    if name in choices and value not in choices[name]:
        shown = ", ".join("null" if c is None else str(c) for c in choices[name])
        raise error(f"{where}: mapping.{name} {value!r}: expected one of {shown}")
    if name in BOOLS and not isinstance(value, bool):
        raise error(f"{where}: mapping.{name} {value!r}: expected true or false")
    if name in (*PARALLEL, "low_rank", "quant_group") and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise error(f"{where}: mapping.{name} {value!r}: expected a non-negative integer")
