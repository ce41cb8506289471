"""A paged KV cache (vLLM's PagedAttention block manager) with prefix caching.

The cache is ``blocks`` blocks of ``block_size`` tokens. A sequence holds the blocks its
cached tokens need. With prefix caching, a full block of a shared prefix is named by its
content (prefix id, block index; a real engine hashes the tokens) and shared: a later
request whose prompt starts with it reuses it instead of computing it again. A shared block
no sequence holds stays cached until space is needed; then the least recently used goes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Held:
    """What one sequence holds: private blocks and shared prefix blocks (by name)."""

    private: int = 0
    shared: list[tuple[str, int]] = field(default_factory=list)

    @property
    def blocks(self) -> int:
        return self.private + len(self.shared)


class BlockManager:
    def __init__(self, blocks: int, block_size: int, prefix_cache: bool = False) -> None:
        if blocks < 1 or block_size < 1:
            raise ValueError("a KV cache needs at least one block of at least one token")
        self.total, self.size, self.prefix_cache = blocks, block_size, prefix_cache
        self.free = blocks
        self.refs: dict[tuple[str, int], int] = {}  # shared blocks in use -> holders
        self.idle: OrderedDict[tuple[str, int], None] = OrderedDict()  # cached, unheld, LRU
        self.hit_tokens = 0
        self.asked_tokens = 0
        self.evictions = 0

    # -- capacity ------------------------------------------------------------------------
    def available(self) -> int:
        """Blocks a sequence could take now: free ones and unheld cached ones."""
        return self.free + len(self.idle)

    def used(self) -> int:
        return self.total - self.free - len(self.idle)

    def blocks_for(self, tokens: int) -> int:
        return math.ceil(tokens / self.size)

    # -- prefix caching ------------------------------------------------------------------
    def cached_prefix(self, prefix: str, prefix_len: int) -> int:
        """Full blocks of this prefix in the cache, counted from its start."""
        if not (self.prefix_cache and prefix):
            return 0
        n = 0
        while (n + 1) * self.size <= prefix_len and \
                ((prefix, n) in self.refs or (prefix, n) in self.idle):
            n += 1
        return n

    def take_prefix(self, held: Held, prefix: str, n: int) -> None:
        """Hold the first ``n`` cached blocks of ``prefix``."""
        for i in range(n):
            self.take_prefix_one(held, (prefix, i))

    def publish(self, held: Held, prefix: str, prefix_len: int, computed: int) -> None:
        """Name the full prefix blocks a sequence has now computed, so others can share
        them (its private blocks become shared ones it holds)."""
        if not (self.prefix_cache and prefix):
            return
        full = min(prefix_len, computed) // self.size
        while len(held.shared) < full and held.private > 0:
            key = (prefix, len(held.shared))
            if key in self.refs or key in self.idle:  # computed twice: keep one copy
                self.take_prefix_one(held, key)
                held.private -= 1
                self.free += 1
            else:
                self.refs[key] = 1
                held.shared.append(key)
                held.private -= 1

    def take_prefix_one(self, held: Held, key: tuple[str, int]) -> None:
        """Hold one cached block (an unheld one leaves the eviction order)."""
        if key in self.idle:
            del self.idle[key]
            self.refs[key] = 1
        else:
            self.refs[key] += 1
        held.shared.append(key)

    # -- allocation ----------------------------------------------------------------------
    def grow(self, held: Held, tokens: int) -> bool:
        """Make ``held`` cover ``tokens`` cached tokens; False (nothing taken) if the cache
        cannot, even after evicting unheld cached blocks."""
        need = self.blocks_for(tokens) - held.blocks
        if need <= 0:
            return True
        if need > self.available():
            return False
        while self.free < need:
            self.idle.popitem(last=False)  # least recently used
            self.evictions += 1
            self.free += 1
        self.free -= need
        held.private += need
        return True

    def release(self, held: Held) -> None:
        """Give back a sequence's blocks; its shared ones stay cached until evicted."""
        self.free += held.private
        for key in held.shared:
            self.refs[key] -= 1
            if self.refs[key] == 0:
                del self.refs[key]
                self.idle[key] = None
        held.private, held.shared = 0, []
