"""Test helpers: write audio files, synthesize music-like signals, measure SNR."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_audio(path: Path, samples: np.ndarray, rate: int, codec: str | None = None) -> Path:
    """Write float32 [n, channels] with PyAV; the container follows the suffix."""
    channels = samples.shape[1]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    encoder = codec or {".wav": "pcm_f32le", ".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}[path.suffix]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def music_like(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A deterministic mix of a harmonic line, a pad and noise bursts, [n, channels] float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 * 2 ** (np.floor(t * 2) % 5 / 12)
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.2
    pad = 0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.3 * t))
    bursts = rng.normal(0, 0.3, t.size) * (np.mod(t, 0.5) < 0.05)
    mono = voice + pad + bursts
    out = np.stack([mono * (1 - 0.1 * c) + 0.01 * rng.normal(size=t.size) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    noise = np.sum((reference - estimate.astype(np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(noise, 1e-30)))
