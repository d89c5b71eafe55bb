"""STFT and inverse STFT with ``tf.signal`` semantics, in numpy, streamable.

Spleeter uses ``tf.signal.stft`` (periodic Hann, no centering, ``pad_end``)
and ``tf.signal.inverse_stft`` with the analysis window as synthesis window,
then scales by 2/3 (sum of squared Hann windows at hop = frame/4 is 1.5).
Both are computed here frame by frame so that a long file can be processed
in chunks whose result equals the whole-file result.
"""

from __future__ import annotations

import os

import numpy as np

from stemsep.dsp.fft import irfft_into, rfft_into

WINDOW_COMPENSATION = 2.0 / 3.0
# Frames transformed at a time: 1 MB of float32 per channel at 4096 samples (128: ~10 MiB more peak RSS with --mwf, no faster).
FRAMES_PER_BLOCK = 64


def periodic_hann(frame_length: int) -> np.ndarray:
    n = np.arange(frame_length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame_length)).astype(np.float32)


def stft_frames(
    signal: np.ndarray,
    frame_length: int,
    frame_step: int,
    n_frames: int,
    window: np.ndarray,
    out: np.ndarray | None = None,
    peak: np.ndarray | None = None,
) -> np.ndarray:
    """STFT of ``n_frames`` frames starting at sample 0 of ``signal`` [samples, channels].

    Returns complex64 [channels, n_frames, frame_length // 2 + 1] (channel-first
    so that every FFT runs on contiguous rows). ``signal`` must hold at least
    ``(n_frames - 1) * frame_step + frame_length`` samples. ``out``: a complex64
    [channels, >= n_frames, width] buffer to write into (the result is its first
    ``n_frames`` frames); with ``width`` below the number of bins, only the first
    ``width`` bins are kept. A fresh array of every bin if None. ``peak``: a
    float32 array of one element that receives the largest magnitude over every
    bin, kept or not (norbert's Wiener filter scales by it).
    """
    needed = (n_frames - 1) * frame_step + frame_length
    if signal.shape[0] < needed:
        raise ValueError(f"stft_frames needs {needed} samples, got {signal.shape[0]}")
    channels_first = np.ascontiguousarray(signal[:needed].T)
    # [channels, n_frames, frame_length] view without copying the waveform.
    framed = np.lib.stride_tricks.sliding_window_view(channels_first, frame_length, axis=1)[:, ::frame_step]
    bins = frame_length // 2 + 1
    if out is None:
        out = np.empty((framed.shape[0], n_frames, bins), dtype=np.complex64)
    spectrum = out[:, :n_frames]
    threads = min(framed.shape[0], os.cpu_count() or 1)  # the channels' frames on separate cores
    # Windowed frames a block at a time into one buffer: a few MB in flight, not the chunk's whole
    # frame matrix, and allocated once (each fresh large array costs its page faults).
    block_frames = min(FRAMES_PER_BLOCK, n_frames)
    windowed = np.empty((framed.shape[0], block_frames, frame_length), dtype=np.float32)
    whole = None if out.shape[2] == bins and peak is None else np.empty((framed.shape[0], block_frames, bins), np.complex64)
    if peak is not None:
        peak[0] = 0.0
    for start in range(0, n_frames, FRAMES_PER_BLOCK):
        stop = min(start + FRAMES_PER_BLOCK, n_frames)
        block = windowed[:, : stop - start]
        np.multiply(framed[:, start:stop], window, out=block)
        if whole is None:
            rfft_into(block, spectrum[:, start:stop], threads)
            continue
        # Every bin into a block buffer, then the kept ones into ``out``.
        spectra = whole[:, : stop - start]
        rfft_into(block, spectra, threads)
        if peak is not None:
            peak[0] = max(peak[0], np.abs(spectra).max())
        spectrum[:, start:stop] = spectra[:, :, : out.shape[2]]
    return spectrum


