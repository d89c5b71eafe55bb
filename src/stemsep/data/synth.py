"""A synthetic MUSDB18-shaped dataset: short seeded tracks whose stems a U-Net can learn.

Each source has its own spectrum and rhythm, so separation is learnable in
minutes on a CPU, yet every stem overlaps the others somewhere:

- drums: kick (a 120 -> 45 Hz pitch drop) on beats 1 and 3, a noise snare on
  2 and 4, short high-passed noise hi-hats on eighths;
- bass: a harmonic line of 40-110 Hz notes, one per beat;
- other: sustained three-note chord pads (200-1000 Hz), two detuned
  oscillators per note, slow attack, one chord per bar;
- vocals: a pitched voice-like source (150-500 Hz, vibrato, vowel formants)
  singing phrases separated by rests.

Layouts: ``wav`` (MUSDB18-HQ folders plus the reference's train/validation
CSVs, ready for `stemsep train`) or ``stem`` (MUSDB18's ``.stem.mp4`` files,
for `stemsep dataset prepare`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from stemsep.data.stem_mp4 import write_stem_mp4
from stemsep.data.tracks import MUSDB_STREAMS
from stemsep.errors import StemsepError
from stemsep.files import write_text_atomically

RATE = 44100
SOURCES = ("vocals", "drums", "bass", "other")
LEVELS_DB = {"vocals": -20.0, "drums": -21.0, "bass": -22.0, "other": -24.0}  # RMS, dBFS
LAYOUTS = ("wav", "stem")
VOWEL_FORMANTS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def _envelope(n: int, attack: int, decay_rate: float) -> np.ndarray:
    i = np.arange(n)
    return np.minimum(i / max(attack, 1), 1.0) * np.exp(-decay_rate * i / RATE)


def _harmonic(f0: np.ndarray, amplitudes: np.ndarray, phase0: float = 0.0) -> np.ndarray:
    """Sum of harmonics of an instantaneous frequency track, silent above Nyquist."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE + phase0
    out = np.zeros_like(f0)
    for k, amplitude in enumerate(amplitudes, start=1):
        out += amplitude * np.sin(k * phase) * (k * f0 < RATE / 2 - 1000)
    return out


def _drums(rng: np.random.Generator, n: int, beat: int) -> np.ndarray:
    out = np.zeros(n)
    for start in range(0, n, beat):
        index = start // beat
        length = min(beat, n - start)
        t = np.arange(length) / RATE
        if index % 2 == 0:  # kick
            f = 45 + 75 * np.exp(-t / 0.03)
            out[start : start + length] += 0.9 * np.sin(2 * np.pi * np.cumsum(f) / RATE) * np.exp(-t / 0.12)
        else:  # snare: noise and a 190 Hz body
            noise = rng.standard_normal(length)
            out[start : start + length] += (0.5 * noise + 0.4 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t / 0.07)
        for half in (0, beat // 2):  # hi-hats, high-passed by a first difference
            s = start + half
            if s >= n:
                continue
            m = min(int(0.05 * RATE), n - s)
            hat = np.diff(rng.standard_normal(m + 1)) * np.exp(-np.arange(m) / (0.012 * RATE))
            out[s : s + m] += 0.25 * hat
    return out


def _bass(rng: np.random.Generator, n: int, beat: int) -> np.ndarray:
    root = rng.uniform(40, 70)
    f0 = np.zeros(n)
    gate = np.zeros(n)
    for start in range(0, n, beat):
        length = min(beat, n - start)
        f0[start : start + length] = root * 2 ** (rng.choice([0, 3, 5, 7, 10, 12]) / 12)
        gate[start : start + length] = _envelope(length, int(0.005 * RATE), 3.0)
    return _harmonic(f0, 1.0 / np.arange(1, 7)) * gate


def _pads(rng: np.random.Generator, n: int, bar: int) -> np.ndarray:
    out = np.zeros(n)
    for start in range(0, n, bar):
        length = min(bar, n - start)
        base = rng.uniform(200, 400)
        envelope = _envelope(length, int(0.25 * RATE), 0.3)
        for interval in (0, rng.choice([3, 4]), 7):
            f = base * 2 ** (interval / 12)
            for detune in (0.997, 1.003):
                out[start : start + length] += envelope * _harmonic(
                    np.full(length, f * detune), [1.0, 0.3, 0.1], rng.uniform(0, 6)
                )
    return out


def _voice(rng: np.random.Generator, n: int, beat: int) -> np.ndarray:
    f0 = np.zeros(n)
    gate = np.zeros(n)
    formants = np.zeros((n, 3))
    position = 0
    while position < n:
        length = min(int(beat * rng.choice([0.5, 1.0, 1.5])), n - position)
        if rng.random() > 0.3:  # a sung note; else a rest
            f0[position : position + length] = rng.uniform(150, 500)
            gate[position : position + length] = _envelope(length, int(0.03 * RATE), 1.5)
            formants[position : position + length] = VOWEL_FORMANTS[rng.integers(len(VOWEL_FORMANTS))]
        position += length
    t = np.arange(n) / RATE
    f0 = np.where(f0 > 0, f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)), 100.0)
    out = np.zeros(n)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    for k in range(1, 25):
        frequency = k * f0
        # Vowel colour: each harmonic weighted by its distance to the formants.
        weight = sum(np.exp(-(((frequency - formants[:, j]) / 120.0) ** 2)) for j in range(3)) + 0.05
        out += weight * np.sin(k * phase) * (frequency < RATE / 2 - 1000) / k**0.5
    return out * gate


