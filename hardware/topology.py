"""Topologies: which chips (and switches) are joined by which links, and routes between them.

Nodes 0..n-1 are chips; switches, when a topology has them, are nodes n, n+1, ... Every link
is directed (a full-duplex cable is two links). Routes are dimension-order on meshes and
tori (the lower dimension first, the shorter way round a torus ring), shortest path (BFS,
lowest node first on ties) otherwise.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property

KINDS = ("ring", "mesh", "torus", "full", "switch", "fattree", "cluster")


@dataclass(frozen=True)
class Topology:
    kind: str
    dims: tuple[int, ...]  # ring/full/switch: (n,); mesh/torus: (x, y[, z]); fattree: (n, radix)
    # cluster: (nodes, chips per node, nodes per leaf switch): each node's chips share a
    # scale-up switch (NVSwitch); every chip also has a NIC to its leaf switch of the
    # scale-out fabric, and the leaves meet at one spine

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown topology '{self.kind}' (expected {', '.join(KINDS)})")
        if not self.dims or any(d < 1 for d in self.dims):
            raise ValueError(f"topology dims must be positive, got {self.dims}")
        if self.kind == "fattree" and len(self.dims) != 2:
            raise ValueError("fattree dims are (chips, radix)")
        if self.kind == "cluster" and len(self.dims) != 3:
            raise ValueError("cluster dims are (nodes, chips per node, nodes per leaf switch)")
        if self.kind == "cluster" and self.dims[2] > self.dims[0]:
            raise ValueError(f"cluster dims: {self.dims[2]} nodes per leaf switch, more than "
                             f"the {self.dims[0]} nodes")

    @property
    def chips(self) -> int:
        if self.kind in ("mesh", "torus"):
            n = 1
            for d in self.dims:
                n *= d
            return n
        if self.kind == "cluster":
            return self.dims[0] * self.dims[1]
        return self.dims[0]

    def tier(self, u: int, v: int) -> str:
        """Which kind of link (u, v) is: "scale_up" (inside a node, or any link of a
        one-tier topology), "scale_out" (a chip's NIC to its leaf switch) or "uplink" (a
        leaf switch to the spine)."""
        if self.kind != "cluster":
            return "scale_up"
        n, nodes = self.chips, self.dims[0]
        hi = max(u, v)
        if hi < n + nodes:
            return "scale_up"
        return "scale_out" if min(u, v) < n else "uplink"

    def node_of(self, chip: int) -> int:
        return chip // self.dims[1] if self.kind == "cluster" else 0

    @cached_property
    def links(self) -> tuple[tuple[int, int], ...]:
        """Directed links (u, v), each once."""
        edges: set[tuple[int, int]] = set()
        n = self.chips
        if self.kind == "ring":
            for i in range(n):
                if n > 1:
                    edges |= {(i, (i + 1) % n), ((i + 1) % n, i)}
        elif self.kind == "full":
            edges = {(i, j) for i in range(n) for j in range(n) if i != j}
        elif self.kind in ("mesh", "torus"):
            for i in range(n):
                c = self.coords(i)
                for d, size in enumerate(self.dims):
                    for step in (-1, 1):
                        x = c[d] + step
                        if self.kind == "torus":
                            x %= size
                        if 0 <= x < size and x != c[d]:
                            edges.add((i, self.index(c[:d] + (x,) + c[d + 1:])))
        elif self.kind == "switch":
            edges = {(i, n) for i in range(n)} | {(n, i) for i in range(n)}
        elif self.kind == "cluster":
            nodes, per, per_leaf = self.dims
            leaves = -(-nodes // per_leaf)
            spine = n + nodes + leaves
            for i in range(n):
                node, leaf = n + i // per, n + nodes + (i // per) // per_leaf
                edges |= {(i, node), (node, i), (i, leaf), (leaf, i)}
            if leaves > 1:
                for leaf in range(n + nodes, n + nodes + leaves):
                    edges |= {(leaf, spine), (spine, leaf)}
        else:  # fattree: leaf switches of `radix` chips under one spine
            radix = self.dims[1]
            leaves = -(-n // radix)
            spine = n + leaves
            for i in range(n):
                leaf = n + i // radix
                edges |= {(i, leaf), (leaf, i)}
            for leaf in range(n, n + leaves):
                edges |= {(leaf, spine), (spine, leaf)}
        return tuple(sorted(edges))

    def coords(self, i: int) -> tuple[int, ...]:
        out = []
        for d in self.dims:
            out.append(i % d)
            i //= d
        return tuple(out)

    def index(self, c: tuple[int, ...]) -> int:
        i, scale = 0, 1
        for x, d in zip(c, self.dims):
            i += x * scale
            scale *= d
        return i

    def route(self, src: int, dst: int) -> tuple[tuple[int, int], ...]:
        """The directed links a transfer from chip ``src`` to chip ``dst`` crosses."""
        if src == dst:
            return ()
        if self.kind in ("mesh", "torus"):
            return self._dimension_order(src, dst)
        if self.kind == "cluster":
            return self._cluster_route(src, dst)
        return self._shortest(src, dst)

    def _cluster_route(self, src: int, dst: int) -> tuple[tuple[int, int], ...]:
        """Inside a node through its switch; else NIC, leaf (, spine, leaf), NIC."""
        nodes, per, per_leaf = self.dims
        n = self.chips
        a, b = src // per, dst // per
        if a == b:
            return ((src, n + a), (n + a, dst))
        la, lb = n + nodes + a // per_leaf, n + nodes + b // per_leaf
        if la == lb:
            return ((src, la), (la, dst))
        spine = n + nodes + -(-nodes // per_leaf)
        return ((src, la), (la, spine), (spine, lb), (lb, dst))

    def _dimension_order(self, src: int, dst: int) -> tuple[tuple[int, int], ...]:
        path, cur = [], list(self.coords(src))
        goal = self.coords(dst)
        for d, size in enumerate(self.dims):
            while cur[d] != goal[d]:
                fwd = (goal[d] - cur[d]) % size
                if self.kind == "torus":
                    step = 1 if fwd <= size - fwd else -1
                else:
                    step = 1 if goal[d] > cur[d] else -1
                nxt = cur[:]
                nxt[d] = (cur[d] + step) % size
                path.append((self.index(tuple(cur)), self.index(tuple(nxt))))
                cur = nxt
        return tuple(path)

    @cached_property
    def _adjacent(self) -> dict[int, list[int]]:
        adj: dict[int, list[int]] = {}
        for u, v in self.links:
            adj.setdefault(u, []).append(v)
        return {u: sorted(vs) for u, vs in adj.items()}

    def _shortest(self, src: int, dst: int) -> tuple[tuple[int, int], ...]:
        prev = {src: src}
        queue = deque([src])
        while queue:
            u = queue.popleft()
            if u == dst:
                break
            for v in self._adjacent.get(u, ()):
                if v not in prev:
                    prev[v] = u
                    queue.append(v)
        if dst not in prev:
            raise ValueError(f"no route from chip {src} to chip {dst}")
        path, v = [], dst
        while v != src:
            path.append((prev[v], v))
            v = prev[v]
        return tuple(reversed(path))

    def hops(self, src: int, dst: int) -> int:
        return len(self.route(src, dst))