class OverlapAdd:
    """Streaming inverse STFT: feed consecutive frames, get finished samples.

    Output sample ``p`` is final once every frame overlapping it has been
    added, i.e. once a frame starting after ``p`` has been pushed. The last
    ``frame_length - frame_step`` samples are carried between calls.
    """

    def __init__(self, frame_length: int, frame_step: int, channels: int, window: np.ndarray) -> None:
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.synthesis = (window * np.float32(WINDOW_COMPENSATION)).astype(np.float32)
        self.carry = np.zeros((channels, frame_length - frame_step), dtype=np.float32)
        self._frame_buffer: np.ndarray | None = None  # time frames, reused
        self._spectrum_buffer: np.ndarray | None = None  # a band's zero-padded spectra, reused
        self._spectrum_width = 0  # bins of _spectrum_buffer that may be nonzero: the last call's width

    def push(self, stft: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
        """Add frames [channels, n, width] (width <= bins: the bins from width up are zero), times
        ``gain`` [channels, n, width] if given (a one-channel ``stft`` is broadcast against it); return
        the samples now complete ([n * step, channels])."""
        channels, n_frames = self.carry.shape[0], stft.shape[1]
        if n_frames == 0:
            return np.zeros((0, channels), dtype=np.float32)
        step, length = self.frame_step, self.frame_length
        ratio = length // step
        done = n_frames * step
        if ratio * step == length:
            # Frame k's quarter q lands on output block k + q: ratio strided adds, no Python loop per frame.
            blocks = np.zeros((channels, n_frames + ratio - 1, step), dtype=np.float32)
            blocks.reshape(channels, -1)[:, : self.carry.shape[1]] += self.carry
            for start in range(0, n_frames, FRAMES_PER_BLOCK):
                stop = min(start + FRAMES_PER_BLOCK, n_frames)
                part = None if gain is None else gain[:, start:stop]
                quarters = self._frames(stft[:, start:stop], part).reshape(channels, stop - start, ratio, step)
                for q in range(ratio):
                    blocks[:, start + q : stop + q] += quarters[:, :, q]
            out = blocks.reshape(channels, -1)
        else:  # frames overlap irregularly: one add per frame
            frames = self._frames(stft, gain)
            out = np.zeros((channels, (n_frames - 1) * step + length), dtype=np.float32)
            out[:, : self.carry.shape[1]] += self.carry
            for k in range(n_frames):
                out[:, k * step : k * step + length] += frames[:, k]
        self.carry = out[:, done:].copy()
        return out[:, :done].T

    def _frames(self, stft: np.ndarray, gain: np.ndarray | None) -> np.ndarray:
        """Windowed, compensated time frames [channels, n, frame_length] of spectra [channels, n, width]
        (times ``gain``). n <= FRAMES_PER_BLOCK: into buffers reused from call to call (the
        irregular-hop path: any n)."""
        channels, n, width = self.carry.shape[0], stft.shape[1], stft.shape[2]
        self._frame_buffer = _reused(self._frame_buffer, (channels, n, self.frame_length), np.float32)
        frames = self._frame_buffer[:, :n]
        bins = self.frame_length // 2 + 1
        if width == bins and gain is None and stft.shape[0] == channels:
            spectra = stft
        else:
            # The band (times its gain) into a spectrum buffer whose bins from ``width`` up are zero.
            buffer = _reused(self._spectrum_buffer, (channels, n, bins), np.complex64, zeroed=True)
            if buffer is not self._spectrum_buffer:
                self._spectrum_buffer, self._spectrum_width = buffer, 0
            if width < self._spectrum_width:
                buffer[:, :, width : self._spectrum_width] = 0
            self._spectrum_width = width
            spectra = buffer[:, :n]
            if gain is None:
                spectra[:, :, :width] = stft
            else:
                np.multiply(stft, gain, out=spectra[:, :, :width])
        irfft_into(spectra, frames)  # on one thread: the pipeline inverts its instruments on separate cores
        frames *= self.synthesis  # window and 2/3 compensation in one pass
        return frames

    def flush(self) -> np.ndarray:
        """The samples still pending after the last frame, [frame_length - frame_step, channels]."""
        tail, self.carry = self.carry, np.zeros_like(self.carry)
        return tail.T


def _reused(buffer: np.ndarray | None, shape: tuple[int, int, int], dtype: type, zeroed: bool = False) -> np.ndarray:
    """``buffer`` if it holds ``shape`` (its frames axis at least ``shape[1]``), else a new one with room
    for FRAMES_PER_BLOCK frames (zero-filled if ``zeroed``)."""
    if buffer is not None and buffer.shape[0] == shape[0] and buffer.shape[1] >= shape[1] and buffer.shape[2] == shape[2]:
        return buffer
    full = (shape[0], max(shape[1], FRAMES_PER_BLOCK), shape[2])
    return np.zeros(full, dtype) if zeroed else np.empty(full, dtype)
