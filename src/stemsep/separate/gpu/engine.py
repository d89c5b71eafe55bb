"""The JAX engine: the U-Nets and the whole spectral path on the device, files batched together.

As an ``Engine`` (``engine(segments)``) it runs the U-Nets alone, like the
CPU engines. ``stream_stems`` replaces ``separate.stream``'s pipeline: the
host cuts each file into windows of ``T`` frames on the reference's segment
grid and adds the overlap of consecutive windows' outputs; the device does
the rest (``spectral.separate_windows``), so only waveforms cross the bus.
Windows of every file being separated go through one ``Batcher``: with
several files in flight (``files.separate_files``) a batch holds segments of
several songs. Host memory per file is bounded by the windows in flight.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from stemsep.config import ModelConfig
from stemsep.model.loader import ModelSource, resolve_source
from stemsep.separate.gpu.batcher import Batcher
from stemsep.separate.gpu.spectral import separate_windows, window_samples
from stemsep.separate.gpu.unets import UNets
from stemsep.separate.stream import Progress, to_model_channels

# Windows one file keeps submitted (a GPU's batch of 64 fills from 8 files, and the next one gathers
# while it runs); max_batch: windows of T frames per device call.
IN_FLIGHT = {"gpu": 8, "cpu": 2}
MAX_BATCH = {"gpu": 64, "cpu": 2}


class JaxEngine:
    """A model's U-Nets under ``jax.jit`` on JAX's default device (a GPU when there is one)."""

    def __init__(self, source: ModelSource, precision: str = "fp32", max_batch: int | None = None, twin: bool = True) -> None:
        """``twin=False`` computes with the U-Net as built (strided and transposed convolutions), for comparison."""
        import jax

        self.config: ModelConfig = source.config
        self.precision = precision
        self.unets = UNets.load(source, precision, twin)
        self.platform = jax.devices()[0].platform
        self.max_batch = max_batch or MAX_BATCH.get(self.platform, MAX_BATCH["gpu"])
        self.batch_sizes = tuple(sorted({max(1, self.max_batch // 8), self.max_batch}))  # one compilation each
        self.in_flight = IN_FLIGHT.get(self.platform, IN_FLIGHT["gpu"])
        self.estimate = jax.jit(self.unets.apply)  # (weights, segments on the device) -> estimates on the device
        self._separate = {mwf: jax.jit(self._separate_fn(mwf)) for mwf in (False, True)}
        self._batchers: dict[bool, Batcher] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        import jax

        return str(jax.devices()[0].device_kind)

    def __call__(self, segments: np.ndarray) -> list[np.ndarray]:
        """[B, T, F, n_channels] float32 -> one [B, T, F, 2] estimate per instrument (the U-Nets alone)."""
        return [np.asarray(o) for o in self.estimate(self.unets.weights, segments)]

    def _separate_fn(self, mwf: bool):
        cfg = self.config

        def separate(weights, windows):
            return separate_windows(lambda segments: self.unets.apply(weights, segments), windows, cfg, cfg.T, mwf)

        return separate

    def separate_windows(self, windows: np.ndarray, mwf: bool = False):
        """[B, W, n_channels] windows -> [B, instruments, W, 2] on the device (not waited for)."""
        return self._separate[mwf](self.unets.weights, windows)

    def batcher(self, mwf: bool) -> Batcher:
        with self._lock:
            if mwf not in self._batchers:
                self._batchers[mwf] = Batcher(lambda batch: self.separate_windows(batch, mwf), self.batch_sizes)
            return self._batchers[mwf]

    def close(self) -> None:
        """Stop the device threads (they hold the engine while they run)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    def warm_up(self, mwf: bool = False) -> None:
        """Compile the device program for every batch size now rather than on the first batches."""
        cfg = self.config
        for size in self.batch_sizes:
            np.asarray(self.separate_windows(np.zeros((size, window_samples(cfg, cfg.T), cfg.n_channels), np.float32), mwf))

    def stream_stems(
        self, blocks: Iterable[np.ndarray], mwf: bool = False, progress: Progress | None = None
    ) -> Iterator[list[np.ndarray]]:
        """``separate.stream.stream_stems`` on the device: stereo blocks in, per-instrument blocks out."""
        return _DeviceStream(self, mwf, progress).run(blocks)


class _DeviceStream:
    """One file's windows: submitted in order, their outputs overlap-added and cropped to the input."""

    def __init__(self, engine: JaxEngine, mwf: bool, progress: Progress | None) -> None:
        cfg = self.cfg = engine.config
        self.batcher = engine.batcher(mwf)
        self.in_flight = engine.in_flight
        self.progress = progress
        self.width = window_samples(cfg, cfg.T)  # samples per window
        self.advance = cfg.T * cfg.frame_step  # samples between windows
        self.carry = np.zeros((len(cfg.instruments), self.width - self.advance, 2), np.float32)
        self.emitted = 0  # samples of the zero-prefixed signal returned or dropped
        self.samples = 0  # input samples seen

    def run(self, blocks: Iterable[np.ndarray]) -> Iterator[list[np.ndarray]]:
        futures: deque = deque()
        for window in self._windows(blocks):
            futures.append(self.batcher.submit(window))
            if len(futures) > self.in_flight:
                yield from self._finish(futures.popleft().result())
        while futures:
            yield from self._finish(futures.popleft().result())
        yield from self._emit(list(self.carry))

    def _windows(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Windows of ``width`` samples every ``advance`` over the zero-prefixed signal, the end zero-padded
        until every frame the reference computes (up to the signal's end) is in one."""
        cfg = self.cfg
        pieces = [np.zeros((cfg.frame_length, cfg.n_channels), np.float32)]
        held = cfg.frame_length
        for block in blocks:
            self.samples += block.shape[0]
            pieces.append(to_model_channels(block, cfg.n_channels).astype(np.float32, copy=False))
            held += block.shape[0]
            if held < self.width:
                continue
            buffer = np.concatenate(pieces)
            while buffer.shape[0] >= self.width:
                yield buffer[: self.width]
                buffer = buffer[self.advance :]
            pieces, held = [buffer], buffer.shape[0]
        buffer = np.concatenate(pieces)
        for _ in range(math.ceil(buffer.shape[0] / self.advance)):
            window = np.zeros((self.width, cfg.n_channels), np.float32)
            part = buffer[: self.width]
            window[: part.shape[0]] = part
            yield window
            buffer = buffer[self.advance :]

    def _finish(self, stems: np.ndarray) -> Iterator[list[np.ndarray]]:
        """A window's output [instruments, width, 2]: its first ``advance`` samples are complete once
        the previous window's tail is added; its tail waits for the next window."""
        overlap = self.carry.shape[1]
        done = stems[:, : self.advance].copy()
        done[:, :overlap] += self.carry
        self.carry = stems[:, self.advance :].copy()
        return self._emit(list(done))

    def _emit(self, pieces: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
        """Drop the leading frame of zeros and anything past the input's end, as ``separate.stream``."""
        length = self.cfg.frame_length
        start, stop = self.emitted, self.emitted + pieces[0].shape[0]
        self.emitted = stop
        lo, hi = max(length - start, 0), min(length + self.samples - start, stop - start)
        if hi > lo:
            yield [p[lo:hi] for p in pieces]
        if self.progress:
            self.progress(max(min(self.emitted - length, self.samples), 0) / self.cfg.sample_rate)


def load_jax_engine(model: str, model_dir=None, precision: str = "fp32", max_batch: int | None = None) -> JaxEngine:
    return JaxEngine(resolve_source(model, model_dir), precision, max_batch)
