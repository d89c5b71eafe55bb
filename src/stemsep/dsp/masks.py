"""Spleeter's ratio masks and their extension above the modelled band."""

from __future__ import annotations

import numpy as np

EPSILON = 1e-10


def ratio_masks(estimates: list[np.ndarray], exponent: float) -> list[np.ndarray]:
    """``m_i = (e_i^p + eps/n) / (sum_j e_j^p + eps)``, float32 as in the reference.

    In place on fresh arrays (one pass per operation, no stacked copy of every estimate).
    """
    if exponent == 2.0:  # every preset: a multiply instead of a pow
        powered = [np.square(e, dtype=np.float32) for e in estimates]
    else:
        powered = [np.power(e, np.float32(exponent), dtype=np.float32) for e in estimates]
    total = powered[0] + np.float32(EPSILON)
    for p in powered[1:]:
        total += p
    share = np.float32(EPSILON / len(estimates))
    for p in powered:
        p += share
        p /= total
    return powered


def extend_band(values: np.ndarray, n_bins: int, mode: str, axis: int = -1) -> np.ndarray:
    """Extend ``values`` from F to ``n_bins`` bins along the frequency ``axis``.

    ``zeros`` leaves the bins above F silent; ``average`` repeats the mean
    over the modelled band, as Spleeter's ``mask_extension``.
    """
    axis = axis % values.ndim
    missing = n_bins - values.shape[axis]
    if missing <= 0:
        return values
    if mode == "average":
        row = values.mean(axis=axis, keepdims=True, dtype=np.float32)
    elif mode == "zeros":
        row = np.zeros_like(np.take(values, [0], axis=axis))
    else:
        raise ValueError(f"unknown mask extension {mode!r}")
    shape = list(values.shape)
    shape[axis] = missing
    return np.concatenate([values, np.broadcast_to(row, shape)], axis=axis)
