"""The math of the vector engine's ops, in fp32 (the caller rounds to the output type)."""

from __future__ import annotations

import numpy as np


def _f(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def exp(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.exp(_f(x))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (PyTorch ``approximate="tanh"``, GPT-2's ``gelu_new``)."""
    x = _f(x)
    return 0.5 * x * (1 + np.tanh(np.float32(0.7978845608028654) * (x + 0.044715 * x ** 3)))


def silu(x: np.ndarray) -> np.ndarray:
    x = _f(x)
    with np.errstate(over="ignore"):
        return x / (1 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(_f(x), 0)


def rsqrt(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 / np.sqrt(_f(x))


def reciprocal(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1 / _f(x)


def row_sum(x: np.ndarray) -> np.ndarray:
    return _f(x).sum(axis=-1, dtype=np.float32)


def row_max(x: np.ndarray) -> np.ndarray:
    return _f(x).max(axis=-1)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row softmax, stabilised by subtracting the row maximum."""
    e = np.exp(_f(x) - row_max(x)[..., None])
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    x = _f(x)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * _f(gamma) + _f(beta)


def rmsnorm(x: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    x = _f(x)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps)) * _f(gamma)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotary embedding, rotate-half convention (LLaMA / HF): x*cos + rotate_half(x)*sin,
    with cos/sin of the full head width (each half repeated)."""
    x = _f(x)
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * _f(cos) + rot * _f(sin)
