"""Streaming decode of any FFmpeg-readable file to float32 stereo blocks.

Matches the reference loader (``ffmpeg -f f32le``): samples are converted
to float exactly as FFmpeg does, mono is duplicated, channels past the
second are dropped. Resampling to the model rate uses soxr, streamed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soxr

from stemsep.errors import StemsepError

# A declared duration longer than what decodes by this much means a cut file.
TRUNCATION_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    duration: float | None  # seconds, as declared by the container (may be an estimate)
    codec: str


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise StemsepError(f"{path} does not exist.")
    if path.is_dir():
        raise StemsepError(f"{path} is a folder, not an audio file.")
    try:
        return av.open(str(path), mode="r")
    except PermissionError:
        raise StemsepError(f"{path} cannot be read (permission denied).") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        raise StemsepError(f"{path} is not an audio file FFmpeg can read.") from None


def _audio_stream(container: av.container.InputContainer, path: Path, index: int = 0) -> av.audio.stream.AudioStream:
    """The ``index``-th audio stream (a .stem.mp4 holds the mixture first, then one stream per stem)."""
    streams = container.streams.audio
    if not streams:
        raise StemsepError(f"{path} has no audio stream.")
    if index >= len(streams):
        raise StemsepError(f"{path} has {len(streams)} audio stream(s), not the {index + 1} expected.")
    return streams[index]


def count_audio_streams(path: Path) -> int:
    with _open(path) as container:
        return len(container.streams.audio)


def probe(path: Path, stream_index: int = 0) -> AudioInfo:
    """Sample rate, channels and declared duration of an audio stream (the first by default)."""
    with _open(path) as container:
        stream = _audio_stream(container, path, stream_index)
        ctx = stream.codec_context
        if not ctx.sample_rate or not ctx.channels:
            raise StemsepError(f"{path} has an audio stream without a sample rate or channels.")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return AudioInfo(path, int(ctx.sample_rate), int(ctx.channels), duration, ctx.name)


def to_stereo(block: np.ndarray) -> np.ndarray:
    """[n, c] -> [n, 2]: duplicate mono, keep the first two of more channels (as Spleeter)."""
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    return block[:, :2]


def _decoded_blocks(path: Path, stream_index: int = 0, min_frames: int = 1 << 15) -> Iterator[np.ndarray]:
    """Decoded samples as float32 [n, channels] at the file's own rate, in blocks of at least
    ``min_frames`` (but the last): one transpose per block, not per codec frame (~1k samples)."""
    with _open(path) as container:
        stream = _audio_stream(container, path, stream_index)
        # Sample-format conversion only (rate and layout kept), like ffmpeg -f f32le.
        to_float = av.AudioResampler(format="fltp")
        pending: list[np.ndarray] = []
        held = 0

        def converted(frame: av.AudioFrame | None) -> Iterator[np.ndarray]:
            nonlocal pending, held
            for out in to_float.resample(frame):
                pending.append(out.to_ndarray())
                held += pending[-1].shape[1]
            if held >= min_frames or (frame is None and held):
                block = np.concatenate(pending, axis=1).T
                pending, held = [], 0
                yield block

        try:
            for frame in container.decode(stream):
                yield from converted(frame)
            yield from converted(None)
        except av.error.FFmpegError as error:
            raise StemsepError(f"{path} is damaged: decoding failed ({error.strerror or type(error).__name__}).") from None


def stream_audio(
    path: Path,
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
    block_frames: int = 1 << 16,
    stream_index: int = 0,
) -> Iterator[np.ndarray]:
    """Stereo float32 blocks [n, 2] at ``sample_rate``, from ``offset`` for ``duration`` seconds.

    Raises StemsepError for unreadable, empty or truncated input.
    """
    info = probe(path, stream_index)
    start = round(offset * info.sample_rate)
    stop = None if duration is None else start + round(duration * info.sample_rate)
    resampler = None
    if info.sample_rate != sample_rate:
        resampler = soxr.ResampleStream(info.sample_rate, sample_rate, 2, dtype="float32", quality="HQ")
    position = 0  # input samples seen
    kept = 0
    pending: list[np.ndarray] = []
    pending_len = 0
    for block in _decoded_blocks(path, stream_index):
        lo, hi = max(start - position, 0), block.shape[0] if stop is None else min(stop - position, block.shape[0])
        position += block.shape[0]
        if hi <= lo:
            if stop is not None and position >= stop:
                break
            continue
        piece = np.ascontiguousarray(to_stereo(block[lo:hi]), dtype=np.float32)
        kept += piece.shape[0]
        if resampler is not None:
            piece = resampler.resample_chunk(piece)
        pending.append(piece)
        pending_len += piece.shape[0]
        if pending_len >= block_frames:
            yield np.concatenate(pending)
            pending, pending_len = [], 0
        if stop is not None and position >= stop:
            break
    if resampler is not None:
        pending.append(resampler.resample_chunk(np.zeros((0, 2), np.float32), last=True))
    if kept == 0:
        if start > 0 and position <= start:
            raise StemsepError(f"{path} is shorter than the offset of {offset:g} s.")
        raise StemsepError(f"{path} contains no audio samples.")
    declared_end = info.duration
    if stop is None and declared_end is not None and position / info.sample_rate < declared_end - TRUNCATION_TOLERANCE_S:
        raise StemsepError(
            f"{path} is truncated: it declares {declared_end:.1f} s but only {position / info.sample_rate:.1f} s decode."
        )
    if pending:
        tail = np.concatenate(pending)
        if tail.shape[0]:
            yield tail


def read_audio(path: Path, sample_rate: int, stream_index: int = 0) -> np.ndarray:
    """A whole stream as one stereo float32 array [n, 2] at ``sample_rate`` (for tracks that fit in memory)."""
    return np.concatenate(list(stream_audio(path, sample_rate, stream_index=stream_index)))
