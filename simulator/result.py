"""The result of a simulation: a value, formatted by the CLI and reports, never printed here."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter, itemgetter
from typing import Any


@dataclass(frozen=True)
class EngineStats:
    busy_s: float  # summed over cores
    utilization: float  # busy / (time x cores)
    instructions: int


@dataclass(frozen=True)
class SimResult:
    chip: str
    time_s: float
    cycles: float  # at the clock the run used
    clock_hz: float
    nominal_clock_hz: float
    power_capped: bool
    instructions: int  # dynamic
    macs: float
    flops: float
    mac_utilization: float  # MACs / (peak MACs per s x time)
    bytes: dict[str, float]
    energy_j: dict[str, float]
    engines: dict[str, EngineStats]
    races: tuple[str, ...] = ()
    peak_macs_per_s: float = 0.0  # at the clock the run used
    trace: tuple[tuple, ...] | None = field(default=None, repr=False)
    trace_names: dict[tuple[int, int, int], str] | None = field(default=None, repr=False)
    memory: object | None = field(default=None, repr=False, compare=False)  # functional mode
    link_trace: tuple[tuple, ...] | None = field(default=None, repr=False)

    def read(self, space, addr: int, nbytes: int, chip: int = 0, core: int = 0):  # noqa: ANN001
        """Bytes of a memory after a functional run (HBM is per chip, SRAM/acc per core)."""
        if self.memory is None:
            raise ValueError("memory contents exist only after a functional-mode run")
        return self.memory.memory(chip, core, space).read(addr, nbytes, "read")  # type: ignore

    @property
    def energy_total_j(self) -> float:
        return sum(self.energy_j.values())

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.time_s if self.time_s else 0.0

    @property
    def avg_power_w(self) -> float:
        return self.energy_total_j / self.time_s if self.time_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        skip = ("trace", "trace_names", "memory", "link_trace")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["engines"] = {k: asdict(v) for k, v in self.engines.items()}
        out["races"] = list(self.races)
        out["energy_total_j"] = self.energy_total_j
        out["flops_per_s"] = self.flops_per_s
        out["avg_power_w"] = self.avg_power_w
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def trace_frame(self):
        """The per-instruction trace as a pandas DataFrame (one row per dynamic instruction)."""
        import pandas as pd

        rows = self.trace or ()
        names = self.trace_names or {}
        return pd.DataFrame(
            [(c, k, e, pc, names.get((c, k, pc), ""), s * 1e-9, (t - s) * 1e-9)
             for c, k, e, pc, s, t in rows],
            columns=["chip", "core", "engine", "pc", "mnemonic", "start_s", "dur_s"])

    def chrome_trace(self) -> dict[str, Any]:
        """Chrome trace-event JSON (opens in Perfetto): one process per chip, a thread per
        core and engine, times in microseconds."""
        names = self.trace_names or {}
        engines = ["dma", "mx", "vec", "net"]
        events: list[dict[str, Any]] = []
        seen = set()
        for c, k, e, pc, s, t in self.trace or ():
            tid = k * len(engines) + engines.index(e)
            if (c, tid) not in seen:
                seen.add((c, tid))
                events.append({"ph": "M", "name": "thread_name", "pid": c, "tid": tid,
                               "args": {"name": f"core {k} {e}"}})
            events.append({"ph": "X", "name": names.get((c, k, pc), "?"), "pid": c, "tid": tid,
                           "ts": s / 1e3, "dur": (t - s) / 1e3, "args": {"pc": pc}})
        for c in sorted({ev["pid"] for ev in events}):
            events.append({"ph": "M", "name": "process_name", "pid": c,
                           "args": {"name": f"chip {c}"}})
        events += self._link_events()
        return {"traceEvents": events, "displayTimeUnit": "ns"}

    def _link_events(self) -> list[dict[str, Any]]:
        """One track per directed link, in a process of its own after the chips."""
        if not self.link_trace:
            return []
        pid = 1 + max((c for c, *_ in self.trace or ()), default=0)
        links = sorted({uv for uv, *_ in self.link_trace})
        out: list[dict[str, Any]] = [{"ph": "M", "name": "process_name", "pid": pid,
                                      "args": {"name": "links"}}]
        out += [{"ph": "M", "name": "thread_name", "pid": pid, "tid": i,
                 "args": {"name": f"link {u}->{v}"}} for i, (u, v) in enumerate(links)]
        index = {uv: i for i, uv in enumerate(links)}
        out += [{"ph": "X", "name": f"{int(n)} B", "pid": pid, "tid": index[uv],
                 "ts": s / 1e3, "dur": (t - s) / 1e3, "args": {"bytes": n}}
                for uv, n, s, t in self.link_trace]
        return out


def sequence(results: list[SimResult]) -> SimResult:
    """Results of kernels that ran one after another (each ending in a chip-wide sync) as
    one result: times, counts and energies add; the trace is shifted kernel by kernel.
    Each field is read off every result in one call (``attrgetter``, ``itemgetter``) and
    summed in order: a serving iteration composed from known kernels is mostly this."""
    first = results[0]
    times, cycles, instructions, macs_of, flops_of, peaks, clocks = zip(
        *map(_SCALARS, results))
    time_s = sum(times)
    engines = {}
    for e in first.engines:
        stats = [r.engines[e] for r in results]
        share = sum([s.utilization * t for s, t in zip(stats, times)]) / time_s \
            if time_s else 0.0
        engines[e] = EngineStats(sum([s.busy_s for s in stats]), share,
                                 sum([s.instructions for s in stats]))
    capacity = sum([p * t for p, t in zip(peaks, times)])
    clock = sum([c * t for c, t in zip(clocks, times)]) / time_s if time_s else first.clock_hz
    trace, names, links, offset = None, None, None, 0.0
    if first.trace is not None:
        trace, names, links = [], {}, []
        for k, r in enumerate(results):
            for c, core, e, pc, s0, s1 in r.trace or ():
                trace.append((c, core, e, (k, pc), s0 + offset, s1 + offset))
            for (c, core, pc), name in (r.trace_names or {}).items():
                names[(c, core, (k, pc))] = name
            links += [(uv, n, s0 + offset, s1 + offset) for uv, n, s0, s1 in
                      r.link_trace or ()]
            offset += r.time_s * 1e9
        trace, links = tuple(trace), tuple(links)
    macs = sum(macs_of)
    return SimResult(
        chip=first.chip, time_s=time_s, cycles=sum(cycles), clock_hz=clock,
        nominal_clock_hz=first.nominal_clock_hz,
        power_capped=any(r.power_capped for r in results),
        instructions=sum(instructions), macs=macs, flops=sum(flops_of),
        mac_utilization=macs / capacity if capacity else 0.0,
        peak_macs_per_s=capacity / time_s if time_s else 0.0,
        bytes=_summed([r.bytes for r in results], first.bytes),
        energy_j=_summed([r.energy_j for r in results], first.energy_j),
        engines=engines, races=tuple(x for r in results for x in r.races),
        trace=trace, trace_names=names, link_trace=links)


_SCALARS = attrgetter("time_s", "cycles", "instructions", "macs", "flops", "peak_macs_per_s",
                      "clock_hz")


def _summed(dicts: list[dict], keys: dict) -> dict:
    """``{k: sum of d[k] over dicts}`` for the keys of ``keys``, each sum in order."""
    names = list(keys)
    if len(names) < 2:
        return {k: sum([d[k] for d in dicts]) for k in names}
    get = itemgetter(*names)
    return dict(zip(names, map(sum, zip(*map(get, dicts)))))
