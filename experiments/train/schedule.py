"""Pipeline schedules simulated: each stage runs its forward and backward passes of the
micro-batches in the schedule's order, each waiting for the activation (or gradient) from
its neighbour stage plus the point-to-point transfer. The bubble is what comes out, not a
formula: for uniform stages and free transfers it equals (p - 1)(F + B) for GPipe and 1F1B
and (p - 1)(F + B) / v for interleaved 1F1B with v virtual stages (tested).

Orders (per device ``s`` of ``p``, ``m`` micro-batches, ``v`` chunks per device):

* ``gpipe``: every forward, then every backward;
* ``1f1b``: ``p - s - 1`` warm-up forwards, then one forward and one backward in turn, then
  the remaining backwards (PipeDream-Flush, Megatron's default);
* ``interleaved``: Megatron's interleaved 1F1B: forwards of micro-batch groups of ``p``
  through chunk 0, 1, ..., ``v - 1``; ``2 (p - s - 1) + (v - 1) p`` warm-up forwards.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("gpipe", "1f1b", "interleaved")


@dataclass(frozen=True)
class Op:
    kind: str  # "F" or "B"
    chunk: int  # virtual stage on this device (0 .. v-1)
    mb: int


@dataclass(frozen=True)
class Timeline:
    """Per device, (op, start, end) in seconds; ``step_s`` the last end."""

    ops: tuple[tuple[tuple[Op, float, float], ...], ...]
    step_s: float
    busy_s: tuple[float, ...]

    @property
    def bubble_s(self) -> float:
        """Idle time of the busiest device over the step."""
        return self.step_s - max(self.busy_s)


def order(schedule: str, p: int, m: int, v: int, s: int) -> list[Op]:
    if schedule == "gpipe":
        return [Op("F", 0, i) for i in range(m)] + [Op("B", 0, i) for i in range(m)]
    if schedule == "1f1b":
        warm = min(p - s - 1, m)
        out = [Op("F", 0, i) for i in range(warm)]
        f, b = warm, 0
        while b < m:
            if f < m:
                out.append(Op("F", 0, f))
                f += 1
            out.append(Op("B", 0, b))
            b += 1
        return out
    if schedule == "interleaved":
        return _interleaved(p, m, v, s)
    raise ValueError(f"unknown schedule '{schedule}' (one of {', '.join(SCHEDULES)})")


def _interleaved(p: int, m: int, v: int, s: int) -> list[Op]:
    if m % p:
        raise ValueError(f"interleaved 1F1B needs the micro-batches ({m}) to be a multiple of "
                         f"the pipeline stages ({p})")
    total = m * v

    def fwd(k: int) -> Op:
        return Op("F", (k // p) % v, (k // (p * v)) * p + k % p)

    def bwd(k: int) -> Op:
        return Op("B", v - 1 - (k // p) % v, (k // (p * v)) * p + k % p)

    warm = min((p - s - 1) * 2 + (v - 1) * p, total)
    out = [fwd(k) for k in range(warm)]
    f, b = warm, 0
    while b < total:
        if f < total:
            out.append(fwd(f))
            f += 1
        out.append(bwd(b))
        b += 1
    return out


def simulate_pipeline(schedule: str, p: int, m: int, fwd: list[float], bwd: list[float],
                      p2p_s: float = 0.0, v: int = 1) -> Timeline:
    """Run the schedule. ``fwd[k]`` / ``bwd[k]``: one micro-batch through virtual stage
    ``k`` (``k = chunk * p + device``: chunk c of device s holds stage c p + s), ``p2p_s``
    the activation (and gradient) transfer between consecutive stages."""
    v = v if schedule == "interleaved" else 1
    stages = p * v
    if len(fwd) != stages or len(bwd) != stages:
        raise ValueError(f"{stages} stage times expected, got {len(fwd)} and {len(bwd)}")
    orders = [order(schedule, p, m, v, s) for s in range(p)]
    done: dict[tuple[str, int, int], float] = {}
    pos = [0] * p
    free = [0.0] * p
    timeline: list[list[tuple[Op, float, float]]] = [[] for _ in range(p)]
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for s in range(p):
            while pos[s] < len(orders[s]):
                op = orders[s][pos[s]]
                k = op.chunk * p + s
                ready = _ready(op, k, stages, done, p2p_s)
                if ready is None:
                    break
                start = max(ready, free[s])
                end = start + (fwd[k] if op.kind == "F" else bwd[k])
                done[(op.kind, k, op.mb)] = end
                timeline[s].append((op, start, end))
                free[s] = end
                pos[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError(f"pipeline schedule {schedule} deadlocks (p={p}, m={m}, v={v})")
    busy = tuple(sum(e - b for _, b, e in ops) for ops in timeline)
    return Timeline(tuple(tuple(t) for t in timeline), max(free), busy)


def _ready(op: Op, k: int, stages: int, done: dict, p2p: float) -> float | None:
    """When ``op`` on stage ``k`` may start, or None while its input is not computed."""
    if op.kind == "F":
        if k == 0:
            return 0.0
        t = done.get(("F", k - 1, op.mb))
        return None if t is None else t + p2p
    own = done.get(("F", k, op.mb))
    if own is None:
        return None
    if k == stages - 1:
        return own
    t = done.get(("B", k + 1, op.mb))
    return None if t is None else max(own, t + p2p)


__all__ = ["SCHEDULES", "Timeline", "order", "simulate_pipeline"]
