"""Memories shared by the cores: bandwidth sharing, the L2 reuse model, static bounds."""
