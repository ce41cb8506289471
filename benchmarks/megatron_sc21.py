"""Predict the GPT runs of Megatron-LM's SC'21 paper (Narayanan et al., "Efficient
Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", table 1, also in
the Megatron-LM README): achieved TFLOP/s per A100, side by side with the published figure.

    python benchmarks/megatron_sc21.py [--rows 3] [--skip 0] [--markdown]

Each row: a GPT model (vocabulary 51,200, sequence 2048, learned positions, GELU, biases)
with its published hidden size, heads, layers, tensor- and pipeline-parallel sizes, GPU
count and global batch; data parallelism = GPUs / (TP x PP); DGX A100 nodes (8 GPUs on
NVSwitch, one 200 Gb/s HDR NIC per GPU). What the paper does not state is set as its text
describes its runs: micro-batch 1, full activation recomputation, 1F1B, Megatron's mixed
precision, and the data-parallel gradient all-reduce after the backward (the code of the
time had no overlap: ``--overlap-grad-reduce`` came in 2023). Achieved FLOP/s are counted
as the paper counts them (with recomputation): 96 B s l h^2 (1 + s / 6h + V / 16 l h) per
step, over the simulated step time.
"""

from __future__ import annotations

import argparse
import time

# params (B), heads, hidden, layers, TP, PP, GPUs, batch, published TFLOP/s per GPU
ROWS = [
    (1.7, 24, 2304, 24, 1, 1, 32, 512, 137),
    (3.6, 32, 3072, 30, 2, 1, 64, 512, 138),
    (7.5, 32, 4096, 36, 4, 1, 128, 512, 142),
    (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135),
    (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138),
    (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140),
    (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148),
    (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155),
    (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163),
    (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163),
]
VOCAB, SEQ = 51200, 2048


def gpt(params: float, heads: int, hidden: int, layers: int):  # noqa: ANN201
    from mapper.model import model_from_dict

    return model_from_dict({"name": f"gpt-{params}b", "hidden": hidden, "layers": layers,
                            "heads": heads, "ffn": 4 * hidden, "vocab": VOCAB, "max_seq": SEQ,
                            "mlp": "gelu", "norm": "layernorm", "position": "learned",
                            "bias": True, "tied_embeddings": True})


def dgx_a100(gpus: int):  # noqa: ANN201
    from hardware.systems import load_system
    from hardware.topology import Topology

    base = load_system("dgx-a100-x16")
    import dataclasses

    nodes = -(-gpus // 8)
    return dataclasses.replace(base, name=f"dgx-a100-{nodes}n",
                               chips=(base.chips[0],) * gpus,
                               topology=Topology("cluster", (nodes, 8, 4)))


def paper_flops(batch: int, layers: int, hidden: int) -> float:
    s, h, ll = SEQ, hidden, layers
    return 96 * batch * s * ll * h * h * (1 + s / (6 * h) + VOCAB / (16 * ll * h))


def main() -> None:
    from experiments.train.step import TrainSpec, train_step
    from isa.errors import TesseraError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=len(ROWS), help="the first N rows")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first K rows")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    out = []
    for params, heads, hidden, layers, tp, pp, gpus, batch, published in ROWS[args.skip:args.rows]:
        t0 = time.perf_counter()
        model = gpt(params, heads, hidden, layers)
        system = dgx_a100(gpus)
        dp = gpus // (tp * pp)
        spec = TrainSpec(micro_batch=1, seq=SEQ, global_batch=batch, tp=tp, pp=pp, dp=dp,
                         recompute="full", schedule="1f1b", overlap_grad=False)
        try:
            r = train_step(model, spec, system.chips[0], system)
        except TesseraError as exc:
            print(f"{params:7.1f}B TP{tp} PP{pp} DP{dp}: not mapped: {exc}", flush=True)
            out.append((params, tp, pp, dp, gpus, batch, published, float("nan"),
                        float("nan"), None))
            continue
        got = paper_flops(batch, layers, hidden) / r.step_s / gpus / 1e12
        err = 100 * (got - published) / published
        out.append((params, tp, pp, dp, gpus, batch, published, got, err, r))
        print(f"{params:7.1f}B TP{tp} PP{pp} DP{dp} {gpus:5d} GPUs batch {batch}: published "
              f"{published} TFLOP/s per GPU, predicted {got:.0f} ({err:+.1f}%); step "
              f"{r.step_s:.2f} s, bubble {r.breakdown['bubble']:.2f} s, exposed comm "
              f"{r.breakdown['exposed_comm']:.2f} s; {time.perf_counter() - t0:.0f} s wall",
              flush=True)
    if args.markdown:
        print("\n| model | TP | PP | DP | GPUs | batch | published TFLOP/s | predicted | error |")
        print("|---|---|---|---|---|---|---|---|---|")
        for params, tp, pp, dp, gpus, batch, pub, got, err, _ in out:
            shown = (f"{got:.0f} | {err:+.1f}%" if got == got else "not mapped | -")
            print(f"| {params}B | {tp} | {pp} | {dp} | {gpus} | {batch} | {pub} | {shown} |")


if __name__ == "__main__":
    main()
