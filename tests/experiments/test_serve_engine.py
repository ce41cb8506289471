"""The serving engine against theory and against what a user expects of each feature,
with iterations priced by simple stated functions (the simulated pricer is tested in
test_serve_cost.py): queueing formulas, conservation of tokens, and each scheduler,
cache and routing feature doing what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.serve.cost import Price
from experiments.serve.engine import Hardware, simulate
from experiments.serve.metrics import Prices, mean_in_system, summarize
from experiments.serve.scheduler import SchedulerConfig
from experiments.serve.workload import Request, synthetic


class Linear:
    """An iteration costs a fixed part, per prompt token and per decoded sequence."""

    def __init__(self, fixed: float = 1e-3, per_token: float = 2e-5, per_seq: float = 1e-5):
        self.fixed, self.per_token, self.per_seq = fixed, per_token, per_seq
        self.calls: list[tuple[list, list]] = []

    def price(self, prefill, decode) -> Price:  # noqa: ANN001
        self.calls.append((list(prefill), list(decode)))
        t = self.fixed + self.per_token * sum(n for n, _ in prefill) + \
            self.per_seq * len(decode)
        return Price(t, 100 * t)


def _hw(pricer=None, blocks: int = 10_000, **kw) -> Hardware:  # noqa: ANN001
    return Hardware(pricer or Linear(), blocks, 1000, **kw)


def _complete(out) -> None:  # noqa: ANN001
    """Every request got exactly its output tokens, in time order, after it arrived."""
    for s in out.seqs:
        assert s.generated == s.req.output == len(s.times), s
        assert s.times[0] > s.req.arrival
        assert all(b > a for a, b in zip(s.times, s.times[1:]))


def test_low_load_ttft_is_one_prefill() -> None:
    pricer = Linear()
    reqs = [Request(i, 10.0 * i, 300, 5) for i in range(5)]
    out = simulate(reqs, _hw(pricer), SchedulerConfig())
    prefill = pricer.fixed + pricer.per_token * 300
    for s in out.seqs:
        assert s.times[0] - s.req.arrival == pytest.approx(prefill, rel=1e-12)


def test_md1_mean_wait() -> None:
    """Prefill-only requests one at a time with a fixed service time D, Poisson arrivals:
    the mean wait is rho D / (2 (1 - rho)) (Pollaczek-Khinchine for M/D/1)."""
    pricer = Linear(fixed=0.0, per_token=1e-3)
    D, rho = 0.1, 0.7
    reqs = synthetic(rho / D, 100, 1, requests=40_000, seed=3)
    out = simulate(reqs, _hw(pricer), SchedulerConfig(max_seqs=1, token_budget=100))
    waits = np.array([s.times[0] - s.req.arrival - D for s in out.seqs])
    assert waits.mean() == pytest.approx(rho * D / (2 * (1 - rho)), rel=0.05)


@pytest.mark.parametrize("policy", ["vllm", "decode-first", "prefill-first"])
@pytest.mark.parametrize("preempt", ["recompute", "swap"])
def test_tokens_conserved_and_littles_law(policy: str, preempt: str) -> None:
    """A KV cache too small for the load forces preemptions; every request still ends with
    all its tokens, none twice, and mean in system = arrival rate x mean latency."""
    reqs = synthetic(100, "uniform:50:400", "uniform:20:200", requests=400, seed=1)
    hw = _hw(blocks=120, host_blocks=400)
    out = simulate(reqs, hw, SchedulerConfig(policy, preempt=preempt, token_budget=512),
                   block=16)
    _complete(out)
    s = summarize(out, Prices(1.0))
    assert s["preemptions"] > 0
    if preempt == "swap":
        assert s["swaps"] > 0
    span = out.end - min(r.arrival for r in reqs)
    latency = np.mean([x.times[-1] - x.req.arrival for x in out.seqs])
    assert mean_in_system(out) == pytest.approx(len(reqs) / span * latency, rel=1e-9)


def test_throughput_saturates_at_the_batch_the_cache_admits() -> None:
    """Each request needs 3 blocks of 16 tokens (prompt 40 + output 8): a 40-block cache
    runs at most 13 at once, and under heavy load it keeps that many running."""
    reqs = synthetic(1000, 40, 8, requests=500, seed=2)
    out = simulate(reqs, _hw(blocks=40), SchedulerConfig(), block=16)
    _complete(out)
    batches = [i.sequences for i in out.iterations]
    assert max(batches) == 13
    assert np.median(batches) >= 12
    assert summarize(out, Prices(1.0))["preemptions"] == 0


def test_a_prefix_cache_hit_skips_the_shared_prompt() -> None:
    pricer = Linear()
    reqs = [Request(0, 0.0, 600, 2, "sys", 512), Request(1, 5.0, 600, 2, "sys", 512)]
    out = simulate(reqs, _hw(pricer), SchedulerConfig(), block=16, prefix_cache=True)
    _complete(out)
    prompts = [p for p, _ in pricer.calls if p]
    assert prompts[0] == [(600, 0)]
    assert prompts[1] == [(600 - 512, 512)]  # 32 blocks of the prefix read, not computed
    assert out.seqs[1].cached == 512
    off = simulate(reqs, _hw(Linear()), SchedulerConfig(), block=16)
    assert out.seqs[1].times[0] - 5.0 < off.seqs[1].times[0] - 5.0


def test_prefix_blocks_are_evicted_least_recently_used() -> None:
    reqs = [Request(i, 5.0 * i, 100, 1, f"p{i % 3}", 96) for i in range(6)]
    out = simulate(reqs, _hw(blocks=14), SchedulerConfig(), block=16, prefix_cache=True)
    _complete(out)
    kv = out.kv[0]
    assert kv.evictions > 0 and kv.hit_tokens == 0  # 3 prefixes of 6 blocks in 14: cycled


def test_disaggregation_moves_the_kv_the_model_says() -> None:
    moved = []

    def transfer(src: int, dst: int, nbytes: float) -> Price:
        moved.append((src, dst, nbytes))
        return Price(1e-4 + nbytes / 1e11, 0.0)
    reqs = synthetic(20, "uniform:100:300", 16, requests=60, seed=4)
    hw = _hw(chips=2, transfer=transfer)
    out = simulate(reqs, hw, SchedulerConfig(), block=16, disaggregate=(1, 2))
    _complete(out)
    assert len(moved) == len(reqs)
    for s in out.seqs:
        assert s.replica == 0 and s.decode_replica in (1, 2)
    want = sum(-(-r.prompt // 16) * hw.block_bytes * 2 for r in reqs)
    assert out.transfer_bytes == sum(b for *_, b in moved) == want
    decode_pool = {i.replica for i in out.iterations if i.decode_seqs}
    assert decode_pool <= {1, 2}
    assert all(i.decode_seqs == 0 for i in out.iterations if i.replica == 0)


def test_prefill_first_runs_prompts_alone() -> None:
    reqs = synthetic(50, 300, 30, requests=100, seed=5)
    pf = Linear()
    _complete(simulate(reqs, _hw(pf), SchedulerConfig("prefill-first")))
    assert all(not (p and d) for p, d in pf.calls)
    assert any(p for p, _ in pf.calls) and any(d for _, d in pf.calls)


def _mid_prefill_replica():  # noqa: ANN202
    """A replica whose first running sequence is half-way through a long prompt, with
    three decoding sequences admitted after it."""
    from experiments.serve.kvcache import BlockManager
    from experiments.serve.scheduler import Replica, Seq

    r = Replica(0, BlockManager(1000, 16))
    long = Seq(Request(0, 0.0, 4000, 5), computed=1000)
    r.kv.grow(long.held, 1000)
    r.running.append(long)
    for i in range(1, 4):
        s = Seq(Request(i, 0.0, 50, 5), computed=51, generated=2)
        r.kv.grow(s.held, 51)
        r.running.append(s)
    return r


def test_decode_first_never_stalls_a_decode_behind_a_prompt() -> None:
    from experiments.serve.scheduler import Scheduler

    step = Scheduler(SchedulerConfig("vllm", token_budget=256)).schedule(_mid_prefill_replica())
    assert step.shapes() == ([(256, 1000)], [])  # the chunk took the budget
    step = Scheduler(SchedulerConfig("decode-first", token_budget=256)).schedule(
        _mid_prefill_replica())
    assert step.shapes() == ([(253, 1000)], [51, 51, 51])


def test_shortest_prompt_first_shortens_median_ttft() -> None:
    reqs = synthetic(40, "uniform:16:2000", 8, requests=300, seed=6)
    fcfs = summarize(simulate(reqs, _hw(), SchedulerConfig(max_seqs=4)), Prices(1.0))
    spf = summarize(simulate(reqs, _hw(), SchedulerConfig(max_seqs=4, order="spf")),
                    Prices(1.0))
    assert spf["ttft_p50_s"] < fcfs["ttft_p50_s"]


def test_routers() -> None:
    reqs = [Request(i, 1e-4 * i, 100, 4, f"p{i % 2}", 64) for i in range(40)]
    rr = simulate(reqs, _hw(), SchedulerConfig(), replicas=4)
    assert [s.replica for s in rr.seqs][:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    aff = simulate(reqs, _hw(), SchedulerConfig(), replicas=4, router="prefix-affinity")
    by_prefix = {}
    for s in aff.seqs:
        by_prefix.setdefault(s.req.prefix, set()).add(s.replica)
    assert all(len(v) == 1 for v in by_prefix.values())
    lt = simulate(reqs, _hw(), SchedulerConfig(), replicas=4, router="least-tokens")
    _complete(lt)
    assert len({s.replica for s in lt.seqs}) == 4


def test_a_request_that_can_never_fit_is_rejected_with_its_reason() -> None:
    reqs = [Request(0, 0.0, 5000, 10), Request(1, 0.1, 100, 10)]
    out = simulate(reqs, _hw(blocks=50), SchedulerConfig(), block=16)
    assert [r.id for r, _ in out.rejected] == [0]
    assert "KV blocks" in out.rejected[0][1]
    _complete(out)
    out = simulate(reqs, _hw(max_tokens=1024), SchedulerConfig(), block=16)
    assert [r.id for r, _ in out.rejected] == [0] and "positions" in out.rejected[0][1]


def test_energy_and_cost_per_token_follow_the_iterations() -> None:
    reqs = synthetic(5, 100, 10, requests=50, seed=7)
    out = simulate(reqs, _hw(static_w=50.0), SchedulerConfig())
    busy = sum(i.time_s for i in out.iterations)
    assert out.energy_j == pytest.approx(sum(i.energy_j for i in out.iterations) +
                                         50.0 * (out.end - busy))
    s = summarize(out, Prices(chip_usd=0.0, usd_per_kwh=0.36))
    tokens = sum(x.generated for x in out.seqs)
    assert s["usd_per_mtok"] == pytest.approx(out.energy_j / 3.6e6 * 0.36 / tokens * 1e6)


def test_a_pipeline_keeps_stages_busy_with_batches_of_other_sequences() -> None:
    """With 2 stages a new batch enters every half iteration, from sequences not already
    in flight: a sequence's tokens are still one whole iteration apart, and a saturated
    replica serves about twice the tokens per second."""
    pricer = Linear(fixed=4e-3, per_token=0.0, per_seq=0.0)  # every iteration 4 ms
    reqs = synthetic(2000, 8, 64, requests=400, seed=8)
    one = simulate(reqs, _hw(pricer), SchedulerConfig(max_seqs=16))
    two = simulate(reqs, _hw(pricer, stages=2), SchedulerConfig(max_seqs=16))
    _complete(two)
    for s in two.seqs:
        assert min(np.diff(s.times)) >= 4e-3 - 1e-12  # never two iterations at once
    tput = [summarize(o, Prices(1.0))["throughput_tok_s"] for o in (one, two)]
    assert tput[1] == pytest.approx(2 * tput[0], rel=0.1)


def test_drawn_lengths_fit_the_models_positions() -> None:
    reqs = synthetic(5, "lognormal:6000:1.0:20000", "lognormal:3000:1.0:9000", requests=300,
                     seed=9, max_tokens=8192)
    assert max(r.prompt + r.output for r in reqs) <= 8192
    assert max(r.output for r in reqs) <= 4096 and min(r.prompt for r in reqs) >= 1
