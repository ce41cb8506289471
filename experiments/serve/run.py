"""A serving run from a spec: the replicas' hardware priced from the kernel-cost layer, the
workload generated or read, the engine run, the figures summarised; and the capacity
search (the highest rate that meets the SLOs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments.serve.cost import IterationModel, KVTransfer
from experiments.serve.engine import Hardware, Outcome, simulate
from experiments.serve.metrics import Prices, summarize
from experiments.serve.scheduler import SchedulerConfig
from experiments.serve.workload import TRACES, WorkloadError, read_trace, synthetic
from hardware.system import HostConfig
from mapper.pipeline import MapOptions


@dataclass(frozen=True)
class ServeSpec:
    rate: float = 1.0  # requests per second
    requests: int = 0
    duration: float = 0.0
    prompt_len: str = "chat"  # a length text, or a bundled trace's name
    output_len: str = ""
    trace: str = ""  # a CSV / JSONL file
    cv: float = 1.0  # arrival gaps' coefficient of variation (1 = Poisson)
    prefixes: int = 0
    prefix_len: int = 0
    sched: SchedulerConfig = field(default_factory=SchedulerConfig)
    block: int = 16
    prefix_cache: bool = False
    disaggregate: tuple[int, int] | None = None
    replicas: int = 1
    router: str = "round-robin"
    tp: int = 1
    pp: int = 1
    memory_util: float = 0.9  # share of HBM the engine may use (vLLM's default)
    swap_gb: float = 4.0  # host swap space per chip (vLLM's default)
    slo_ttft: float = math.inf
    slo_tbt: float = math.inf
    seed: int = 0
    chip_usd: float = 0.0  # 0: the area / cost model's price
    lifetime_years: float = 4.0
    usd_per_kwh: float = 0.10
    probe_seconds: float = 30.0  # a capacity probe's arrivals span at least this long
    max_requests: int = 1_000_000  # refused above this, before any work

    @property
    def pools(self) -> int:
        return sum(self.disaggregate) if self.disaggregate else self.replicas

    def check(self) -> None:
        """A one-line ``WorkloadError`` naming the first value no run could use (its flag,
        and its sweep knob), before anything is generated or priced."""
        nonneg = {"requests": "--requests", "duration": "--duration", "prefixes": "--prefixes",
                  "prefix_len": "--prefix-len", "swap_gb": "--swap-gb",
                  "chip_usd": "--chip-usd", "usd_per_kwh": "--usd-per-kwh"}
        positive = {"rate": "--rate", "cv": "--burstiness", "lifetime_years":
                    "--lifetime-years", "probe_seconds": "--probe-seconds",
                    "max_requests": "--max-requests"}
        at_least_one = {"block": "--block", "replicas": "--replicas", "tp": "--tp",
                        "pp": "--pp"}
        for names, ok, what in ((nonneg, lambda v: v >= 0, ">= 0"),
                                (positive, lambda v: v > 0, "> 0"),
                                (at_least_one, lambda v: v >= 1, ">= 1")):
            for name, flag in names.items():
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        not math.isfinite(v) or not ok(v):
                    raise WorkloadError(f"{flag} {v!r} (serve.{name}): must be a number {what}")
        if not 0 < self.memory_util <= 1:
            raise WorkloadError(f"--memory-util {self.memory_util} (serve.memory_util): must "
                                f"be in (0, 1]")
        if self.disaggregate is not None and (len(self.disaggregate) != 2 or
                                              min(self.disaggregate) < 1):
            raise WorkloadError(f"--disaggregate {self.disaggregate}: expected P:D, two "
                                f"counts >= 1")
        n = self.requests or self.rate * self.duration
        if n > self.max_requests:
            raise WorkloadError(f"{n:,.0f} requests, over --max-requests "
                                f"{self.max_requests:,} (lower --requests, --rate or "
                                f"--duration, or raise --max-requests)")
        self.sched.check()


SCHED_KNOBS = {"scheduler": "policy", "queue": "order", "chunk": "token_budget",
               "max_seqs": "max_seqs", "preempt": "preempt"}
SERVE_KNOBS = tuple(sorted({*(f for f in ServeSpec.__dataclass_fields__ if f != "sched"),
                            *SCHED_KNOBS, "find_capacity"}))


def spec_from_knobs(knobs: dict) -> ServeSpec:
    """A spec from sweep knobs (``serve.rate``, ``serve.scheduler``, ``serve.disaggregate``
    as "P:D", ...); a bad one is a ``WorkloadError`` naming it."""
    sched, fields = {}, {}
    for k, v in knobs.items():
        if k in SCHED_KNOBS:
            sched[SCHED_KNOBS[k]] = v
        elif k == "disaggregate":
            if not v:
                fields[k] = None
                continue
            try:
                p, d = (int(x) for x in str(v).split(":"))
            except ValueError:
                raise WorkloadError(f"serve.disaggregate {v!r}: expected P:D") from None
            fields[k] = (p, d)
        elif k in ServeSpec.__dataclass_fields__ and k != "sched":
            fields[k] = v
        else:
            raise WorkloadError(f"serve.{k}: not a serving knob ({', '.join(SERVE_KNOBS)})")
    spec = ServeSpec(**fields, sched=SchedulerConfig(**sched))
    spec.check()
    return spec


def workload(spec: ServeSpec, max_tokens: int = 0) -> list:
    spec.check()
    if spec.trace:
        reqs = read_trace(Path(spec.trace), spec.rate, spec.seed, spec.cv)
        if len(reqs) > spec.max_requests:
            raise WorkloadError(f"{spec.trace}: {len(reqs):,} requests, over --max-requests "
                                f"{spec.max_requests:,}")
        return reqs
    prompt, output = spec.prompt_len, spec.output_len
    if prompt in TRACES:
        prompt, default_out = TRACES[prompt]
        output = output or default_out
    if not output:
        raise WorkloadError(f"--prompt-len {prompt}: give --output-len too (or a bundled "
                            f"trace: {', '.join(TRACES)})")
    return synthetic(spec.rate, prompt, output, requests=spec.requests,
                     duration=spec.duration, cv=spec.cv, prefixes=spec.prefixes,
                     prefix_len=spec.prefix_len, seed=spec.seed, max_tokens=max_tokens)


def hardware(model, chip, system, spec: ServeSpec,  # noqa: ANN001
             opts: MapOptions | None = None, pricer: IterationModel | None = None,
             notify=None) -> Hardware:  # noqa: ANN001
    """A replica's pricer, KV cache size and links, checked against the hardware."""
    per = spec.tp * spec.pp
    if per > 1 or spec.disaggregate or system is not None:
        if system is None:
            raise WorkloadError("--tp, --pp and --disaggregate need --system (the replicas' "
                                "chips and the links between them)")
        need = spec.pools * per
        if need > len(system.chips):
            raise WorkloadError(f"{spec.pools} replica(s) x TP {spec.tp} x PP {spec.pp} = "
                                f"{need} chips; {system.name} has {len(system.chips)}")
    if spec.pp < 1 or spec.pp > model.layers:
        raise WorkloadError(f"--pp {spec.pp}: between 1 and the model's {model.layers} layers")
        chip = system.chips[0]
    if model.heads % spec.tp or model.ffn % spec.tp:
        raise WorkloadError(f"--tp {spec.tp} does not divide {model.name}'s heads "
                            f"({model.heads}) and FFN ({model.ffn})")
    im = pricer or IterationModel(model, chip, opts or MapOptions(), system, spec.tp,
                                  spec.pp, notify=notify)
    tokens = im.kv_capacity_tokens(max(spec.sched.token_budget, spec.sched.max_seqs),
                                   spec.memory_util)
    blocks = tokens // spec.block
    if blocks < 1:
        raise WorkloadError(
            f"{model.name} on {chip.name} x TP {spec.tp} x PP {spec.pp}: weights "
            f"{im.weight_bytes() / 1e9:.1f}"
            f" GB leave no room for a KV cache in {spec.memory_util:.0%} of "
            f"{chip.hbm.capacity / 1e9:.0f} GB (raise --tp or --pp, or use a larger chip)")
    block_bytes = im.kv_bytes_per_token() * spec.block
    host = system.host if system is not None else HostConfig()
    return Hardware(im, blocks, block_bytes, per, host.link,
                    int(spec.swap_gb * 1e9 // block_bytes), chip.energy.static_w,
                    KVTransfer(system, spec.tp) if spec.disaggregate else None,
                    int(model.max_seq), spec.pp)


def run(requests: list, hw: Hardware, spec: ServeSpec) -> Outcome:
    return simulate(requests, hw, spec.sched, replicas=spec.replicas, router=spec.router,
                    block=spec.block, prefix_cache=spec.prefix_cache,
                    disaggregate=spec.disaggregate)


def prices(chip, spec: ServeSpec) -> Prices:  # noqa: ANN001
    from experiments.area import cost_usd

    return Prices(spec.chip_usd or cost_usd(chip), spec.lifetime_years, spec.usd_per_kwh)


def serve(model, chip, system, spec: ServeSpec, opts: MapOptions | None = None,  # noqa: ANN001
          notify=None) -> tuple[Outcome, dict]:  # noqa: ANN001
    spec.check()
    hw = hardware(model, chip, system, spec, opts, notify=notify)
    out = run(workload(spec, hw.max_tokens), hw, spec)
    summary = summarize(out, prices(hw.pricer.chip, spec), spec.slo_ttft, spec.slo_tbt)
    summary.update(kv_blocks=hw.kv_blocks, block_tokens=spec.block,
                   grid_points=getattr(hw.pricer, "points", 0))
    return out, summary


SUSTAINED = 0.9  # served requests/s over offered, below which the load was not kept up


def meets(summary: dict, spec: ServeSpec) -> bool:
    """Both SLOs at the 99th percentile and the load sustained (requests refused are refused
    at any rate, for their length, and do not count): requests
    served per second at least ``SUSTAINED`` x the rate (a finite workload at a rate far
    beyond capacity is one burst, which can meet a loose SLO without being served at that
    rate). The rate compared is the arrivals' own (Poisson gaps scatter it around --rate)."""
    return (summary["ttft_p99_s"] <= spec.slo_ttft and summary["tbt_p99_s"] <= spec.slo_tbt
            and summary["throughput_req_s"] >= SUSTAINED * summary["arrival_rate_req_s"])


def find_capacity(model, chip, system, spec: ServeSpec, opts: MapOptions | None = None,  # noqa: ANN001
                  tolerance: float = 0.05, progress=None, notify=None  # noqa: ANN001
                  ) -> tuple[float, dict, list]:
    """The highest rate (requests/s) whose run meets the SLOs: doubling from ``spec.rate``
    until a run fails, then bisection to ``tolerance`` (relative). Each probe is a full run
    of the same workload shape (same seed) at that rate, with at least ``probe_seconds`` of
    arrivals (a short burst can meet an SLO the sustained rate misses); kernels are priced
    once for all."""
    if math.isinf(spec.slo_ttft) and math.isinf(spec.slo_tbt):
        raise WorkloadError("--find-capacity needs --slo-ttft and/or --slo-tbt")
    spec.check()
    hw = hardware(model, chip, system, spec, opts, notify=notify)
    pr = prices(hw.pricer.chip, spec)
    probes = []

    def probe(rate: float) -> tuple[bool, dict]:
        # long enough that a load beyond capacity builds a queue the SLOs see (at most
        # --max-requests: a shorter window then)
        n = min(max(spec.requests, math.ceil(rate * spec.probe_seconds)), spec.max_requests)
        s = replace(spec, rate=rate, requests=n, duration=0.0)
        out = run(workload(s, hw.max_tokens), hw, s)
        summ = summarize(out, pr, s.slo_ttft, s.slo_tbt)
        ok = meets(summ, s)
        probes.append({"rate": rate, "meets": ok, **summ})
        if progress is not None:
            progress(rate, ok, summ)
        return ok, summ

    lo, hi = 0.0, spec.rate
    best: dict = {}
    for _ in range(20):
        ok, summ = probe(hi)
        if not ok:
            break
        lo, best, hi = hi, summ, hi * 2
    else:
        return lo, best, probes
    if lo == 0.0:  # the first rate fails: halve down
        for _ in range(20):
            hi = hi / 2
            ok, summ = probe(hi)
            if ok:
                lo, best = hi, summ
                hi = hi * 2
                break
        else:
            return 0.0, {}, probes
    while (hi - lo) / hi > tolerance:
        mid = (lo + hi) / 2
        ok, summ = probe(mid)
        if ok:
            lo, best = mid, summ
        else:
            hi = mid
    return lo, best, probes
