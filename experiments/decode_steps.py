"""Every decode step of a generation, each exact, from one mapped step and the kernels that
change with the context.

Step ``c`` of a generation runs the same kernels as step ``c0`` except where the context
length enters: attention over ``c`` cached tokens, the rotary positions. Kernels end in a
chip-wide (or group-wide) sync, so a step's layer is the sum of its kernels; a kernel
whose node is the same (op, attributes, shapes and types of what it touches: ``iteration
._identity``) at both contexts costs the same. So each step after the first builds its
layer graph (no lowering), finds the nodes that differ from the first step's, lowers and
simulates only those alone (on every chip of a system, with its group's barrier), and adds
the first step's other kernels. ``tests/experiments/test_decode_steps.py`` compares each
step with mapping and simulating it whole.

Used when every step is asked for (``--decode-samples 0``, the default); runs this does not
cover (pipeline stages, micro-batches, expert parallelism, mixed precision, functional
mode) map every step whole.
"""

from __future__ import annotations

import time
from dataclasses import replace

from mapper.layers import Phase, build_layers
from mapper.lower import lower
from mapper.ops import VIEWS
from mapper.passes import apply_passes
from mapper.pipeline import MapOptions
from simulator.result import SimResult, sequence


def supported(model, opts: MapOptions, par) -> bool:  # noqa: ANN001
    """Whether the steps of this run can be derived (else each is mapped whole)."""
    mixed = bool(opts.quant) and opts.quant_layers is not None and \
        0 < len({i for i in opts.quant_layers if 0 <= i < model.layers}) < model.layers
    if opts.functional or mixed:
        return False
    return par is None or (par.pp == 1 and par.micro == 1 and par.ep == 1)


def steps(model, base, contexts: list[int], opts: MapOptions, chip, system=None,  # noqa: ANN001
          par=None, limits=None, kernels: list[SimResult] | None = None,  # noqa: ANN001
          bar=None) -> list:  # noqa: ANN001
    """PhaseRuns for ``contexts`` from ``base`` (the first step, mapped and simulated whole,
    with its per-kernel results ``kernels``). None for a step this cannot derive."""
    from experiments.iteration import _alone, _identity
    from experiments.pieces import each
    from experiments.run import PhaseRun, confirmer
    from simulator.run import simulate, simulate_system

    mapped = base.mapped
    if system is None:
        names = [n for n, _ in mapped.lowered.kernels]
        base_graph = mapped.graph
    else:
        names, base_graph = mapped.kernel_nodes, mapped.graphs[0]
    if kernels is None or len(names) != len(kernels) or len(set(names)) != len(names):
        return [None] * len(contexts)
    index = {n: i for i, n in enumerate(names)}
    base_nodes = {n.name: n for n in base_graph.nodes}
    confirm = confirmer(chip) if opts.confirm_top > 1 else None

    def changed(ctx: int) -> tuple[dict[int, SimResult] | None, float]:
        """The kernels whose cost moves at context ``ctx``, each simulated alone (None: a
        node this cannot derive), and the seconds it took."""
        t0 = time.perf_counter()
        graph = layer_graph(model, replace(base.phase, ctx=ctx), opts, par)
        parts: dict[int, SimResult] = {}
        for node in graph.nodes:
            old = base_nodes.get(node.name)
            if old is not None and _identity(graph, node, chip, True) == \
                    _identity(base_graph, old, chip, True):
                continue
            if node.op in VIEWS:
                continue  # a view: no kernel of its own
            if node.name not in index:
                return None, time.perf_counter() - t0
            alone = _alone(graph, node)
            if system is None:
                low = lower(alone, chip, confirm=confirm, top=opts.confirm_top,
                            layout=opts.layout)
                parts[index[node.name]] = sequence([simulate(k, chip, limits=limits)
                                                    for k in low.kernel_programs])
            else:
                parts[index[node.name]] = _on_system(alone, system, mapped, par, opts,
                                                     confirm, limits, simulate_system)
        return parts, time.perf_counter() - t0

    # the steps are independent: side by side on the machine's cores
    done = each(changed, contexts, None if bar is None else
                lambda it, n: bar(it, True, "decode steps", n))
    out = []
    for ctx, (found, seconds) in zip(contexts, done):
        if found is None:
            out.append(None)
            continue
        parts = list(kernels)
        for i, r in found.items():
            parts[i] = r
        out.append(PhaseRun(replace(base.phase, ctx=ctx), sequence(parts), base.head,
                            base.repeat, seconds, 0.0, mapped=mapped))
    return out


def layer_graph(model, phase: Phase, opts: MapOptions, par):  # noqa: ANN001, ANN202
    """The layer graph one chip (rank 0 of replica 0) maps for ``phase``: as ``map_model``
    and ``map_system`` build it (performance mode)."""
    n = model.layers if opts.layers_mapped is None else min(opts.layers_mapped, model.layers)
    if par is None:
        return apply_passes(build_layers(model, phase, n), None, opts)[0]
    from mapper.parallel import shard_of, stage_layers

    layers = stage_layers(model, par, 0, opts.layers_mapped)
    replica = replace(phase, batch=phase.batch // par.dp)
    g = build_layers(model, replica, len(layers), shard=shard_of(par, 0, 0, 0),
                     first=layers[0])
    return apply_passes(g, None, opts)[0]


def _on_system(alone, system, mapped, par, opts: MapOptions, confirm, limits,  # noqa: ANN001
               simulate_system) -> SimResult:  # noqa: ANN001
    """The node's kernel on every chip, each ending at its tensor-parallel group's barrier,
    simulated on the system. The ranks of a group run the node alike (it changed with the
    context only; ranks differ only in a row-parallel bias)."""
    from mapper.parallel import chip_of, shard_of

    programs = {}
    for d in range(par.dp):
        group = shard_of(par, d, 0, 0).group
        kernel = None
        for r in range(par.tp):
            c = chip_of(par, d, 0, r)
            if kernel is None:
                low = lower(alone, system.chips[c], confirm=confirm, top=opts.confirm_top,
                            layout=opts.layout, barrier_group=group)
                if len(low.kernel_programs) != 1:
                    raise ValueError("a node of more than one kernel")
                kernel = low.kernel_programs[0]
            programs.update({(c, core): p for core, p in kernel.items()})
    return simulate_system(system, programs, groups=mapped.groups, limits=limits)
