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


def silu_grad(x: np.ndarray) -> np.ndarray:
    """d silu(x) / dx = s (1 + x (1 - s)), s = sigmoid(x)."""
    x = _f(x)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-x))
    return s * (1 + x * (1 - s))


def rmsnorm_grad(x: np.ndarray, dy: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    """dL/dx of y = x r gamma, r = 1/sqrt(mean(x^2) + eps): r (g - x r^2 mean(x g)),
    g = dy gamma."""
    x, g = _f(x), _f(dy) * _f(gamma)
    r = 1 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps))
    return r * (g - x * r * r * (x * g).mean(axis=-1, keepdims=True))


def layernorm_grad(x: np.ndarray, dy: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    """dL/dx of y = xhat gamma + beta: r (g - mean(g) - xhat mean(g xhat)), g = dy gamma."""
    x, g = _f(x), _f(dy) * _f(gamma)
    mu = x.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + np.float32(eps))
    xh = (x - mu) * r
    return r * (g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).mean(axis=-1, keepdims=True))


def gelu_grad(x: np.ndarray) -> np.ndarray:
    """d gelu(x) / dx of the tanh approximation."""
    x = _f(x)
    c = np.float32(0.7978845608028654)
    t = np.tanh(c * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
