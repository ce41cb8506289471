"""The serving simulation: requests arrive, a router places them on replicas, each replica
runs iterations its scheduler plans, each iteration priced on the replica's hardware.

A SimPy process per replica loops: plan an iteration, hold for its price (plus any swap
to or from host memory over the host link), then apply it: tokens computed, output tokens
emitted at the iteration's end, finished sequences leave. With disaggregation, prefill
replicas hand each sequence, after its first token, to a decode replica: its KV cache moves
over the system's links (a transfer the pricer simulates on the topology), serialised on
the prefill replica's outgoing link.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import simpy

from experiments.serve.cost import Price
from experiments.serve.kvcache import BlockManager
from experiments.serve.scheduler import Replica, Scheduler, SchedulerConfig, Seq, Step
from experiments.serve.workload import Request

ROUTERS = ("round-robin", "least-tokens", "prefix-affinity")


class Pricer(Protocol):
    def price(self, prefill: list[tuple[int, int]], decode: list[int]) -> Price: ...


@dataclass
class Hardware:
    """What the engine needs to know about a replica's hardware."""

    pricer: Pricer
    kv_blocks: int  # blocks of the paged cache per replica
    block_bytes: int  # one block's KV bytes on one chip
    chips: int = 1  # chips per replica
    host_link: float = 64e9  # bytes/s each way, per chip
    host_blocks: int = 0  # blocks a replica may swap out to host memory
    static_w: float = 0.0  # one chip's static power (idle energy)
    transfer: object = None  # (src replica, dst replica, bytes) -> Price, for disaggregation
    max_tokens: int = 0  # the model's positions: prompt + output beyond them is refused
    stages: int = 1  # pipeline stages per replica: up to this many iterations in flight


@dataclass
class IterationLog:
    replica: int
    start: float
    time_s: float
    energy_j: float
    prefill_tokens: int
    decode_seqs: int
    sequences: int
    kv_used: float  # fraction of blocks held after the iteration
    preempted: int
    swap_blocks: int


@dataclass
class Outcome:
    seqs: list[Seq]
    iterations: list[IterationLog]
    rejected: list[tuple[Request, str]]
    end: float
    replicas: int
    chips_per_replica: int
    energy_j: float  # iterations + transfers + idle static power
    kv: list[BlockManager]
    transfers: int = 0
    transfer_bytes: float = 0.0
    in_system: list[tuple[float, int]] = field(default_factory=list)  # (time, count) steps


