"""Experiments on top of the mapper and simulator: the ``tessera`` CLI, runs, sweeps,
reports, studies and validation against measured GPUs.

The public Python API is ``experiments.api`` (docs/api.md); the CLI is a thin layer over it.
"""

__all__ = ["api"]
