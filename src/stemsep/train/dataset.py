"""Training and validation data as the reference builds them, with a step-addressed sampler.

Training set (reference behaviour, SPEC.md): ``n_chunks_per_song`` chunks of
``chunk_duration`` seconds (20 by default) per song at evenly spaced starts;
the magnitude STFT of each chunk (periodic Hann, no leading zeros, no end
padding), first F bins; chunks that fail to load, hold inf/NaN or are
shorter than T frames are dropped; a random T-frame crop per example.
Validation: the 12 s centre chunk of each song (whatever chunk_duration, as
the reference), its centre T frames. The mixture is the CSV's
``<mix_name>_path`` column.

A mono model (``n_channels`` 1) learns from the mean of each file's
channels; the reference reads each file's own channels and drops every
chunk whose channel count is not n_channels, so it trains a mono model on
mono files only (on those the mean is the same signal).

Spectrograms are cached on disk as float16 memory maps (the reference used
8-bit dB; float16 keeps 3 significant digits on linear magnitudes, enough
for an L1 loss, and is read without conversion), keyed by the CSV's content
and the STFT settings, so a second run or a resume starts at once and RAM
does not grow with the dataset.

Where the reference shuffles a tf.data iterator, examples here are drawn
from a generator seeded by ``(random_seed, step)``: the batch of step s is
the same whether training ran straight or was killed and resumed, which is
what makes ``--resume`` exact without saving an iterator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsep.audio.decode import stream_audio
from stemsep.config import VALIDATION_SECONDS, ModelConfig, TrainingConfig
from stemsep.data.tracks import read_dataset_table
from stemsep.dsp.stft import periodic_hann, stft_frames
from stemsep.errors import StemsepError
from stemsep.separate.stream import to_model_channels

CHUNK_MARGIN_SECONDS = 0.5
CACHE_FORMAT = "2"

Report = Callable[[str], None]


@dataclass(frozen=True)
class SongEntry:
    mix: Path
    sources: dict[str, Path]
    duration: float


def read_dataset_csv(path: Path, audio_root: Path, instruments: tuple[str, ...], mix_name: str = "mix") -> list[SongEntry]:
    """Rows of a reference dataset CSV (<mix_name>_path, <instrument>_path..., duration), paths under ``audio_root``."""
    _, rows = read_dataset_table(path)
    mix_column = f"{mix_name}_path"
    needed = [mix_column, *(f"{i}_path" for i in instruments), "duration"]
    if rows:
        missing = [c for c in needed if c not in rows[0]]
        if missing:
            raise StemsepError(
                f"{path} lacks the column(s) {', '.join(missing)} that the config's mix_name and instruments need."
            )
    entries = []
    for row in rows:
        try:
            duration = float(row["duration"])
        except ValueError:
            raise StemsepError(f"{path}: duration {row['duration']!r} of {row[mix_column]} is not a number.") from None
        sources = {i: audio_root / row[f"{i}_path"] for i in instruments}
        entries.append(SongEntry(audio_root / row[mix_column], sources, duration))
    if not entries:
        raise StemsepError(f"{path} lists no songs.")
    return entries


def chunk_starts(duration: float, n_chunks: int, seconds: float) -> list[float]:
    """The reference's starts of ``seconds``-long chunks: evenly spaced over the song, 0.5 s from
    its ends, clamped at 0; one chunk is the centre one."""
    if n_chunks == 1:
        return [max((duration - seconds) / 2, 0.0)]
    span = duration - seconds - 2 * CHUNK_MARGIN_SECONDS
    return [max(k * span / (n_chunks - 1) + CHUNK_MARGIN_SECONDS, 0.0) for k in range(n_chunks)]


@dataclass(frozen=True)
class ChunkPlan:
    """Which chunks of each song a set is made of: ``per_song`` chunks of ``seconds``."""

    seconds: float
    per_song: int
    validation: bool = False

    @classmethod
    def for_training(cls, training: TrainingConfig) -> ChunkPlan:
        return cls(training.chunk_duration, training.n_chunks_per_song)

    @classmethod
    def for_validation(cls) -> ChunkPlan:
        return cls(VALIDATION_SECONDS, 1, validation=True)

    def spans(self, duration: float) -> list[tuple[float, float]]:
        """(start, seconds) of each chunk of a song of ``duration`` seconds."""
        return [(start, self.seconds) for start in chunk_starts(duration, self.per_song, self.seconds)]


def magnitude(signal: np.ndarray, cfg: ModelConfig, window: np.ndarray) -> np.ndarray:
    """|STFT| [frames, F, n_channels] float32 of a signal [n, channels] (a mono model's: their
    mean), no padding at either end."""
    signal = to_model_channels(signal, cfg.n_channels)
    frames = 1 + (signal.shape[0] - cfg.frame_length) // cfg.frame_step
    if frames < 1:
        return np.zeros((0, cfg.F, cfg.n_channels), np.float32)
    spectrum = stft_frames(signal, cfg.frame_length, cfg.frame_step, frames, window)[:, :, : cfg.F]
    return np.abs(spectrum).transpose(1, 2, 0)


class SpectrogramSet:
    """Magnitude chunks of the mixture and every instrument, as float16 memmaps [frames, F, n_channels]."""

    def __init__(self, folder: Path, names: tuple[str, ...]) -> None:
        index = json.loads((folder / "index.json").read_text())
        self.offsets = np.asarray(index["offsets"], np.int64)
        self.lengths = np.asarray(index["lengths"], np.int64)
        total = int(self.lengths.sum())
        shape = (total, index["F"], index["channels"])
        self.arrays = {n: np.memmap(folder / f"{n}.f16", np.float16, "r", shape=shape) for n in names}
        self.dropped = index["dropped"]

    def __len__(self) -> int:
        return len(self.offsets)

    def crop(self, name: str, chunk: int, start: int, frames: int) -> np.ndarray:
        begin = self.offsets[chunk] + start
        return np.asarray(self.arrays[name][begin : begin + frames], np.float32)


def build_cache(
    entries: list[SongEntry],
    cfg: ModelConfig,
    cache_root: Path,
    plan: ChunkPlan,
    report: Report,
) -> SpectrogramSet:
    """Decode, transform and store every chunk once; later calls open the stored set."""
    names = ("mix", *cfg.instruments)
    validation = plan.validation
    settings = [cfg.sample_rate, cfg.frame_length, cfg.frame_step, cfg.F, cfg.T, cfg.n_channels]
    key = hashlib.sha256(
        json.dumps(
            [CACHE_FORMAT, validation, plan.per_song, plan.seconds, *settings]
            + [[str(e.mix), {k: str(v) for k, v in e.sources.items()}, e.duration] for e in entries]
        ).encode()
    ).hexdigest()[:20]
    folder = Path(cache_root) / key
    if (folder / "index.json").is_file():
        return SpectrogramSet(folder, names)
    building = folder.with_name(folder.name + ".part")
    building.mkdir(parents=True, exist_ok=True)
    window = periodic_hann(cfg.frame_length)
    handles = {n: open(building / f"{n}.f16", "wb") for n in names}  # noqa: SIM115 (closed below)
    offsets, lengths, dropped = [], [], []
    total = 0
    try:
        for entry in entries:
            for start, seconds in plan.spans(entry.duration):
                label = f"{entry.mix} @ {start:.1f} s"
                try:
                    spectrograms = {
                        name: magnitude(np.concatenate(list(stream_audio(path, cfg.sample_rate, start, seconds))), cfg, window)
                        for name, path in [("mix", entry.mix), *entry.sources.items()]
                    }
                except StemsepError as error:
                    dropped.append(f"{label}: {error}")
                    continue
                frames = min(s.shape[0] for s in spectrograms.values())
                if frames < cfg.T:
                    dropped.append(f"{label}: {frames} frames, fewer than T={cfg.T}")
                    continue
                if not all(np.isfinite(s).all() for s in spectrograms.values()):
                    dropped.append(f"{label}: holds inf or NaN")
                    continue
                if validation:  # the centre T frames
                    first = (frames - cfg.T) // 2
                    spectrograms = {k: v[first : first + cfg.T] for k, v in spectrograms.items()}
                    frames = cfg.T
                for name, spectrogram in spectrograms.items():
                    handles[name].write(np.ascontiguousarray(spectrogram[:frames], np.float16).tobytes())
                offsets.append(total)
                lengths.append(frames)
                total += frames
    finally:
        for handle in handles.values():
            handle.close()
    for line in dropped:
        report(f"dropped chunk {line}")
    if not offsets:
        raise StemsepError(f"No usable {'validation' if validation else 'training'} chunk: every one was dropped.")
    index = {"offsets": offsets, "lengths": lengths, "F": cfg.F, "channels": cfg.n_channels, "dropped": dropped}
    (building / "index.json").write_text(json.dumps(index))
    building.rename(folder)  # complete or absent: a killed build is redone
    return SpectrogramSet(folder, names)


class StepSampler:
    """Batch of step s: ``batch_size`` random chunks, each cropped at a random T-frame window."""

    def __init__(self, data: SpectrogramSet, cfg: ModelConfig, batch_size: int, seed: int) -> None:
        self.data, self.cfg, self.batch_size, self.seed = data, cfg, batch_size, seed

    def batch(self, step: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng([self.seed, step])
        chunks = rng.integers(0, len(self.data), self.batch_size)
        starts = [int(rng.integers(0, self.data.lengths[c] - self.cfg.T + 1)) for c in chunks]
        names = ("mix", *self.cfg.instruments)
        return tuple(np.stack([self.data.crop(n, c, s, self.cfg.T) for c, s in zip(chunks, starts)]) for n in names)


def training_dataset(sampler: StepSampler, first_step: int, last_step: int):
    """tf.data of (mix, (source_1, ...)) batches for steps first_step..last_step-1, prefetched in parallel."""
    import tensorflow as tf

    cfg = sampler.cfg
    shape = (sampler.batch_size, cfg.T, cfg.F, cfg.n_channels)
    count = 1 + len(cfg.instruments)

    def load(step):
        arrays = tf.numpy_function(lambda s: sampler.batch(int(s)), [step], [tf.float32] * count, stateful=False)
        for array in arrays:
            array.set_shape(shape)
        return arrays[0], tuple(arrays[1:])

    steps = tf.data.Dataset.range(first_step, last_step)
    return steps.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def validation_arrays(data: SpectrogramSet, cfg: ModelConfig) -> tuple[np.ndarray, ...]:
    """Every validation chunk's centre T frames: (mix, source_1, ...) arrays [songs, T, F, n_channels]."""
    names = ("mix", *cfg.instruments)
    return tuple(np.stack([data.crop(n, c, 0, cfg.T) for c in range(len(data))]) for n in names)
