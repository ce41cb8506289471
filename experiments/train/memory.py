"""Memory per chip of a training step, by part, from the model, the split and the graph.

* Model states per parameter (bytes): weights, gradients, optimizer (master weights and the
  two Adam moments), by the precision recipe; ZeRO stage z divides optimizer states (z >= 1),
  gradients (z >= 2) and weights (z >= 3) over the data-parallel ranks. Offloading the
  optimizer moves its states (and the master weights) to host memory.
* Activations: the tensors the training graph's backward nodes read from its forward
  (counted on the graph, per micro-batch and layer), times the micro-batches in flight on
  the stage (the pipeline schedule's most), or, with full recomputation, each layer's input
  plus one layer's activations while it is recomputed.
* The head: logits and their gradient over the vocabulary (fp32 copies with an fp32 loss),
  on the last stage only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapper.graph import Graph, Kind

GB = 1e9


@dataclass(frozen=True)
class Recipe:
    """Bytes per parameter of each model state, and what autocast keeps."""

    name: str
    weights: int
    grads: int
    optimizer: int  # master weights (if separate) + Adam m and v
    weight_copy: int = 0  # bf16 copies of fp32 weights cached by autocast during a step


RECIPES = {
    # Megatron-LM's mixed precision: bf16 weights, fp32 main gradients, fp32 master weights
    # and Adam moments in the (distributed) optimizer: 2 + 4 + 12 bytes per parameter
    "megatron": Recipe("megatron", 2, 4, 12),
    # plain PyTorch with autocast: fp32 parameters and gradients, Adam's two fp32 moments,
    # and the bf16 copies of the weights autocast caches for the forward and backward
    "pytorch": Recipe("pytorch", 4, 4, 8, weight_copy=2),
}


@dataclass(frozen=True)
class Memory:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    head: float
    workspace: float
    offloaded: float = 0.0  # host memory

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.activations + self.head
                + self.workspace)

    def breakdown(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients),
                 ("optimizer", self.optimizer), ("activations", self.activations),
                 ("logits", self.head), ("workspace", self.workspace)]
        text = ", ".join(f"{name} {size(v)}" for name, v in parts if v)
        if self.offloaded:
            text += f" (+ {size(self.offloaded)} on the host)"
        return text

    def as_dict(self) -> dict[str, float]:
        return {"memory_weights_bytes": self.weights, "memory_gradients_bytes": self.gradients,
                "memory_optimizer_bytes": self.optimizer,
                "memory_activations_bytes": self.activations, "memory_logits_bytes": self.head,
                "memory_workspace_bytes": self.workspace, "peak_memory_bytes": self.total,
                "host_memory_bytes": self.offloaded}


def size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes:.0f} B"


def saved_bytes(g: Graph) -> int:
    """Bytes of the forward tensors a training graph's backward reads (its saved
    activations): neither weights nor gradient buffers, nor the backward's own tensors."""
    made_by_fwd: set[str] = set()
    for n in g.nodes:
        if n.name.startswith("bwd."):
            break
        made_by_fwd.update(n.outputs)
    read = {i for n in g.nodes if n.name.startswith("bwd.") for i in n.inputs}
    read |= {n.inputs[0] for n in g.nodes if n.name.startswith("bwd.")}
    inputs = {t for t, ten in g.tensors.items() if ten.kind is Kind.INPUT
              and not t.startswith("d:") and not t.endswith(".grad")}
    return sum(g.tensors[t].nbytes for t in (made_by_fwd | inputs) & read)


def autograd_extra_bytes(model, tokens: int, tp: int = 1) -> int:  # noqa: ANN001
    """What PyTorch's autograd keeps beyond Tessera's own training graph, per layer, for the
    measured model (its README): each RMSNorm computes in fp32 (``x.float()``, kept for
    the backward of ``pow`` and of the scaling: 4 bytes per element of its input, two norms a
    layer), and SwiGLU's ``silu(gate)`` is a tensor of its own kept by the product (2 bytes
    per element of the gate). Tessera's kernels recompute both from tensors already kept."""
    swiglu = getattr(model.mlp, "value", model.mlp) == "swiglu"
    norms = 2 * 4 * tokens * model.hidden
    return norms + (2 * tokens * model.ffn // tp if swiglu else 0)


def layer_input_bytes(g: Graph) -> int:
    return g.tensors["x0"].nbytes if "x0" in g.tensors else 0


def model_states(params: float, recipe: Recipe, zero: int, dp: int, offload: bool
                 ) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer, host) bytes per chip for ``params`` on the chip."""
    w = params * (recipe.weights + recipe.weight_copy) / (dp if zero >= 3 else 1)
    g = params * recipe.grads / (dp if zero >= 2 else 1)
    o = params * recipe.optimizer / (dp if zero >= 1 else 1)
    if offload:
        return w, g, 0.0, o
    return w, g, o, 0.0


__all__ = ["RECIPES", "Memory", "Recipe", "autograd_extra_bytes", "layer_input_bytes",
           "model_states", "saved_bytes", "size"]
