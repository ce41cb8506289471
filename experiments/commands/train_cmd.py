"""``tessera train``: one training step of a model on a chip or a system."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.commands import DefaultsHelp, add_routing_args, chip_or_system, routed
from isa.errors import TesseraError


class TrainOptionError(TesseraError):
    pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="price one training step (forward, backward, optimizer) of a model",
        formatter_class=DefaultsHelp,
        description="Simulate one layer's forward and backward kernels per micro-batch (on a "
                    "chip or its tensor-parallel group), the pipeline schedule over the "
                    "stages, the data-parallel gradient sync on the topology and the "
                    "optimizer kernel: step time, tokens/s, MFU, the time and memory "
                    "breakdowns and energy (docs/training.md).")
    p.add_argument("--model", default="llama2-7b",
                   help="preset name, model YAML or Hugging Face config.json")
    add_routing_args(p)
    p.add_argument("--chip", default="h100", help="chip preset or YAML (one chip)")
    p.add_argument("--system", help="a multi-chip system preset or YAML (instead of --chip)")
    for name, what in (("tp", "tensor-parallel degree"), ("pp", "pipeline stages"),
                       ("dp", "data-parallel replicas")):
        p.add_argument(f"--{name}", type=int, default=1, help=what)
    p.add_argument("--zero", type=int, default=0, choices=(0, 1, 2, 3),
                   help="ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also "
                        "weights over the data-parallel ranks")
    p.add_argument("--sp", action="store_true", help="Megatron sequence parallelism")
    p.add_argument("--ep", type=int, default=1,
                   help="expert-parallel degree: the routed experts spread over ep of the "
                        "data-parallel replicas (ep divides dp; without --tp)")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch")
    p.add_argument("--global-batch", type=int, default=0,
                   help="sequences per step (0: micro-batch x dp; more: gradient "
                        "accumulation over micro-batches)")
    p.add_argument("--seq", type=int, default=2048, help="tokens per sequence")
    p.add_argument("--recompute", choices=("none", "selective", "full"), default="none",
                   help="activation recomputation")
    p.add_argument("--schedule", choices=("gpipe", "1f1b", "interleaved"), default="1f1b",
                   help="pipeline schedule")
    p.add_argument("--virtual-stages", type=int, default=1,
                   help="model chunks per device (interleaved 1F1B)")
    p.add_argument("--offload-optimizer", action="store_true",
                   help="optimizer states and step on the host (ZeRO-Offload)")
    p.add_argument("--no-overlap-grad", dest="overlap_grad", action="store_false",
                   help="run the data-parallel gradient sync after the backward, not "
                        "overlapped with it (Megatron-LM before --overlap-grad-reduce)")
    p.add_argument("--recipe", choices=("megatron", "pytorch"), default="megatron",
                   help="mixed precision: megatron (bf16 weights, fp32 main grads and "
                        "optimizer, fused kernels) or pytorch (autocast: fp32 weights, fp32 "
                        "loss, eager composite kernels: mapper/eager.py)")
    p.add_argument("--trace", type=Path,
                   help="Chrome trace of one layer's forward and backward kernels on one chip "
                        "(one micro-batch), written here")
    p.add_argument("--max-instructions", type=int, default=50_000_000,
                   help="refuse a step whose largest kernel is estimated to simulate more "
                        "instructions, before anything is lowered")
    p.add_argument("--out", type=Path, default=Path("results/train"), help="results folder")
    p.add_argument("--json", action="store_true", help="print the figures as JSON last")
    p.set_defaults(handler=train)


def train(args: argparse.Namespace) -> int:
    from experiments.train.step import TrainSpec, train_step
    from experiments.train.summary import summary
    from mapper.model import load_model

    model = routed(load_model(args.model), args)
    chip, system = chip_or_system(args)
    spec = TrainSpec(args.micro_batch, args.seq, args.global_batch, args.tp, args.pp, args.dp,
                     args.zero, args.sp, args.recompute, args.schedule, args.virtual_stages,
                     args.offload_optimizer, args.recipe, args.ep, args.overlap_grad)
    report = train_step(model, spec, chip, system, args.system or args.chip,
                        args.max_instructions)
    print(summary(report))
    args.out.mkdir(parents=True, exist_ok=True)
    from experiments.train.report import timeline_rows

    doc = report.as_dict()
    (args.out / "train.json").write_text(json.dumps({**doc, "timeline": timeline_rows(report)},
                                                    indent=2, default=str))
    print(f"results: {args.out}/train.json (figures: tessera report {args.out})")
    if args.trace:
        from experiments.train.costs import layer_trace
        from mapper.layers import Phase

        traced = layer_trace(model, chip, Phase("prefill", args.micro_batch, seq=args.seq))
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        args.trace.write_text(json.dumps(traced.chrome_trace()))
        print(f"trace: {args.trace} (one layer, forward and backward, on one {chip.name})")
    if args.json:
        print(json.dumps(doc, default=str))
    return 0
