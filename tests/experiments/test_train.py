"""``tessera train`` and the training kinds of ``tessera validate``: figures that come from
the simulated kernels and behave as the mechanisms say."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main as tessera
from experiments.train.step import TrainError, TrainSpec, step_memory, train_step
from hardware.chips import load_chip
from hardware.systems import load_system
from mapper.model import load_model

TINY = load_model("tiny-llama")


@pytest.fixture(scope="module")
def edge():
    return load_chip("edge")


def test_train_json_carries_the_headline_and_the_breakdowns(tmp_path, capsys):
    code = tessera(["train", "--model", "tiny-llama", "--chip", "edge", "--seq", "64",
                    "--micro-batch", "2", "--global-batch", "4", "--out", str(tmp_path),
                    "--no-overlap-grad", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["overlap_grad"] is False  # the flag reaches the step's spec
    for key in ("step_s", "tokens_per_s", "mfu", "peak_memory_bytes", "energy_j",
                "compute_s", "bubble_s", "exposed_comm_s", "optimizer_s"):
        assert out[key] >= 0, key
    assert out["tokens_per_s"] == pytest.approx(4 * 64 / out["step_s"])
    assert 0 < out["mfu"] < 1
    assert (tmp_path / "train.json").exists()


def test_accumulating_more_micro_batches_adds_their_compute_not_another_optimizer(edge):
    one = train_step(TINY, TrainSpec(2, 64, 2), edge)
    four = train_step(TINY, TrainSpec(2, 64, 8), edge)
    per_mb = one.breakdown["compute"]
    assert four.breakdown["compute"] == pytest.approx(4 * per_mb, rel=1e-9)
    assert four.breakdown["optimizer"] == pytest.approx(one.breakdown["optimizer"])
    assert four.tokens == 4 * one.tokens


def test_full_recomputation_trades_activation_memory_for_a_second_forward(edge):
    plain = train_step(TINY, TrainSpec(4, 64, 4), edge)
    rec = train_step(TINY, TrainSpec(4, 64, 4, recompute="full"), edge)
    assert rec.memory.activations < plain.memory.activations
    fwd = plain.layer.fwd.time_s * TINY.layers
    assert rec.breakdown["compute"] == pytest.approx(plain.breakdown["compute"] + fwd)


def test_zero_stages_shard_optimizer_then_gradients_then_weights():
    m = load_model("llama2-7b")
    chip = load_chip("h100")
    mem = [step_memory(m, TrainSpec(1, 1024, 0, tp=1, pp=1, dp=8, zero=z), chip)
           for z in range(4)]
    assert mem[1].optimizer == pytest.approx(mem[0].optimizer / 8)
    assert mem[2].gradients == pytest.approx(mem[1].gradients / 8)
    assert mem[3].weights == pytest.approx(mem[2].weights / 8)
    assert mem[0].weights + mem[0].gradients + mem[0].optimizer == pytest.approx(
        18 * m.params, rel=1e-6)  # Megatron's 2 + 4 + 12 bytes per parameter


def test_a_model_that_does_not_fit_is_one_line_with_the_breakdown(capsys):
    code = tessera(["train", "--model", "llama3-70b", "--chip", "h100", "--seq", "2048"])
    err = capsys.readouterr().err
    assert code == 1 and "does not fit" in err and "optimizer" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_split_names_the_option(edge):
    with pytest.raises(TrainError, match="--dp"):
        train_step(TINY, TrainSpec(1, 64, tp=2), edge)
    with pytest.raises(TrainError, match="--global-batch"):
        train_step(TINY, TrainSpec(2, 64, 3), edge)


def test_data_parallel_sync_is_simulated_on_the_topology_and_overlaps_the_backward():
    system = load_system("h100x4")
    m = load_model("tiny-llama")
    dp = train_step(m, TrainSpec(2, 64, 8, dp=4), system.chips[0], system)
    assert dp.comm_s > 0
    assert dp.breakdown["exposed_comm"] <= dp.comm_s
    zero1 = train_step(m, TrainSpec(2, 64, 8, dp=4, zero=1), system.chips[0], system)
    assert zero1.memory.optimizer == pytest.approx(dp.memory.optimizer / 4)
    after = train_step(m, TrainSpec(2, 64, 8, dp=4, overlap_grad=False), system.chips[0],
                       system)  # Megatron-LM before --overlap-grad-reduce
    assert after.breakdown["exposed_comm"] == pytest.approx(after.comm_s)
    assert after.step_s - dp.step_s == pytest.approx(
        after.comm_s - dp.breakdown["exposed_comm"])


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])  # gpt2: rank 0's biases
def test_tensor_parallel_layers_run_on_their_group_with_collectives(name):
    system = load_system("h100x4")
    m = load_model(name)
    tp = train_step(m, TrainSpec(2, 64, 4, tp=2, dp=2), system.chips[0], system)
    one = train_step(m, TrainSpec(2, 64, 8, dp=4), system.chips[0], system)
    assert tp.memory.weights == pytest.approx(one.memory.weights / 2, rel=0.05)
    assert tp.layer.fwd.time_s != one.layer.fwd.time_s


def test_pipeline_bubble_comes_from_the_schedule():
    system = load_system("h100x4")
    m = load_model("tiny-llama")
    r = train_step(m, TrainSpec(1, 64, 4, pp=2, dp=2), system.chips[0], system)
    assert r.breakdown["bubble"] > 0
    more = train_step(m, TrainSpec(1, 64, 16, pp=2, dp=2), system.chips[0], system)
    assert more.breakdown["bubble"] / more.step_s < r.breakdown["bubble"] / r.step_s


def test_tensor_parallel_shortcut_equals_lowering_every_rank():
    """layer_costs lowers ranks 0 and 1 and reuses rank 1's programs for ranks 2..tp-1 (the
    simulator also runs identical chips once): the same times as every rank lowered and
    simulated on its own."""
    from experiments.train.costs import _split, first_chips, layer_costs
    from mapper.backward import training_graph
    from mapper.layers import Phase, Shard
    from mapper.lower import lower
    from simulator.run import simulate_system

    system = load_system("h100x4")
    chip = system.chips[0]
    phase = Phase("prefill", 2, seq=32)
    fast = layer_costs(TINY, chip, phase, 4, system)
    lows = [lower(training_graph(TINY, phase, 1, shard=Shard(4, r, 1)), chip, layout="row",
                  barrier_group=1) for r in range(4)]
    sub = first_chips(system, 4)
    results = [simulate_system(sub, {(c, core): p for c in range(4)
                                     for core, p in lows[c].kernel_programs[k].items()},
                               groups={1: [0, 1, 2, 3]}, dedupe=False)
               for k in range(len(lows[0].kernel_programs))]
    full = _split(lows[0].kernels, results, 4)
    assert full.fwd.time_s == pytest.approx(fast.fwd.time_s, rel=1e-9)
    assert full.bwd.time_s == pytest.approx(fast.bwd.time_s, rel=1e-9)
    import dataclasses

    assert dataclasses.astuple(full.bwd) == pytest.approx(dataclasses.astuple(fast.bwd),
                                                          rel=1e-6)


def test_report_draws_the_breakdowns_and_the_pipeline_timeline(tmp_path, capsys):
    out = tmp_path / "train"
    assert tessera(["train", "--model", "tiny-llama", "--system", "h100x4", "--pp", "2",
                    "--dp", "2", "--seq", "64", "--global-batch", "8", "--out", str(out)]) == 0
    assert tessera(["report", str(out)]) == 0
    for name in ("step_time", "memory", "pipeline"):
        assert (out / "report" / f"{name}.png").stat().st_size > 1000
    doc = json.loads((out / "train.json").read_text())
    assert {row[1] for row in doc["timeline"]} == {"F", "B"}


def test_offloading_the_optimizer_moves_its_states_to_the_host_and_prices_the_link():
    system = load_system("h100x4")
    m = load_model("tiny-llama")
    on = train_step(m, TrainSpec(2, 64, 8, dp=4, offload_optimizer=True), system.chips[0],
                    system)
    off = train_step(m, TrainSpec(2, 64, 8, dp=4), system.chips[0], system)
    assert on.memory.optimizer == 0 and on.memory.offloaded == pytest.approx(
        off.memory.optimizer)
    params = off.memory.gradients / 4
    host = system.host
    assert on.breakdown["optimizer"] >= 6 * params / host.link  # grads down, weights up


def test_activation_memory_follows_the_schedules_micro_batches_in_flight():
    m = load_model("llama2-7b")
    chip = load_chip("h100")

    def acts(**kw):
        return step_memory(m, TrainSpec(1, 1024, 32, pp=4, dp=1, **kw), chip).activations
    one_f_one_b, gpipe = acts(schedule="1f1b"), acts(schedule="gpipe")
    assert gpipe == pytest.approx(one_f_one_b * 32 / 4)  # all 32 vs p = 4 in flight
    inter = acts(schedule="interleaved", virtual_stages=2)
    # Megatron's interleaved warm-up keeps 2(p-1) + (v-1)p + 1 = 11 chunks of half a stage
    assert inter == pytest.approx(one_f_one_b * 11 / 2 / 4)


@pytest.mark.parametrize("zero", [0, 1, 3])
def test_zero_communication_volumes_match_their_closed_forms(zero):
    """Per chip and step, on an ideal 4-chip switch (every transfer two links, no protocol
    overhead): DP all-reduce 2(p-1)/p x 4P; ZeRO-1/2 reduce-scatter (p-1)/p x 4P + all-gather
    (p-1)/p x 2P; ZeRO-3 adds (2 m L + 1) gathers of a layer's bf16 weights."""
    from hardware.systems import system_from_dict

    system = system_from_dict({"name": "ideal4", "chip": "h100",
                               "topology": {"kind": "switch", "dims": [4]},
                               "link": {"bandwidth": "450 GB/s"}}, "ideal4.yaml")
    m = load_model("tiny-llama")
    spec = TrainSpec(1, 64, 8, dp=4, zero=zero)
    r = train_step(m, spec, system.chips[0], system)
    p = 4
    params = r.memory.gradients / 4 * (p if zero >= 2 else 1)  # fp32: 4 bytes a parameter
    hops = 2
    if zero == 0:
        want = 2 * (p - 1) / p * 4 * params
    else:
        want = (p - 1) / p * 4 * params + (p - 1) / p * 2 * params
    if zero == 3:
        want += (2 * spec.micro_batches * m.layers + 1) * (p - 1) / p * 2 * m.params_per_layer
    assert r.sync_link_bytes == pytest.approx(hops * want, rel=1e-3)


