"""Functional mode: real bytes in HBM, SRAM and accumulators, computed in each data type."""
