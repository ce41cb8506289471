"""Design-space sweeps: a spec, the points it names, their evaluation, and the runners."""
