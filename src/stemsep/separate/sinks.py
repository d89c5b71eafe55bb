"""Where one song's stems go: a file per stem, or one Native Instruments Stems file; full-scale handling.

A sink takes one block per output at a time (all the same length), and is
either committed (every file moved into place) or aborted (nothing left).
``Clamp`` and ``Rescale`` implement ``--clip``: clamping counts the samples
it cuts; rescaling needs a stem's peak before its first sample is encoded, so
it spools the stems to one raw float32 scratch file beside the outputs and
encodes them at commit, one bounded block at a time.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from stemsep.audio.encode import PARTIAL_SUFFIX, Codec, StemWriter, remove_stale_partials
from stemsep.errors import StemsepError

SPOOL_BLOCK = 1 << 16  # frames read back per step when rescaling


class Sink(Protocol):
    def write(self, blocks: Sequence[np.ndarray]) -> None: ...

    def commit(self, overwrite: bool) -> None: ...

    def abort(self) -> None: ...


class StemFiles:
    """One file per output, through ``StemWriter``."""

    def __init__(self, paths: Sequence[Path], codec: Codec, sample_rate: int, bitrate: int, bits: str | None, channels: int):
        self.writers: list[StemWriter] = []
        try:
            for path in paths:
                try:
                    self.writers.append(StemWriter(path, codec, sample_rate, bitrate, bits, channels))
                except OSError as error:
                    raise StemsepError(f"Cannot write to {path.parent} ({error.strerror}).") from None
        except BaseException:
            self.abort()
            raise

    def write(self, blocks: Sequence[np.ndarray]) -> None:
        for writer, block in zip(self.writers, blocks):
            writer.write(block)

    def commit(self, overwrite: bool) -> None:
        for writer in self.writers:
            writer.commit(overwrite)

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()


class NIStemsFile:
    """The mixture and four NI slots in one ``.stem.mp4``: blocks are [mixture, slot1..slot4]."""

    def __init__(self, path: Path, sample_rate: int, slot_names: Sequence[str], bitrate: int, bits: str | None):
        from stemsep.audio.ni_stems import NIStemWriter

        remove_stale_partials(path.parent)
        codec = "alac" if bits else "aac"
        try:
            self.writer = NIStemWriter(path, sample_rate, list(slot_names), codec=codec, bitrate=bitrate)
        except OSError as error:
            raise StemsepError(f"Cannot write to {path.parent} ({error.strerror}).") from None

    def write(self, blocks: Sequence[np.ndarray]) -> None:
        self.writer.write(blocks[0], list(blocks[1:]))

    def commit(self, overwrite: bool) -> None:
        self.writer.commit(overwrite)

    def abort(self) -> None:
        self.writer.abort()


class Clamp:
    """--clip clamp: samples beyond full scale are cut to +-1 and counted per output."""

    def __init__(self, sink: Sink, names: Sequence[str]) -> None:
        self.sink, self.names = sink, list(names)
        self.clipped = [0] * len(self.names)

    def write(self, blocks: Sequence[np.ndarray]) -> None:
        for i, block in enumerate(blocks):
            over = int(np.count_nonzero(np.abs(block) > 1.0))
            if over:
                self.clipped[i] += over
                np.clip(block, -1.0, 1.0, out=block)
        self.sink.write(blocks)

    def commit(self, overwrite: bool) -> None:
        self.sink.commit(overwrite)

    def abort(self) -> None:
        self.sink.abort()

    def notes(self) -> list[str]:
        return [f"{name}: {count} samples beyond full scale clamped" for name, count in zip(self.names, self.clipped) if count]


class Rescale:
    """--clip rescale: each output whose peak exceeds full scale is scaled down as a whole to peak 1."""

    def __init__(self, sink: Sink, names: Sequence[str], folder: Path) -> None:
        self.sink, self.names = sink, list(names)
        self.peaks = [0.0] * len(self.names)
        self.widths: list[int] | None = None
        fd, spool = tempfile.mkstemp(prefix=".stemsep-rescale.", suffix=PARTIAL_SUFFIX, dir=folder)
        self.spool_path = Path(spool)
        self.spool = os.fdopen(fd, "wb")

    def write(self, blocks: Sequence[np.ndarray]) -> None:
        self.widths = [block.shape[1] for block in blocks]
        for i, block in enumerate(blocks):
            if block.size:
                self.peaks[i] = max(self.peaks[i], float(np.max(np.abs(block))))
        np.concatenate(blocks, axis=1).astype(np.float32, copy=False).tofile(self.spool)

    def commit(self, overwrite: bool) -> None:
        self.spool.close()
        try:
            gains = np.concatenate([np.full(w, self._gain(p), np.float32) for w, p in zip(self.widths or [], self.peaks)])
            columns = len(gains)
            frames = self.spool_path.stat().st_size // (4 * columns) if columns else 0
            splits = np.cumsum(self.widths or [])[:-1]
            with open(self.spool_path, "rb") as spool:
                for _ in range(0, frames, SPOOL_BLOCK):
                    block = np.fromfile(spool, np.float32, SPOOL_BLOCK * columns).reshape(-1, columns) * gains
                    self.sink.write(np.split(block, splits, axis=1))
            self.sink.commit(overwrite)
        finally:
            self.spool_path.unlink(missing_ok=True)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.spool.close()
        self.spool_path.unlink(missing_ok=True)
        self.sink.abort()

    @staticmethod
    def _gain(peak: float) -> float:
        return 1.0 / peak if peak > 1.0 else 1.0

    def notes(self) -> list[str]:
        return [
            f"{name}: peak {peak:.3f}, rescaled by {20 * math.log10(self._gain(peak)):.2f} dB"
            for name, peak in zip(self.names, self.peaks)
            if peak > 1.0
        ]


class Unchanged:
    """--clip none: samples go to the encoder as they are (float outputs only)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.write, self.commit, self.abort = sink.write, sink.commit, sink.abort

    def notes(self) -> list[str]:
        return []


def with_clip(sink: Sink, clip: str, names: Sequence[str], folder: Path) -> Clamp | Rescale | Unchanged:
    """Wrap ``sink`` with the ``--clip`` policy; the result's ``notes()`` say what was done."""
    if clip == "rescale":
        try:
            return Rescale(sink, names, folder)
        except BaseException:
            sink.abort()
            raise
    return Clamp(sink, names) if clip == "clamp" else Unchanged(sink)