def test_train_trace_writes_one_layers_kernels(tmp_path, capsys):
    trace = tmp_path / "t.json"
    assert tessera(["train", "--model", "tiny-llama", "--chip", "edge", "--seq", "32",
                    "--trace", str(trace), "--out", str(tmp_path / "r")]) == 0
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("name", "") for e in events}
    assert any(n.startswith("mm") for n in names) and any("storeadd" in n for n in names)


def test_an_oversized_step_is_refused_before_anything_is_lowered(capsys):
    code = tessera(["train", "--model", "llama2-7b", "--chip", "h200", "--seq", "4096",
                    "--micro-batch", "8", "--max-instructions", "1000000"])
    err = capsys.readouterr().err
    assert code == 1 and "--max-instructions" in err and len(err.strip().splitlines()) == 1


def test_sequence_parallel_training_swaps_all_reduces_for_scatter_and_gather():
    """Megatron's sequence parallelism in training: norms and residuals on T / tp rows; each
    row-parallel all-reduce is a reduce-scatter and each norm's output is all-gathered, and
    the backward runs them reversed (a gather's gradient is reduce-scattered, a scatter's
    gathered) with no all-reduce left; the saved activations shrink, the step prices it."""
    from collections import Counter

    from mapper.backward import training_graph
    from mapper.layers import Phase, Shard
    from mapper.ops import Op

    phase = Phase("prefill", 2, seq=32)
    g = training_graph(TINY, phase, 1, shard=Shard(2, 0, 1, sp=True))
    ops = Counter((n.name.startswith("bwd."), n.op) for n in g.nodes)
    assert ops[(False, Op.REDUCESCATTER)] == 2 and ops[(False, Op.ALLGATHER)] == 2
    assert ops[(True, Op.REDUCESCATTER)] == 2 and ops[(True, Op.ALLGATHER)] == 2
    assert not any(op == Op.ALLREDUCE for _, op in ops)
    system = load_system("h100x4")
    plain = train_step(TINY, TrainSpec(2, 32, 4, tp=2, dp=2), system.chips[0], system)
    sp = train_step(TINY, TrainSpec(2, 32, 4, tp=2, dp=2, sp=True), system.chips[0], system)
    assert sp.memory.activations < plain.memory.activations
    assert sp.step_s > 0 and sp.layer.bwd.time_s != plain.layer.bwd.time_s
    with pytest.raises(TrainError, match="--sp: 63 tokens"):
        train_step(TINY, TrainSpec(1, 63, 2, tp=2, dp=2, sp=True), system.chips[0], system)