GENERATORS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "drums": _drums,
    "bass": _bass,
    "vocals": _voice,
}


def synth_track(seed: int, seconds: float) -> dict[str, np.ndarray]:
    """Stereo float32 stems [n, 2] at 44.1 kHz, and their sum as ``mixture``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    beat = int(RATE * 60 / rng.uniform(90, 130))
    stems = {}
    for name in SOURCES:
        mono = _pads(rng, n, 4 * beat) if name == "other" else GENERATORS[name](rng, n, beat)
        rms = np.sqrt(np.mean(mono**2)) or 1.0
        mono = mono / rms * 10 ** (LEVELS_DB[name] / 20)
        pan = rng.uniform(0.3, 0.7) if name != "vocals" else 0.5
        stems[name] = np.stack([mono * np.sqrt(1 - pan), mono * np.sqrt(pan)], axis=1)
    peak = np.max(np.abs(np.sum(list(stems.values()), axis=0)))
    scale = min(1.0, 0.95 / peak)
    stems = {k: (v * scale).astype(np.float32) for k, v in stems.items()}
    stems["mixture"] = np.sum([stems[s] for s in SOURCES], axis=0).astype(np.float32)
    return stems


def write_synthetic_dataset(
    output: Path,
    train: int = 8,
    test: int = 3,
    validation: int = 2,
    seconds: float = 12.0,
    seed: int = 0,
    layout: str = "wav",
) -> list[Path]:
    """Write the dataset; returns the track files or folders written."""
    if layout not in LAYOUTS:
        raise StemsepError(f"Unknown layout {layout!r}: use {' or '.join(LAYOUTS)}.")
    if min(train, test) < 1 or validation < 0 or validation >= train:
        raise StemsepError("Need at least one train and one test track, and fewer validation than train tracks.")
    output = Path(output)
    written = []
    rows: dict[str, list[dict[str, str]]] = {"train": [], "validation": []}
    names = [("train", f"Synth - Train {i:03d}", 1000 * seed + i) for i in range(train)]
    names += [("test", f"Synth - Test {i:03d}", 1000 * seed + 500 + i) for i in range(test)]
    for subset, name, track_seed in names:
        stems = synth_track(track_seed, seconds)
        (output / subset).mkdir(parents=True, exist_ok=True)
        if layout == "stem":
            path = output / subset / f"{name}.stem.mp4"
            write_stem_mp4(path, [stems[s] for s in MUSDB_STREAMS], RATE)
            written.append(path)
            continue
        folder = output / subset / name
        folder.mkdir(exist_ok=True)
        for stem, audio in stems.items():
            sf.write(folder / f"{stem}.wav", audio, RATE, subtype="PCM_16")
        written.append(folder)
        if subset == "train":
            split = "validation" if len(rows["train"]) + len(rows["validation"]) >= train - validation else "train"
            relative = folder.relative_to(output).as_posix()
            row = {"mix_path": f"{relative}/mixture.wav"}
            row.update({f"{s}_path": f"{relative}/{s}.wav" for s in SOURCES})
            row["duration"] = f"{stems['mixture'].shape[0] / RATE:.6f}"
            rows[split].append(row)
    if layout == "wav":
        for split, entries in rows.items():
            write_csv(output / f"{split}.csv", entries, SOURCES)
    return written


def write_csv(path: Path, rows: list[dict[str, str]], instruments: tuple[str, ...] | list[str]) -> None:
    """The reference's dataset CSV: mix_path, <instrument>_path..., duration."""
    columns = ["mix_path", *(f"{i}_path" for i in instruments), "duration"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, text.getvalue())


def write_training_config(dataset: Path, name: str = "synth_4stems.json") -> Path:
    """A 4stems training config sized for the synthetic data (small T and F: minutes on a CPU).

    Dataset paths are absolute; ``model_dir`` is relative to where `stemsep train` runs, as in the reference.
    """
    import json

    dataset = Path(dataset).resolve()
    config = {
        "train_csv": str(dataset / "train.csv"),
        "validation_csv": str(dataset / "validation.csv"),
        "model_dir": "synth_4stems",
        "mix_name": "mix",
        "instrument_list": list(SOURCES),
        "sample_rate": RATE,
        "frame_length": 2048,
        "frame_step": 512,
        "T": 64,
        "F": 512,
        "n_channels": 2,
        "separation_exponent": 2,
        "mask_extension": "zeros",
        "n_chunks_per_song": 1,
        "learning_rate": 1e-3,
        "batch_size": 4,
        "training_cache": str(dataset / "cache" / "training"),
        "validation_cache": str(dataset / "cache" / "validation"),
        "train_max_steps": 600,
        "throttle_secs": 60,
        "random_seed": 3,
        "save_checkpoints_steps": 100,
        "save_summary_steps": 25,
        "loss": "l1",
        "model": {"type": "unet.unet", "params": {"conv_activation": "ELU", "deconv_activation": "ELU"}},
    }
    path = dataset / name
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path
