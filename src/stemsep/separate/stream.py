"""The streaming pipeline around an engine, in bounded chunks.

waveform -> (4096 leading zeros) -> STFT -> |X|[:F] in T-frame segments ->
engine (U-Nets) -> ratio masks (or norbert Wiener filter) -> masked STFT ->
iSTFT x 2/3.

Chunks are whole multiples of T frames, aligned on the reference's segment
grid, and the STFT/iSTFT overlaps are carried across chunk borders, so the
result equals the whole-file computation while memory stays bounded by the
chunk size whatever the input's length. With ``--mwf`` the Wiener filter's
statistics are estimated per chunk (the reference estimates them over the
whole file, which cannot be bounded); files shorter than one chunk match it.

A mono model (``n_channels`` 1) is given the mean of the input's channels
(a mono file, duplicated by the decoder, comes back as itself) and still
writes stereo stems: its U-Nets estimate two channels, as the reference's,
whose last convolution has 2 filters whatever n_channels, and each masks the
one mixture channel. (The reference's own Separator cannot run a mono model:
it makes every input stereo and feeds it to the model's one-channel input.)
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from stemsep.config import ModelConfig
from stemsep.dsp.masks import extend_band, ratio_masks
from stemsep.dsp.stft import OverlapAdd, periodic_hann, stft_frames
from stemsep.separate.background import Background
from stemsep.separate.engine import Engine

Progress = Callable[[float], None]  # seconds of input done


def stream_stems(
    engine: Engine,
    blocks: Iterable[np.ndarray],
    mwf: bool = False,
    chunk_segments: int = 1,
    progress: Progress | None = None,
) -> Iterator[list[np.ndarray]]:
    """Stereo float32 blocks at the model rate in; per-instrument stereo blocks out, same length in total.

    The engine gets every core while it runs (ONNX Runtime's threads stall
    when another thread takes their core: the U-Net 1.3x slower, measured);
    each chunk's masks and inverse STFTs (one instrument per core) run on
    low-priority threads while the engine runs the next chunk, in the moments
    it leaves a core idle (``separate.background``: 180 s with ``--mwf``
    4.65 s instead of 5.37 in-process, medians of 5 alternating runs).
    """
    cfg = engine.config
    window = periodic_hann(cfg.frame_length)
    counted = _Counter(blocks)
    emitted = 0  # samples of the zero-prefixed signal already returned or dropped

    def emit(pieces: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
        # Drop the reference's leading frame of zeros and anything past the input's end.
        nonlocal emitted
        start, stop = emitted, emitted + pieces[0].shape[0]
        emitted = stop
        lo, hi = max(cfg.frame_length - start, 0), min(cfg.frame_length + counted.samples - start, stop - start)
        if hi > lo:
            yield [p[lo:hi] for p in pieces]
        if progress:
            progress(max(min(emitted - cfg.frame_length, counted.samples), 0) / cfg.sample_rate)

    reconstruct = _Reconstruction(cfg, window, mwf)
    model_blocks = (to_model_channels(block, cfg.n_channels) for block in counted)
    chunks = _stft_chunks(model_blocks, cfg, cfg.T * chunk_segments, window, with_peak=mwf)
    pending: Future[list[np.ndarray]] | None = None
    with Background(min(len(cfg.instruments), os.cpu_count() or 1)) as background:
        for stft, peak in chunks:
            started = time.perf_counter()
            estimates = _estimate(engine, stft)
            step = time.perf_counter() - started
            finished = background.finish(pending, patience=step) if pending is not None else None
            pending = background.start(reconstruct, stft, peak, estimates)
            if finished is not None:  # encoded while this chunk is reconstructed
                yield from emit(finished)
        if pending is not None:
            yield from emit(background.finish(pending, patience=step))
    yield from emit(reconstruct.flush())


def to_model_channels(signal: np.ndarray, n_channels: int) -> np.ndarray:
    """[n, channels] -> [n, n_channels]: the mean of the channels for a mono model, else as it is."""
    if n_channels == 1 and signal.shape[1] != 1:
        return signal.mean(axis=1, keepdims=True, dtype=np.float32)
    return signal


def _stft_chunks(
    blocks: Iterable[np.ndarray], cfg: ModelConfig, chunk_frames: int, window: np.ndarray, with_peak: bool = False
) -> Iterator[tuple[np.ndarray, float | None]]:
    """STFT chunks of ``chunk_frames`` frames (the last one shorter), complex64 [channels, frames, width],
    and the largest magnitude over every bin if ``with_peak`` (norbert's Wiener scaling).

    As the reference: one frame of zeros in front, frames every hop, and the
    end zero-padded until the signal is covered (tf.signal's pad_end).
    ``width``: the U-Net's band (F bins) where the model's masks are zero
    above it (every official model), else every bin. Chunks are written into
    two buffers in turn, reused (a fresh 8-17 MB array per chunk is mapped
    and page-faulted in every time: ~0.2 s on 180 s, measured): the caller is
    done with a chunk when it asks for the second next (the engine runs one
    while the other is reconstructed).
    """
    length, hop = cfg.frame_length, cfg.frame_step
    width = cfg.F if cfg.mask_extension == "zeros" else cfg.n_bins
    spectra = itertools.cycle([np.empty((cfg.n_channels, chunk_frames, width), np.complex64) for _ in range(2)])
    peak = np.zeros(1, np.float32) if with_peak else None

    def chunk(buffer: np.ndarray, n: int) -> tuple[np.ndarray, float | None]:
        stft = stft_frames(buffer, length, hop, n, window, next(spectra), peak)
        return stft, None if peak is None else float(peak[0])

    chunk_samples = (chunk_frames - 1) * hop + length
    pieces = [np.zeros((length, cfg.n_channels), dtype=np.float32)]
    held = length  # samples in pieces; concatenated only when a chunk is complete
    for block in blocks:
        pieces.append(block.astype(np.float32, copy=False))
        held += block.shape[0]
        if held < chunk_samples:
            continue
        buffer = np.concatenate(pieces)
        while buffer.shape[0] >= chunk_samples:
            yield chunk(buffer, chunk_frames)
            buffer = buffer[chunk_frames * hop :]
        pieces, held = [buffer], buffer.shape[0]
    buffer = np.concatenate(pieces)
    remaining = math.ceil(buffer.shape[0] / hop)
    padding = np.zeros(((remaining - 1) * hop + length - buffer.shape[0], cfg.n_channels), np.float32)
    buffer = np.concatenate([buffer, padding])
    while remaining > 0:
        n = min(chunk_frames, remaining)
        yield chunk(buffer, n)
        buffer = buffer[n * hop :]
        remaining -= n


def _estimate(engine: Engine, stft: np.ndarray) -> list[np.ndarray]:
    """Engine estimates [frames, F, 2] per instrument for stft [n_channels, frames, bins]."""
    cfg = engine.config
    n_frames = stft.shape[1]
    n_segments = math.ceil(n_frames / cfg.T)
    magnitude = np.zeros((n_segments * cfg.T, cfg.F, cfg.n_channels), dtype=np.float32)
    magnitude[:n_frames] = np.abs(stft[:, :, : cfg.F]).transpose(1, 2, 0)
    segments = magnitude.reshape(n_segments, cfg.T, cfg.F, cfg.n_channels)
    outputs = engine(segments)
    return [o.reshape(-1, cfg.F, cfg.output_channels)[:n_frames] for o in outputs]


class _Reconstruction:
    """Masks (or Wiener filter) on each chunk's STFT, then the streamed inverse STFT per instrument."""

    def __init__(self, cfg: ModelConfig, window: np.ndarray, mwf: bool) -> None:
        self.cfg = cfg
        self.mwf = mwf
        channels = cfg.output_channels
        self.overlap_adds = [OverlapAdd(cfg.frame_length, cfg.frame_step, channels, window) for _ in cfg.instruments]
        self.filtered: list[np.ndarray | None] = [None] * len(cfg.instruments)  # see _band_buffer

    def __call__(
        self, stft: np.ndarray, peak: float | None, estimates: list[np.ndarray], pool: ThreadPoolExecutor
    ) -> list[np.ndarray]:
        """Finished samples per instrument for chunk ``stft`` [n_channels, frames, width] (``peak``: its
        largest magnitude, for the Wiener filter), instruments on ``pool``. Bins from ``width`` up are zero."""
        cfg = self.cfg
        if self.mwf:
            from stemsep.dsp.wiener import wiener_stfts

            # A mono mixture is filtered as a stereo one with equal channels: each stem channel's
            # estimate shapes its own channel, as the masks do.
            band = stft[:, :, : cfg.F]
            mixture = band if band.shape[0] == cfg.output_channels else np.repeat(band, cfg.output_channels, axis=0)
            buffers = [self._band_buffer(i, mixture.shape) for i in range(len(estimates))]
            stfts = wiener_stfts(estimates, mixture, pool, buffers, peak)
            return list(pool.map(lambda i: self.overlap_adds[i].push(stfts[i]), range(len(stfts))))
        masks = ratio_masks(estimates, cfg.separation_exponent)

        def invert(i: int) -> np.ndarray:
            mask = masks[i].transpose(2, 0, 1)  # [2, frames, F]
            if cfg.mask_extension == "zeros":  # bins above F stay silent: the band only
                return self.overlap_adds[i].push(stft[:, :, : cfg.F], gain=mask)
            return self.overlap_adds[i].push(stft, gain=extend_band(mask, cfg.n_bins, cfg.mask_extension))

        return list(pool.map(invert, range(len(masks))))

    def flush(self) -> list[np.ndarray]:
        return [ola.flush() for ola in self.overlap_adds]

    def _band_buffer(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """Instrument ``index``'s complex64 Wiener output of ``shape`` [2, frames, F], reused across chunks
        (a fresh array per chunk and instrument costs its page faults every time)."""
        buffer = self.filtered[index]
        if buffer is None or buffer.shape != shape:
            buffer = self.filtered[index] = np.zeros(shape, np.complex64)
        return buffer


class _Counter:
    """Passes blocks through and counts their samples (the input's length, known at its end)."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.blocks = blocks
        self.samples = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.samples += block.shape[0]
            yield block
