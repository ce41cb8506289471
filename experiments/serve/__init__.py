"""Serving: request traffic on replicas of a described chip, each iteration of a continuous
batch priced from simulated kernels (``experiments.serve.cost``)."""
