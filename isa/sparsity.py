"""2:4 structured sparsity along K: keep 2 of every 4 weights, with 2-bit position metadata.

Compressed layout of W[K, N]: values [K/2, N] (the kept weights of each group of 4 rows, in
order) and meta [K/8, N] bytes: each group's two indices (0..3) in a nibble, first index in
the low 2 bits; groups 2j and 2j+1 share byte j, group 2j in the low nibble.
"""

from __future__ import annotations

import numpy as np


def _check(k: int) -> None:
    if k % 8:
        raise ValueError(f"2:4 sparsity needs K divisible by 8, got {k}")


def prune24_by_magnitude(w: np.ndarray) -> np.ndarray:
    """Zero the two smallest |w| of each group of 4 along K (ties: the lower index is kept)."""
    w = np.asarray(w, dtype=np.float64)
    k, n = w.shape
    if k % 4:
        raise ValueError(f"2:4 sparsity needs K divisible by 4, got {k}")
    g = w.reshape(k // 4, 4, n)
    order = np.argsort(-np.abs(g), axis=1, kind="stable")
    keep = np.zeros_like(g, dtype=bool)
    np.put_along_axis(keep, order[:, :2, :], True, axis=1)
    return np.where(keep, g, 0.0).reshape(k, n)


def sparse24_compress(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(w, dtype=np.float64)
    k, n = w.shape
    _check(k)
    g = w.reshape(k // 4, 4, n)
    order = np.argsort(-np.abs(g), axis=1, kind="stable")[:, :2, :]
    idx = np.sort(order, axis=1)  # the two kept positions, ascending
    vals = np.take_along_axis(g, idx, axis=1).reshape(k // 2, n)
    nib = (idx[:, 0, :] | (idx[:, 1, :] << 2)).astype(np.uint8)  # [K/4, N]
    meta = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)  # [K/8, N]
    return vals, meta


def sparse24_expand(values: np.ndarray, meta: np.ndarray) -> np.ndarray:
    v = np.asarray(values)
    k2, n = v.shape
    k = 2 * k2
    _check(k)
    m = np.asarray(meta, np.uint8).reshape(k // 8, n)
    nib = np.empty((k // 4, n), np.uint8)
    nib[0::2], nib[1::2] = m & 0x0F, m >> 4
    idx = np.stack([nib & 3, (nib >> 2) & 3], axis=1).astype(np.int64)  # [K/4, 2, N]
    out = np.zeros((k // 4, 4, n), dtype=np.float64)
    np.put_along_axis(out, idx, v.reshape(k // 4, 2, n).astype(np.float64), axis=1)
    return out.reshape(k, n)
