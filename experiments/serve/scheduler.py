"""What a replica runs next: the scheduling policies of today's serving engines.

Each iteration a scheduler picks, within a token budget and a sequence limit, which
sequences advance and by how many tokens, taking KV blocks for them and preempting when
the cache runs out:

* ``vllm`` — vLLM's (v1) continuous batching with chunked prefill: running sequences in
  the order they were admitted (a decode takes 1 token, a prompt a chunk of what budget is
  left), then swapped-out ones, then waiting ones; a prompt longer than the budget is
  split over iterations.
* ``decode-first`` — Sarathi-Serve's stall-free batching: every running decode first, then
  prompt chunks to fill the budget; decodes never wait behind a prompt.
* ``prefill-first`` — prompt priority (Orca-like, vLLM v0's default): while waiting prompts
  fit, an iteration runs whole prompts only and decodes wait; otherwise it decodes.

Waiting requests are taken first-come first-served (``fcfs``) or shortest prompt first
(``spf``); preempted ones go first. When a sequence needs a block and none is free, the
latest-admitted sequence not yet in this iteration is preempted: by ``recompute`` (its
blocks are dropped, it waits again and prefills prompt + generated tokens) or by ``swap``
(its blocks go to host memory over the host link and come back when blocks free up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.serve.kvcache import BlockManager, Held
from experiments.serve.workload import Request

POLICIES = ("vllm", "decode-first", "prefill-first")
ORDERS = ("fcfs", "spf")
PREEMPTION = ("recompute", "swap")


@dataclass(eq=False)
class Seq:
    """A request as a replica runs it."""

    req: Request
    computed: int = 0  # tokens whose KV is cached (prompt + generated so far)
    generated: int = 0  # output tokens emitted
    held: Held = field(default_factory=Held)
    times: list[float] = field(default_factory=list)  # when each output token came out
    preemptions: int = 0
    swaps: int = 0
    cached: int = 0  # prompt tokens read from the prefix cache at first admission
    admitted: bool = False
    replica: int = -1
    decode_replica: int = -1
    transfer_s: float = 0.0

    @property
    def known(self) -> int:
        return self.req.prompt + self.generated

    @property
    def pending(self) -> int:
        """Tokens to process before the next output token."""
        return self.known - self.computed

    @property
    def done(self) -> bool:
        return self.generated >= self.req.output

    @property
    def decoding(self) -> bool:
        return self.pending == 1 and self.computed >= self.req.prompt


@dataclass(frozen=True)
class SchedulerConfig:
    policy: str = "vllm"
    order: str = "fcfs"
    token_budget: int = 2048  # tokens per iteration (vLLM's max_num_batched_tokens)
    max_seqs: int = 256  # sequences per iteration (max_num_seqs)
    preempt: str = "recompute"

    def check(self) -> None:
        from experiments.serve.workload import WorkloadError

        for value, known, flag in ((self.policy, POLICIES, "--scheduler"),
                                   (self.order, ORDERS, "--queue"),
                                   (self.preempt, PREEMPTION, "--preempt")):
            if value not in known:
                raise WorkloadError(f"{flag} {value}: expected one of {', '.join(known)}")
        if self.token_budget < 1 or self.max_seqs < 1:
            raise WorkloadError("--chunk and --max-seqs must be >= 1")


@dataclass
class Step:
    """One iteration's plan: (sequence, tokens) entries and blocks moved to / from host."""

    entries: list[tuple[Seq, int]] = field(default_factory=list)
    planned: set[int] = field(default_factory=set)  # id() of the sequences in entries
    swap_out: int = 0  # blocks
    swap_in: int = 0
    preempted: list[Seq] = field(default_factory=list)

    def add(self, s: Seq, n: int) -> None:
        self.entries.append((s, n))
        self.planned.add(id(s))

    def shapes(self) -> tuple[list[tuple[int, int]], list[int]]:
        """(prefill chunks as (tokens, past), decode contexts): what the pricer takes."""
        prefill, decode = [], []
        for s, n in self.entries:
            if n == 1 and s.computed >= s.req.prompt:
                decode.append(s.computed)
            else:
                prefill.append((n, s.computed))
        return prefill, decode


@dataclass
class Replica:
    """One engine instance's queues and KV cache."""

    index: int
    kv: BlockManager
    role: str = "both"  # both | prefill | decode
    waiting: list[Seq] = field(default_factory=list)
    running: list[Seq] = field(default_factory=list)
    swapped: list[Seq] = field(default_factory=list)  # swapped out, or arrived with KV
    host_blocks: int = 0  # blocks this replica may keep in host memory
    busy: set[int] = field(default_factory=set)  # id() of sequences in a pipeline's flight
    outstanding: int = 0  # tokens assigned and not yet produced (for routing)

    def idle(self) -> bool:
        return not (self.waiting or self.running or self.swapped)


