"""Data layout in HBM: weights stored blocked by the GEMM's (TK, TN) tiles.

Each weight tile a core loads is then one contiguous run, so the DMA never pays for short
bursts; ``row_major`` (one run per tile row) is what the layout pass is compared against.
"""

from __future__ import annotations

import numpy as np

from isa.dtypes import DType
from mapper.kernels.gemm import Gemm, Tiling, ceil_div, weight_block_offsets


def block_weights(w: np.ndarray, g: Gemm, t: Tiling, gscales: np.ndarray | None = None
                  ) -> bytes:
    """Bytes of W[K, N] in the blocked layout ``gemm_programs`` reads: dense, 2:4, or codes
    followed by the block's group scale row (``gscales`` [K / tk, N], fp32)."""
    from isa import numerics as nx
    from isa import sparsity as sx

    if g.w_layout in ("row", "col"):  # as stored: W [K, N], or W [N, K] read transposed
        return nx.to_bytes(w, g.wdt).tobytes()
    offs = weight_block_offsets(g, t)
    total = max(offs.values()) + _block_size(g, t, *max(offs, key=offs.get)) if offs else 0
    out = bytearray(total)
    for (kb, nb), off in offs.items():
        blk = w[kb * t.tk:(kb + 1) * t.tk, nb * t.tn:(nb + 1) * t.tn]
        if g.sparse:
            vals, meta = sx.sparse24_compress(blk)
            raw = nx.to_bytes(vals, g.wdt).tobytes() + np.ascontiguousarray(
                meta, dtype=np.uint8).tobytes()
        else:
            raw = nx.to_bytes(blk, g.wdt).tobytes()
            if g.decode == "group":
                row = gscales[kb, nb * t.tn:(nb + 1) * t.tn]  # type: ignore[index]
                raw += nx.to_bytes(row, DType.FP32).tobytes()
        out[off:off + len(raw)] = raw
    return bytes(out)


def _block_size(g: Gemm, t: Tiling, kb: int, nb: int) -> int:
    from mapper.kernels.gemm import weight_block_bytes

    tk = min(t.tk, g.k - kb * t.tk)
    tn = min(t.tn, g.n - nb * t.tn)
    return weight_block_bytes(g, tk, tn)


def blocked_size(g: Gemm, t: Tiling) -> int:
    if g.w_layout in ("row", "col"):
        return g.wdt.nbytes(g.k * g.n)
    offs = weight_block_offsets(g, t)
    kb, nb = ceil_div(g.k, t.tk) - 1, ceil_div(g.n, t.tn) - 1
    return offs[(kb, nb)] + _block_size(g, t, kb, nb)


def charged_tile_bytes(g: Gemm, t: Tiling, layout: str, burst: int) -> int:
    """HBM bytes the DMA is charged for one full weight tile in ``layout``: a blocked tile is
    one run; a row-major tile is tk runs of tn elements, each rounded up to whole bursts."""
    if layout == "row":
        return t.tk * -(-g.wdt.nbytes(t.tn) // burst) * burst
    from mapper.kernels.gemm import weight_block_bytes

    return -(-weight_block_bytes(g, t.tk, t.tn) // burst) * burst


def choose_layout(g: Gemm, t: Tiling, burst: int, option: str = "auto") -> str:
    """The weight layout: as asked, or (auto) the one charged fewer bytes (blocked on a tie;
    sparse and decoded weights need blocks)."""
    if g.sparse or g.decode or option == "blocked":
        return "blocked"
    if option == "row":
        return "row"
    row, blocked = (charged_tile_bytes(g, t, x, burst) for x in ("row", "blocked"))
    return "row" if row < blocked else "blocked"


__all__ = ["DType", "block_weights", "blocked_size", "choose_layout"]