def test_expert_parallel_training_spreads_the_experts_and_exchanges_tokens():
    """--ep: each replica holds 1 / ep of the routed experts (weights, gradients and
    optimizer states shrink by their share), the layer's tokens go to their experts and back
    by all-to-all in the forward and again in the backward, and the expert gradients are
    reduced only over the replicas that hold the same experts."""
    from experiments.train.step import _expert_params

    m = load_model("tiny-mixtral")
    system = load_system("h100x4")
    one = train_step(m, TrainSpec(2, 64, 8, dp=4), system.chips[0], system)
    ep = train_step(m, TrainSpec(2, 64, 8, dp=4, ep=4), system.chips[0], system)
    experts = _expert_params(m, TrainSpec(ep=4))
    assert one.memory.weights - ep.memory.weights == pytest.approx(
        experts * 3 / 4 * 2, rel=1e-6)  # bf16 weights of the 3 / 4 of experts held elsewhere
    assert ep.sync_link_bytes < one.sync_link_bytes
    kinds = [k for _, k, _ in ep.layer.kernels]
    assert kinds.count("alltoall") >= 4  # out and back, forward and backward
    for spec, message in ((TrainSpec(2, 64, 8, dp=4, ep=3), "--ep: 3 must divide --dp 4"),
                          (TrainSpec(2, 64, 8, dp=2, tp=2, ep=2), "without --tp")):
        with pytest.raises(TrainError, match=message):
            train_step(m, spec, system.chips[0], system)
    with pytest.raises(TrainError, match="has no experts"):
        train_step(TINY, TrainSpec(2, 64, 8, dp=4, ep=2), system.chips[0], system)