class Scheduler:
    def __init__(self, cfg: SchedulerConfig) -> None:
        cfg.check()
        self.cfg = cfg

    def schedule(self, r: Replica) -> Step:
        step = Step()
        budget = self.cfg.token_budget
        if self.cfg.policy == "prefill-first" and r.role != "decode":
            self._admit(r, step, budget, whole=True)
            if step.entries:
                return step
        free = [s for s in r.running if id(s) not in r.busy] if r.busy else r.running
        if self.cfg.policy == "decode-first":
            order = [s for s in free if s.decoding] + [s for s in free if not s.decoding]
        else:
            order = list(free)
        chunked = self.cfg.policy != "prefill-first"
        for s in order:
            if s not in r.running or budget <= 0:
                continue
            n = min(s.pending, budget) if chunked else s.pending
            if not chunked and n > 1:  # prefill-first: prompts run in prompt iterations
                continue
            if self._grow(r, s, s.computed + n, step):
                step.add(s, n)
                budget -= n
        if not step.preempted:
            budget = self._resume(r, step, budget)
            if r.role != "decode" and self.cfg.policy != "prefill-first":
                self._admit(r, step, budget, whole=False)
        return step

    # -- pieces --------------------------------------------------------------------------
    def _grow(self, r: Replica, s: Seq, tokens: int, step: Step) -> bool:
        """Blocks for ``s`` to hold ``tokens``, preempting others (latest first) if needed;
        False when ``s`` itself had to go."""
        while not r.kv.grow(s.held, tokens):
            victims = [x for x in r.running if x is not s and id(x) not in step.planned
                       and id(x) not in r.busy]
            victim = victims[-1] if victims else s
            self.preempt(r, victim, step)
            if victim is s:
                return False
        return True

    def preempt(self, r: Replica, s: Seq, step: Step) -> None:
        r.running.remove(s)
        s.preemptions += 1
        step.preempted.append(s)
        blocks = s.held.blocks
        if self.cfg.preempt == "swap" and r.host_blocks >= blocks + \
                sum(x.held.blocks for x in r.swapped):
            step.swap_out += blocks
            s.swaps += 1
            r.kv.release(s.held)
            s.held.private = blocks  # now in host memory, restored by _resume
            r.swapped.append(s)
        else:
            r.kv.release(s.held)
            s.computed = 0
            r.waiting.insert(0, s)

    def _resume(self, r: Replica, step: Step, budget: int) -> int:
        """Swapped-out sequences (and, on a decode replica, arrived ones) come back in
        order while blocks, the sequence limit and the budget allow."""
        while r.swapped and budget > 0 and len(r.running) - len(r.busy) < self.cfg.max_seqs:
            s = r.swapped[0]
            host = s.held.private
            n = min(s.pending, budget)
            need = r.kv.blocks_for(s.computed + n)
            if need > r.kv.available():
                break
            r.swapped.pop(0)
            s.held.private = 0
            r.kv.grow(s.held, s.computed + n)
            if r.role != "decode" or s.swaps:
                step.swap_in += host
            r.running.append(s)
            step.add(s, n)
            budget -= n
        return budget

    def _admit(self, r: Replica, step: Step, budget: int, whole: bool) -> None:
        if self.cfg.order == "spf":
            r.waiting.sort(key=lambda s: (s.preemptions == 0, s.pending))
        while r.waiting and budget > 0 and len(r.running) - len(r.busy) < self.cfg.max_seqs:
            s = r.waiting[0]
            hit = 0
            if s.computed == 0 and s.req.prefix:
                hit = r.kv.cached_prefix(s.req.prefix, s.req.prefix_len)
                hit = min(hit, (s.known - 1) // r.kv.size)
                r.kv.take_prefix(s.held, s.req.prefix, hit)
                s.computed = hit * r.kv.size
            n = s.pending if whole else min(s.pending, budget)
            if whole and n > budget and step.entries:
                self._undo(r, s)
                break
            if not r.kv.grow(s.held, s.computed + n):
                self._undo(r, s)
                break
            r.waiting.pop(0)
            if not s.admitted:
                s.admitted, s.cached = True, s.computed
                r.kv.hit_tokens += s.computed
                r.kv.asked_tokens += s.req.prompt
            r.running.append(s)
            step.add(s, n)
            budget -= n

    @staticmethod
    def _undo(r: Replica, s: Seq) -> None:
        r.kv.release(s.held)
        s.computed = 0
