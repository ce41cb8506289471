"""``tessera serve``: request traffic on replicas of a chip, every iteration priced from
simulated kernels."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from experiments.commands import DefaultsHelp, add_routing_args, chip_or_system, routed
from experiments.serve.workload import TRACES, WorkloadError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="simulate a serving deployment: request traffic, continuous batching, "
                      "paged KV, SLOs and cost per token",
        formatter_class=DefaultsHelp,
        description="Requests arrive at a rate; each replica's scheduler batches them "
                    "iteration by iteration; each iteration is priced on the replica's "
                    "hardware from simulated kernels (docs/serving.md). Prints latency "
                    "percentiles, throughput, goodput under the SLOs, energy and cost per "
                    "token; writes per-request and per-iteration tables.")
    p.add_argument("--model", default="llama3-8b",
                   help="preset name, model YAML or Hugging Face config.json")
    add_routing_args(p)
    p.add_argument("--chip", default="h200", help="chip preset or YAML (one chip per replica)")
    p.add_argument("--system", help="a multi-chip system (for --tp, --disaggregate)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel chips per replica")
    p.add_argument("--pp", type=int, default=1,
                   help="pipeline stages per replica (up to that many batches in flight)")
    w = p.add_argument_group("workload")
    w.add_argument("--rate", type=float, default=2.0, help="requests per second")
    w.add_argument("--requests", type=int, default=0, help="requests to serve")
    w.add_argument("--duration", type=float, default=0.0,
                   help="or: seconds of arrivals (when --requests is 0)")
    w.add_argument("--prompt-len", default="chat",
                   help=f"prompt tokens: a count, uniform:A:B, lognormal:MEDIAN:SIGMA[:MAX], "
                        f"exp:MEAN[:MAX], or a bundled trace shape ({', '.join(TRACES)})")
    w.add_argument("--output-len", default="", help="output tokens (same forms)")
    w.add_argument("--trace", help="a CSV / JSONL of requests (arrival_s, prompt_tokens, "
                                   "output_tokens[, prefix_id, prefix_tokens])")
    w.add_argument("--burstiness", type=float, default=1.0,
                   help="arrival gaps' coefficient of variation: 1 Poisson, > 1 bursty "
                        "(gamma)")
    w.add_argument("--prefixes", type=int, default=0,
                   help="shared prompt prefixes (system prompts), one per request at random")
    w.add_argument("--prefix-len", type=int, default=0, help="tokens of each shared prefix")
    w.add_argument("--seed", type=int, default=0, help="random seed of the workload")
    w.add_argument("--max-requests", type=int, default=1_000_000,
                   help="refuse a workload of more requests before generating it (a capacity "
                        "probe is cut to this many)")
    e = p.add_argument_group("engine")
    e.add_argument("--scheduler", default="vllm",
                   choices=("vllm", "decode-first", "prefill-first"),
                   help="batching policy (docs/serving.md)")
    e.add_argument("--queue", default="fcfs", choices=("fcfs", "spf"),
                   help="waiting order: first come, or shortest prompt first")
    e.add_argument("--chunk", type=int, default=2048, help="token budget per iteration")
    e.add_argument("--max-seqs", type=int, default=256, help="sequences per iteration")
    e.add_argument("--block", type=int, default=16, help="KV block size in tokens")
    e.add_argument("--kernels", default="fused", choices=("fused", "eager"),
                   help="the engine's kernels: fused (as serving engines run them) or eager "
                        "PyTorch composites (docs/mapper.md)")
    e.add_argument("--memory-util", type=float, default=0.9,
                   help="share of HBM the engine uses (weights, activations, KV cache)")
    e.add_argument("--preempt", default="recompute", choices=("recompute", "swap"),
                   help="what happens to a preempted sequence's KV cache")
    e.add_argument("--swap-gb", type=float, default=4.0, help="host swap space per chip, GB")
    e.add_argument("--prefix-cache", action="store_true", help="share cached prefix blocks")
    e.add_argument("--disaggregate", metavar="P:D",
                   help="P prefill replicas and D decode replicas; KV moves over the links")
    e.add_argument("--replicas", type=int, default=1, help="colocated replicas")
    e.add_argument("--router", default="round-robin",
                   choices=("round-robin", "least-tokens", "prefix-affinity"),
                   help="how arrivals are placed on replicas")
    s = p.add_argument_group("targets and prices")
    s.add_argument("--slo-ttft", type=float, default=math.inf, help="TTFT target, seconds")
    s.add_argument("--slo-tbt", type=float, default=math.inf,
                   help="time-between-tokens target, seconds (a request's mean gap)")
    s.add_argument("--find-capacity", action="store_true",
                   help="search the highest rate whose p99 TTFT and TBT meet the SLOs")
    s.add_argument("--probe-seconds", type=float, default=30.0,
                   help="--find-capacity: each probe's arrivals span at least this long "
                        "(--requests or rate x this, whichever is more)")
    s.add_argument("--chip-usd", type=float, default=0.0,
                   help="price of one chip (0: the area / cost model's, experiments/area.py)")
    s.add_argument("--lifetime-years", type=float, default=4.0,
                   help="years the chips are amortised over")
    s.add_argument("--usd-per-kwh", type=float, default=0.10, help="electricity price")
    p.add_argument("--out", type=Path, default=Path("results/serve"), help="results folder")
    p.add_argument("--json", action="store_true", help="print the figures as JSON last")
    p.set_defaults(handler=serve)


def spec_of(args: argparse.Namespace):  # noqa: ANN201
    from experiments.serve.run import ServeSpec
    from experiments.serve.scheduler import SchedulerConfig

    dis = None
    if args.disaggregate:
        try:
            dis = tuple(int(x) for x in args.disaggregate.split(":"))
            if len(dis) != 2 or min(dis) < 1:
                raise ValueError
        except ValueError:
            raise WorkloadError(f"--disaggregate {args.disaggregate}: expected P:D, two "
                                f"counts >= 1 (prefill and decode replicas)") from None
    if not args.requests and not args.duration and not args.trace:
        args.requests = 200
    spec = ServeSpec(
        rate=args.rate, requests=args.requests, duration=args.duration,
        prompt_len=args.prompt_len, output_len=args.output_len, trace=args.trace or "",
        cv=args.burstiness, prefixes=args.prefixes, prefix_len=args.prefix_len,
        sched=SchedulerConfig(args.scheduler, args.queue, args.chunk, args.max_seqs,
                              args.preempt),
        block=args.block, prefix_cache=args.prefix_cache, disaggregate=dis,
        replicas=args.replicas, router=args.router, tp=args.tp, pp=args.pp,
        memory_util=args.memory_util, swap_gb=args.swap_gb, slo_ttft=args.slo_ttft,
        slo_tbt=args.slo_tbt, seed=args.seed, chip_usd=args.chip_usd,
        probe_seconds=args.probe_seconds, max_requests=args.max_requests,
        lifetime_years=args.lifetime_years, usd_per_kwh=args.usd_per_kwh)
    spec.check()  # before the model and chip are loaded
    return spec


KEYS = ("throughput_tok_s", "ttft_p50_s", "ttft_p99_s", "tbt_p50_s", "tbt_p99_s",
        "goodput_req_s", "energy_per_token_j", "usd_per_mtok")


def serve(args: argparse.Namespace) -> int:
    from experiments.serve.metrics import iterations_frame, requests_frame
    from experiments.serve.report import summary_text
    from experiments.serve.run import find_capacity
    from experiments.serve.run import serve as run_serve
    from mapper.model import load_model
    from mapper.pipeline import MapOptions

    spec = spec_of(args)
    opts = MapOptions(kernels=args.kernels)
    model = routed(load_model(args.model), args)
    chip, system = chip_or_system(args)
    args.out.mkdir(parents=True, exist_ok=True)
    where = args.system or args.chip

    def notify() -> None:
        import sys

        print(f"tessera serve: simulating {model.name}'s kernels on {where} at the pricing grid "
              f"points (the first run on a chip takes minutes; later runs read the "
              f"kernel-cost cache)", file=sys.stderr, flush=True)
    if args.find_capacity:
        def say(rate: float, ok: bool, s: dict) -> None:
            print(f"  rate {rate:8.3f} req/s: TTFT p99 {s['ttft_p99_s']:.3f} s, TBT p99 "
                  f"{s['tbt_p99_s'] * 1e3:.1f} ms -> {'meets' if ok else 'misses'} the SLOs")
        rate, best, probes = find_capacity(model, chip, system, spec, opts, progress=say,
                                           notify=notify)
        import pandas as pd

        pd.DataFrame(probes).to_csv(args.out / "capacity.csv", index=False)
        doc = {"capacity_req_s": rate, "model": model.name, "hardware": where,
               **{k: best.get(k) for k in KEYS}}
        print(f"capacity: {rate:.3f} requests/s of {model.name} on {where} within the SLOs "
              f"(probes: {args.out}/capacity.csv)")
        (args.out / "capacity.json").write_text(json.dumps(doc, indent=2))
        if args.json:
            print(json.dumps(doc))
        return 0
    out, summary = run_serve(model, chip, system, spec, opts, notify=notify)
    summary.update(model=model.name, hardware=where, scheduler=spec.sched.policy)
    print(summary_text(summary, spec))
    requests_frame(out).to_csv(args.out / "requests.csv", index=False)
    iterations_frame(out).to_csv(args.out / "iterations.csv", index=False)
    if out.rejected:
        import pandas as pd

        pd.DataFrame([{"id": r.id, "prompt_tokens": r.prompt, "output_tokens": r.output,
                       "reason": why} for r, why in out.rejected]).to_csv(
            args.out / "rejected.csv", index=False)
        print(f"  {len(out.rejected)} request(s) refused, listed in {args.out}/rejected.csv; "
              f"the first: {out.rejected[0][1]}")
    (args.out / "serve.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"results: {args.out}/requests.csv, iterations.csv, serve.json "
          f"(figures: tessera report {args.out})")
    if args.json:
        print(json.dumps({k: summary[k] for k in summary}, default=str))
    return 0