def simulate(requests: list[Request], hw: Hardware, sched: SchedulerConfig, *,
             replicas: int = 1, router: str = "round-robin", block: int = 16,
             prefix_cache: bool = False, disaggregate: tuple[int, int] | None = None,
             max_iterations: int = 10_000_000) -> Outcome:
    """Serve ``requests`` to completion; every figure of the outcome comes from the priced
    iterations."""
    if router not in ROUTERS:
        from experiments.serve.workload import WorkloadError

        raise WorkloadError(f"--router {router}: expected one of {', '.join(ROUTERS)}")
    env = simpy.Environment()
    scheduler = Scheduler(sched)
    roles = ["both"] * replicas if disaggregate is None else \
        ["prefill"] * disaggregate[0] + ["decode"] * disaggregate[1]
    reps = [Replica(i, BlockManager(hw.kv_blocks, block, prefix_cache), role,
                    host_blocks=hw.host_blocks) for i, role in enumerate(roles)]
    wake = [env.event() for _ in reps]
    links = [simpy.Resource(env, 1) for _ in reps]
    out = Outcome([], [], [], 0.0, len(reps), hw.chips, 0.0, [r.kv for r in reps])
    busy = [0.0] * len(reps)
    count = [0]
    rr = itertools.count()

    def mark(delta: int) -> None:
        count[0] += delta
        out.in_system.append((env.now, count[0]))

    def poke(i: int) -> None:
        if not wake[i].triggered:
            wake[i].succeed()

    def route(s: Seq, pool: list[Replica]) -> Replica:
        if router == "round-robin" or len(pool) == 1:
            return pool[next(rr) % len(pool)]
        if router == "prefix-affinity" and s.req.prefix:
            return pool[hash(s.req.prefix) % len(pool)]
        return min(pool, key=lambda r: (r.outstanding, r.index))

    entry = [r for r in reps if r.role != "decode"]
    exits = [r for r in reps if r.role == "decode"]

    def arrivals():  # noqa: ANN202
        for req in requests:
            if req.arrival > env.now:
                yield env.timeout(req.arrival - env.now)
            need = reps[0].kv.blocks_for(req.prompt + req.output)
            if hw.max_tokens and req.prompt + req.output > hw.max_tokens:
                out.rejected.append((req, f"prompt + output = {req.prompt + req.output} "
                                          f"tokens, beyond the model's {hw.max_tokens} "
                                          f"positions"))
                continue
            if need > hw.kv_blocks:
                out.rejected.append((req, f"needs {need} KV blocks of {block} tokens, a "
                                          f"replica's cache holds {hw.kv_blocks}"))
                continue
            s = Seq(req)
            out.seqs.append(s)
            mark(+1)
            r = route(s, entry)
            s.replica = r.index
            r.waiting.append(s)
            r.outstanding += req.prompt + req.output
            poke(r.index)

    def hand_off(r: Replica, s: Seq):  # noqa: ANN202
        """A prefilled sequence's KV to a decode replica."""
        dst = route(s, exits)
        s.decode_replica = dst.index
        nbytes = s.held.blocks * hw.block_bytes * hw.chips
        with links[r.index].request() as link:
            yield link
            cost = hw.transfer(r.index, dst.index, nbytes)
            yield env.timeout(cost.time_s)
        s.transfer_s += cost.time_s
        out.energy_j += cost.energy_j
        out.transfers += 1
        out.transfer_bytes += nbytes
        blocks = s.held.blocks
        r.kv.release(s.held)
        poke(r.index)
        s.held.private = blocks  # arrives with its cache: the decode replica takes blocks
        dst.swapped.append(s)
        dst.outstanding += s.req.output - s.generated
        poke(dst.index)

    def finish(r: Replica, s: Seq) -> None:
        r.running.remove(s)
        r.kv.release(s.held)
        mark(-1)

    def apply(r: Replica, step: Step) -> None:
        for s, n in step.entries:
            s.computed += n
            r.outstanding -= n if s.computed <= s.req.prompt else 0
            r.kv.publish(s.held, s.req.prefix, s.req.prefix_len, s.computed)
            if s.computed == s.known:
                s.generated += 1
                s.times.append(env.now)
                r.outstanding -= 1
                if s.done:
                    finish(r, s)
                elif r.role == "prefill":
                    r.running.remove(s)
                    env.process(hand_off(r, s))

    def replica(r: Replica):  # noqa: ANN202
        while True:
            if r.idle():
                wake[r.index] = env.event()
                yield wake[r.index]
                continue
            step = scheduler.schedule(r)
            if not step.entries:
                if not r.running and r.waiting and not step.preempted:
                    _drop_head(r, out, hw, mark)  # can never fit: a reason, not a hang
                wake[r.index] = env.event()
                yield wake[r.index] | env.timeout(0) if step.preempted else wake[r.index]
                continue
            prefill, decode = step.shapes()
            price = hw.pricer.price(prefill, decode)
            swap = (step.swap_in + step.swap_out) * hw.block_bytes / hw.host_link
            start = env.now
            if hw.stages == 1:
                yield env.timeout(price.time_s + swap)
                finish_step(r, step, start, price, swap, prefill, decode)
                continue
            # a pipeline: the batch enters the first stage, the next batch (of sequences
            # not in flight) one stage time later; its tokens come out at the last stage
            for s, _ in step.entries:
                r.busy.add(id(s))
            interval = price.time_s / hw.stages + swap
            env.process(drain(r, step, start, price, swap, prefill, decode, interval))
            yield env.timeout(interval)

    def drain(r: Replica, step: Step, start: float, price, swap: float,  # noqa: ANN001, ANN202
              prefill: list, decode: list, interval: float):
        yield env.timeout(price.time_s + swap - interval)
        for s, _ in step.entries:
            r.busy.discard(id(s))
        finish_step(r, step, start, price, swap, prefill, decode, interval)
        poke(r.index)

    def finish_step(r: Replica, step: Step, start: float, price, swap: float,  # noqa: ANN001
                    prefill: list, decode: list, interval: float | None = None) -> None:
        busy[r.index] += interval if interval is not None else price.time_s + swap
        out.energy_j += price.energy_j
        apply(r, step)
        out.iterations.append(IterationLog(
            r.index, start, price.time_s + swap, price.energy_j,
            sum(t for t, _ in prefill), len(decode), len(step.entries),
            r.kv.used() / r.kv.total, len(step.preempted),
            step.swap_in + step.swap_out))
        if len(out.iterations) >= max_iterations:
            raise RuntimeError(f"more than {max_iterations} iterations")

    env.process(arrivals())
    for r in reps:
        env.process(replica(r))
    env.run()
    out.end = env.now
    out.energy_j += sum(hw.static_w * hw.chips * max(0.0, out.end - b) for b in busy)
    return out


def _drop_head(r: Replica, out: Outcome, hw: Hardware, mark) -> None:  # noqa: ANN001
    s = r.waiting.pop(0)
    out.seqs.remove(s)
    out.rejected.append((s.req, f"its {s.known} tokens' KV does not fit the free cache of an "
                                f"idle replica ({r.kv.available()} blocks)"))
    mark(-1)