def test_mfu_counts_the_parameters_a_token_uses():
    """A MoE token visits its routed experts only: MFU's model FLOPs are 6 x the active
    parameters (Mixtral 8x7B: 12.9 B of 46.7 B), not 6 x all of them."""
    from experiments.train.step import _model_flops

    m = load_model("mixtral-8x7b")
    attn = 12 * m.layers * 2048 * m.heads * m.head_dim / 2
    assert _model_flops(m, 2048) == pytest.approx(6 * m.active_params + attn)
    assert 12.5e9 < m.active_params < 13.5e9 and m.params > 3.5 * m.active_params


def test_layers_that_do_not_divide_into_stages_split_unevenly():
    """Uneven pipeline stages (DeepSeek-V3's 61 layers on 16): as even as they divide, the
    extra layers after the first stage; the deepest stage sets memory, its time the bubble."""
    from experiments.train.step import stage_layers

    assert stage_layers(61, 16) == [3] + [4] * 13 + [3] * 2
    assert sum(stage_layers(61, 16)) == 61 and stage_layers(8, 4) == [2] * 4
    import dataclasses

    system = load_system("h100x4")
    m = dataclasses.replace(load_model("tiny-llama"), layers=3)
    even = train_step(dataclasses.replace(m, layers=4), TrainSpec(1, 64, 4, pp=2, dp=2),
                      system.chips[0], system)
    r = train_step(m, TrainSpec(1, 64, 4, pp=2, dp=2), system.chips[0], system)
    assert r.memory.weights == pytest.approx(even.memory.weights)  # both stages hold 2 deep
    assert 0 < r.step_s < even.step_s  # its first stage is one layer short
    with pytest.raises(TrainError, match="cannot fill 4 pipeline stages"):
        train_step(m, TrainSpec(1, 64, 4, pp=4), system.chips[0], system)


def test_energy_of_a_training_row_is_the_step_over_its_tokens():
    """energy.csv's training workload (model_train_bN_sS): one step's board energy, static
    power included, over its N x S tokens; a name of no known form is a skipped row."""
    import pandas as pd

    from experiments.measured_train import energy
    from experiments.measured_work import Skip, Target

    chip = load_chip("edge")
    got = energy(Target("edge", chip), pd.Series({"workload": "tiny-llama_train_b2_s64"}))
    step = train_step(TINY, TrainSpec(2, 64, 2, recipe="pytorch"), chip)
    assert got["joules_per_unit"] == pytest.approx(step.energy_j / 128, rel=1e-12)
    assert step.energy_j > chip.energy.static_w * step.step_s  # static power and more
    with pytest.raises(Skip, match="model_train_bN_sS"):
        energy(Target("edge", chip), pd.Series({"workload": "tiny-llama_finetune"}))


def test_an_optimizer_row_too_big_is_refused_before_any_work(tmp_path, capsys):
    """A row whose optimizer states do not fit the HBM, or whose steps are over the budget,
    is a skipped row with its reason; an unknown implementation too."""
    csv = tmp_path / "optimizer.csv"
    csv.write_text("impl,n_params,ms\nfused,100000000000,1.0\nforeach,100000000,1.0\n"
                   "sgd,1000,1.0\n")
    code = tessera(["validate", "h200", str(csv), "--max-instructions", "100000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "GB of tensors, more than the 141 GB of HBM" in out
    assert "over the limit of 100,000" in out
    assert "optimizer implementation 'sgd' not modelled" in out
