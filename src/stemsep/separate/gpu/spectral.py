"""The signal path around the U-Nets in jnp, for whole windows of frames on the device.

``separate_windows`` is ``separate.stream``'s per-chunk work as one traced
function: waveform windows ``[B, W, n_channels]`` in (each covers K frames:
W = (K - 1) * hop + frame_length), stems ``[B, instruments, W, 2]`` out, the
frames' overlap-add of each window (its last frame_length - hop samples
overlap the next window's first, and are added on the host). Between the two
everything stays on the device: STFT (periodic Hann, rfft), |X|[:F] in
T-frame segments, U-Nets, ratio masks (or the stereo Wiener filter of
``dsp.wiener``, in the same closed form), mask extension above F, irfft,
synthesis window x 2/3, overlap-add.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from stemsep.config import ModelConfig
from stemsep.dsp.masks import EPSILON
from stemsep.dsp.stft import WINDOW_COMPENSATION, periodic_hann

UNetCall = Callable[[jnp.ndarray], list]  # [N, T, F, n_channels] -> one [N, T, F, 2] per instrument


def window_samples(cfg: ModelConfig, frames: int) -> int:
    """Samples a window of ``frames`` STFT frames spans."""
    return (frames - 1) * cfg.frame_step + cfg.frame_length


def separate_windows(unets: UNetCall, windows: jnp.ndarray, cfg: ModelConfig, frames: int, mwf: bool) -> jnp.ndarray:
    """[B, W, n_channels] waveform windows -> [B, instruments, W, 2] overlap-added stems (see the module)."""
    batch = windows.shape[0]
    window = jnp.asarray(periodic_hann(cfg.frame_length))
    # STFT of every channel: [B, C, K, bins].
    spectrum = jnp.fft.rfft(frame(windows.transpose(0, 2, 1), cfg.frame_length, cfg.frame_step, frames) * window, axis=-1)
    # Magnitudes of the modelled band in T-frame segments: [B * K / T, T, F, C].
    magnitude = jnp.abs(spectrum[..., : cfg.F]).transpose(0, 2, 3, 1)
    segments = magnitude.reshape(batch * frames // cfg.T, cfg.T, cfg.F, cfg.n_channels)
    # One estimate per instrument, back to [B, K, F, 2].
    estimates = [e.reshape(batch, frames, cfg.F, 2) for e in unets(segments)]
    # Each instrument's complex STFT [B, 2, K, bins] (a mono mixture's one channel shaped by both masks).
    stfts = wiener(estimates, spectrum) if mwf else masked(estimates, spectrum, cfg)
    # Inverse STFT: windowed frames, compensated, overlap-added.
    synthesis = window * np.float32(WINDOW_COMPENSATION)
    stems = [overlap_add(jnp.fft.irfft(s, n=cfg.frame_length, axis=-1) * synthesis, cfg.frame_step) for s in stfts]
    return jnp.stack(stems, axis=1).transpose(0, 1, 3, 2)


def frame(signal: jnp.ndarray, length: int, step: int, count: int) -> jnp.ndarray:
    """[..., samples] -> [..., count, length]: frames every ``step`` samples."""
    if length % step == 0:  # whole hops: shifted reshapes, no gather
        ratio = length // step
        hops = signal[..., : (count + ratio - 1) * step].reshape(*signal.shape[:-1], count + ratio - 1, step)
        return jnp.concatenate([hops[..., q : q + count, :] for q in range(ratio)], axis=-1)
    starts = np.arange(count)[:, None] * step + np.arange(length)[None]
    return signal[..., starts]


def overlap_add(frames: jnp.ndarray, step: int) -> jnp.ndarray:
    """[..., count, length] -> [..., (count - 1) * step + length]: each frame added at its hop."""
    count, length = frames.shape[-2:]
    lead = frames.shape[:-2]
    if length % step == 0:  # quarter q of frame k lands on hop k + q: one padded add per quarter
        ratio = length // step
        parts = frames.reshape(*lead, count, ratio, step)
        pad = [(0, 0)] * len(lead)
        total = sum(jnp.pad(parts[..., q, :], [*pad, (q, ratio - 1 - q), (0, 0)]) for q in range(ratio))
        return total.reshape(*lead, (count + ratio - 1) * step)
    positions = np.arange(count)[:, None] * step + np.arange(length)[None]
    out = jnp.zeros((*lead, (count - 1) * step + length), frames.dtype)
    return out.at[..., positions].add(frames)


def ratio_masks(estimates: list[jnp.ndarray], exponent: float) -> list[jnp.ndarray]:
    """``dsp.masks.ratio_masks`` in jnp: ``(e_i^p + eps/n) / (sum_j e_j^p + eps)``."""
    powered = [jnp.square(e) if exponent == 2.0 else jnp.power(e, np.float32(exponent)) for e in estimates]
    total = sum(powered) + np.float32(EPSILON)
    share = np.float32(EPSILON / len(estimates))
    return [(p + share) / total for p in powered]


def masked(estimates: list[jnp.ndarray], spectrum: jnp.ndarray, cfg: ModelConfig) -> list[jnp.ndarray]:
    """Ratio masks, extended above F as the config says, times the mixture: [B, 2, K, bins] each."""
    bins = spectrum.shape[-1]
    stfts = []
    for mask in ratio_masks(estimates, cfg.separation_exponent):
        mask = mask.transpose(0, 3, 1, 2)  # [B, 2, K, F]
        if cfg.mask_extension == "average":
            extension = jnp.broadcast_to(mask.mean(axis=-1, keepdims=True), (*mask.shape[:-1], bins - cfg.F))
            stfts.append(spectrum * jnp.concatenate([mask, extension], axis=-1))
        else:  # zeros: the bins above F stay silent
            band = spectrum[..., : cfg.F] * mask
            stfts.append(jnp.pad(band, [(0, 0), (0, 0), (0, 0), (0, bins - cfg.F)]))
    return stfts


def wiener(estimates: list[jnp.ndarray], spectrum: jnp.ndarray) -> list[jnp.ndarray]:
    """``dsp.wiener.wiener_stfts`` (norbert.wiener's defaults: soft mask, one EM iteration) per window.

    estimates: [B, K, F, 2] magnitudes; spectrum: the mixture [B, C, K, bins] (a mono one is
    filtered as a stereo one with equal channels). Statistics are per window, as the CPU
    path's per chunk; sums run in float32 where the CPU path uses float64.
    """
    bins, band = spectrum.shape[-1], estimates[0].shape[2]
    eps = np.float32(np.finfo(np.float32).eps)
    spectrum = jnp.broadcast_to(spectrum, (spectrum.shape[0], 2, *spectrum.shape[2:]))
    scale = jnp.maximum(1.0, jnp.abs(spectrum).max(axis=(1, 2, 3)) / 10.0)[:, None, None]  # norbert's scaling
    x0, x1 = (spectrum[:, c, :, :band] / scale for c in (0, 1))  # [B, K, F]
    total = sum(estimates) + eps
    models = [_source_model(e / total, x0, x1, eps) for e in estimates]
    # Mixture covariance C (Hermitian 2x2 per frame and bin) and z = C^-1 x, shared by every source.
    c00 = sum(p * r00 for p, r00, _, _ in models) + np.sqrt(eps)
    c11 = sum(p * r11 for p, _, r11, _ in models) + np.sqrt(eps)
    c01 = sum(p * r01 for p, _, _, r01 in models)
    det = (c00 * c11 - (c01.real**2 + c01.imag**2)) / scale  # and the scaling undone
    z0 = (c11 * x0 - c01 * x1) / det
    z1 = (c00 * x1 - jnp.conj(c01) * x0) / det
    pad = [(0, 0), (0, 0), (0, 0), (0, bins - band)]
    return [
        jnp.pad(jnp.stack([p * (r00 * z0 + r01 * z1), p * (jnp.conj(r01) * z0 + r11 * z1)], axis=1), pad)
        for p, r00, r11, r01 in models
    ]


def _source_model(share: jnp.ndarray, x0: jnp.ndarray, x1: jnp.ndarray, eps: np.float32) -> tuple:
    """One source's power p [B, K, F] and spatial covariance (r00, r11, r01) [B, 1, F] from its soft mask."""
    left, right = share[..., 0] * x0, share[..., 1] * x1
    a, d = jnp.abs(left) ** 2, jnp.abs(right) ** 2
    power = (a + d) / 2
    weight = eps + power.sum(axis=1, keepdims=True)
    cross = (left * jnp.conj(right)).sum(axis=1, keepdims=True)
    return power, a.sum(axis=1, keepdims=True) / weight, d.sum(axis=1, keepdims=True) / weight, cross / weight
