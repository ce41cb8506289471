"""Which experts a MoE layer's tokens visit: expected loads under a skewed router.

A router does not spread tokens evenly: a few experts are popular, and on an
expert-parallel system the chip holding them decides the layer's time (its experts' GEMMs
and the all-to-all it receives). Tessera prices the expected loads, not a random draw, so a
run is deterministic:

* popularity: expert ``e`` (in the model's order) gets weight ``1 / (e + 1) ** skew`` (a
  Zipf law; ``skew = 0`` is uniform), or the measured fractions ``expert_load`` of a model
  description;
* loads: ``tokens x k`` slots shared in proportion, whole slots by largest remainder, so
  they sum exactly to ``tokens x k``; an expert never takes more than one slot per token;
* capacity: with ``capacity_factor`` c > 0 an expert keeps at most
  ``ceil(c x tokens x k / experts)`` slots (GShard / Switch); the rest are dropped — those
  token copies skip the expert and contribute nothing;
* placement: experts are dealt to the ``ep`` chips in contiguous blocks, as even as they
  divide (256 experts on 72 chips: 40 chips hold 4, 32 hold 3), so popular experts share
  the first chip — the busiest chip is the one simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Routing:
    """The loads of one MoE layer over an expert-parallel group."""

    loads: tuple[int, ...]  # slots each expert processes, after the capacity cut
    dropped: int  # token copies the capacity cut dropped
    capacity: int  # slots an expert may keep (0: no cap)
    per_chip: tuple[int, ...]  # experts held by each chip of the group

    def chip_experts(self, chip: int) -> range:
        first = sum(self.per_chip[:chip])
        return range(first, first + self.per_chip[chip])

    def chip_slots(self, chip: int) -> int:
        return sum(self.loads[e] for e in self.chip_experts(chip))

    @property
    def busiest(self) -> int:
        """The chip receiving the most slots (the lowest index of a tie)."""
        slots = [self.chip_slots(c) for c in range(len(self.per_chip))]
        return slots.index(max(slots))

    @property
    def imbalance(self) -> float:
        """Busiest expert's slots over the mean (1 = balanced)."""
        mean = sum(self.loads) / len(self.loads)
        return max(self.loads) / mean if mean else 1.0


def popularity(experts: int, skew: float = 0.0, measured: tuple[float, ...] = ()
               ) -> list[float]:
    """Each expert's share of the slots (sums to 1)."""
    if measured:
        if len(measured) != experts:
            raise ValueError(f"expert_load: {len(measured)} fractions for {experts} experts")
        if any(x < 0 for x in measured) or sum(measured) <= 0:
            raise ValueError("expert_load: fractions must be >= 0 and not all 0")
        total = sum(measured)
        return [x / total for x in measured]
    if skew < 0:
        raise ValueError(f"expert skew must be >= 0, got {skew}")
    w = [1.0 / (e + 1) ** skew for e in range(experts)]
    total = sum(w)
    return [x / total for x in w]


def expert_loads(tokens: int, k: int, shares: list[float]) -> list[int]:
    """``tokens x k`` whole slots in proportion to ``shares`` (largest remainder), each at
    most ``tokens`` (a token visits an expert once); the excess of a full expert goes to
    the next by share."""
    slots = tokens * k
    exact = [slots * s for s in shares]
    loads = [min(tokens, math.floor(x)) for x in exact]
    left = slots - sum(loads)
    order = sorted(range(len(shares)), key=lambda e: (-(exact[e] - math.floor(exact[e])), e))
    while left > 0:
        moved = False
        for e in order:
            if left and loads[e] < tokens:
                loads[e] += 1
                left -= 1
                moved = True
        if not moved:
            break
    return loads


def route(tokens: int, k: int, experts: int, ep: int = 1, skew: float = 0.0,
          measured: tuple[float, ...] = (), capacity_factor: float = 0.0) -> Routing:
    """Expected loads of ``tokens`` tokens per chip on an ``ep``-chip group (``tokens x
    ep`` in all), their capacity cut and the experts each chip holds."""
    if experts <= 0 or k <= 0 or k > experts:
        raise ValueError(f"routing needs 0 < k <= experts, got k {k}, experts {experts}")
    if ep < 1 or ep > experts:
        raise ValueError(f"expert parallel degree {ep} must be 1..{experts} (experts)")
    total = tokens * ep
    loads = expert_loads(total, k, popularity(experts, skew, measured))
    capacity = 0
    dropped = 0
    if capacity_factor > 0:
        capacity = max(1, math.ceil(capacity_factor * total * k / experts))
        dropped = sum(max(0, x - capacity) for x in loads)
        loads = [min(x, capacity) for x in loads]
    base, extra = divmod(experts, ep)
    per_chip = tuple(base + (1 if c < extra else 0) for c in range(ep))
    return Routing(tuple(loads), dropped, capacity, per_chip)


__all__ = ["Routing", "expert_loads", "popularity", "route"]
