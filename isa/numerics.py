"""Element types in functional mode: real values <-> packed bytes, rounded and saturated.

Floats round to nearest even and saturate to the type's largest finite value (accelerators
saturate rather than overflow to inf; NaN stays NaN). Integers round half to even and
saturate. int4 and fp4 (e2m1) pack two per byte, element 0 in the low nibble. The bit-exact
casts come
from ``ml_dtypes`` (the JAX project's numpy types); the clipping before them is ours.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from isa.dtypes import DType

_NP = {
    DType.BF16: ml_dtypes.bfloat16, DType.FP16: np.float16, DType.FP32: np.float32,
    DType.FP8E4M3: ml_dtypes.float8_e4m3fn, DType.FP8E5M2: ml_dtypes.float8_e5m2,
    DType.INT8: np.int8, DType.INT32: np.int32, DType.FP4E2M1: ml_dtypes.float4_e2m1fn,
}
_INT_RANGE = {DType.INT4: (-8, 7), DType.INT8: (-128, 127), DType.INT32: (-(2 ** 31), 2 ** 31 - 1)}


def max_finite(dtype: DType) -> float:
    if dtype in _INT_RANGE:
        return float(_INT_RANGE[dtype][1])
    return float(ml_dtypes.finfo(_NP[dtype]).max)


def round_to(values: np.ndarray, dtype: DType) -> np.ndarray:
    """The values ``dtype`` can hold nearest to ``values`` (as float64 / int64)."""
    x = np.asarray(values)
    if dtype in _INT_RANGE:
        lo, hi = _INT_RANGE[dtype]
        xf = np.nan_to_num(x.astype(np.float64), nan=0.0)
        return np.clip(np.rint(xf), lo, hi).astype(np.int64)
    if dtype == DType.FP32:
        top = max_finite(dtype)
        return np.clip(x.astype(np.float64), -top, top).astype(np.float32).astype(np.float64)
    top = max_finite(dtype)
    xf = np.clip(x.astype(np.float32), -top, top)
    return xf.astype(_NP[dtype]).astype(np.float64)


def to_bytes(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Packed little-endian bytes of ``values`` in ``dtype`` (C order)."""
    x = np.asarray(values).reshape(-1)
    if dtype == DType.INT4:
        q = round_to(x, dtype).astype(np.int8) & 0x0F
        if len(q) % 2:
            q = np.concatenate([q, np.zeros(1, np.int8)])
        return (q[0::2] | (q[1::2] << 4)).astype(np.uint8)
    if dtype == DType.FP4E2M1:
        top = max_finite(dtype)
        q = np.clip(x.astype(np.float32), -top, top).astype(_NP[dtype]).view(np.uint8) & 0x0F
        if len(q) % 2:
            q = np.concatenate([q, np.zeros(1, np.uint8)])
        return (q[0::2] | (q[1::2] << 4)).astype(np.uint8)
    if dtype in _INT_RANGE:
        q = round_to(x, dtype).astype(_NP[dtype])
    elif dtype == DType.FP32:
        top = max_finite(dtype)
        q = np.clip(x.astype(np.float64), -top, top).astype(np.float32)
    else:
        top = max_finite(dtype)
        q = np.clip(x.astype(np.float32), -top, top).astype(_NP[dtype])
    return np.frombuffer(q.astype(q.dtype.newbyteorder("<")).tobytes(), np.uint8).copy()


def from_bytes(buf: np.ndarray, dtype: DType, count: int) -> np.ndarray:
    """``count`` elements decoded from packed bytes: float32 for floats, int64 for integers."""
    b = np.asarray(buf, dtype=np.uint8)
    if dtype == DType.INT4:
        lo = (b & 0x0F).astype(np.int64)
        hi = (b >> 4).astype(np.int64)
        vals = np.empty(2 * len(b), np.int64)
        vals[0::2], vals[1::2] = lo, hi
        vals = np.where(vals > 7, vals - 16, vals)
        return vals[:count]
    if dtype == DType.FP4E2M1:
        codes = np.empty(2 * len(b), np.uint8)
        codes[0::2], codes[1::2] = b & 0x0F, b >> 4
        return codes[:count].view(_NP[dtype]).astype(np.float32)
    raw = np.frombuffer(b[:dtype.nbytes(count)].tobytes(), dtype=np.dtype(_NP[dtype]))
    if dtype in _INT_RANGE:
        return raw.astype(np.int64)
    return raw.astype(np.float32)


def quantize(x: np.ndarray, scales: np.ndarray, dtype: DType, group: int) -> np.ndarray:
    """Symmetric linear quantization: round(x / S), saturated by ``to_bytes``."""
    return np.asarray(x, np.float64) / _expand(scales, np.shape(x), group)


def dequantize(q: np.ndarray, scales: np.ndarray, group: int) -> np.ndarray:
    return (np.asarray(q, np.float64) * _expand(scales, np.shape(q), group)).astype(np.float32)


def _expand(scales: np.ndarray, shape: tuple[int, ...], group: int) -> np.ndarray:
    s = np.asarray(scales, np.float64)
    rows, cols = shape
    if group == 0:
        return s.reshape(rows, 1)
    if cols % group:
        raise ValueError(f"quantization group {group} does not divide {cols} columns")
    return np.repeat(s.reshape(rows, cols // group), group, axis=1)


def matmul_acc(a: np.ndarray, w: np.ndarray, acc_dtype: DType) -> np.ndarray:
    """Products exact, summed in the accumulator type (int32 saturating, or fp32)."""
    if acc_dtype == DType.INT32:
        out = np.asarray(a, np.int64) @ np.asarray(w, np.int64)
        return np.clip(out, -(2 ** 31), 2 ** 31 - 1)
    return (np.asarray(a, np.float64) @ np.asarray(w, np.float64)).astype(np.float32)
