"""`stemsep dataset prepare`: MUSDB18 to per-track wav folders and the reference's CSVs.

``.stem.mp4`` tracks are decoded with PyAV (no ffmpeg binary, parallel over
tracks) into ``OUT/<subset>/<track>/{mixture,vocals,drums,bass,other}.wav``;
MUSDB18-HQ folders are used where they are. Every track is checked first
(streams present, one sample rate, stereo, equal lengths, stems that add up
to the mixture): a broken track is reported and skipped, and a track folder
appears only when complete (written aside, then renamed), so a re-run skips
what is done and redoes what was interrupted.

CSVs (paths relative to OUT, as `stemsep train -d OUT` reads them):
``train.csv`` and ``validation.csv`` split MUSDB18's train set with the
official 14 validation tracks, ``test.csv`` lists the test set, and
``--small N`` adds ``*_small.csv`` with the first N tracks of each.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from stemsep.audio.decode import probe
from stemsep.data.synth import write_csv
from stemsep.data.tracks import MIXTURE, MUSDB_SUBSETS, Track, find_tracks
from stemsep.errors import StemsepError, describe

INSTRUMENTS = ("vocals", "drums", "bass", "other")
OFFICIAL_VALIDATION = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)
# Stems must add up to the mixture within this SNR (AAC coding leaves ~20-30 dB on MUSDB18).
MIN_SUM_SNR_DB = 10.0

Report = Callable[[str], None]


@dataclass
class PreparedTrack:
    subset: str
    name: str
    files: dict[str, Path]  # mixture and instruments
    duration: float


@dataclass
class PrepareResult:
    prepared: list[PreparedTrack] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    failed: dict[str, str] = field(default_factory=dict)
    csvs: list[Path] = field(default_factory=list)


def _check(track: Track, sources: dict[str, np.ndarray], rates: set[int]) -> None:
    if len(rates) != 1:
        raise StemsepError(f"its streams have different sample rates ({', '.join(map(str, sorted(rates)))} Hz)")
    lengths = {name: a.shape[0] for name, a in sources.items()}
    if len(set(lengths.values())) != 1:
        raise StemsepError("its streams differ in length (" + ", ".join(f"{k} {v}" for k, v in lengths.items()) + " samples)")
    mixture = sources[MIXTURE].astype(np.float64)
    residual = mixture - np.sum([sources[i] for i in INSTRUMENTS], axis=0, dtype=np.float64)
    snr = 10 * np.log10(np.sum(mixture**2) / max(np.sum(residual**2), 1e-20))
    if snr < MIN_SUM_SNR_DB:
        raise StemsepError(f"its stems do not add up to the mixture ({snr:.1f} dB SNR): mislabeled or misaligned streams?")


def prepare_track(track: Track, output: Path) -> PreparedTrack:
    """Decode, check and write one track (runs in a worker process)."""
    refs = {MIXTURE: track.mixture, **{i: track.stems[i] for i in INSTRUMENTS if i in track.stems}}
    missing = [i for i in INSTRUMENTS if i not in refs]
    if missing:
        raise StemsepError(f"it has no {', '.join(missing)} stem")
    infos = {name: probe(ref.path, ref.stream) for name, ref in refs.items()}
    non_stereo = [n for n, info in infos.items() if info.channels != 2]
    if non_stereo:
        raise StemsepError(f"{', '.join(non_stereo)} is not stereo")
    rates = {info.sample_rate for info in infos.values()}
    rate = infos[MIXTURE].sample_rate
    sources = {name: ref.read(rate) for name, ref in refs.items()}
    _check(track, sources, rates)
    duration = sources[MIXTURE].shape[0] / rate
    if all(ref.path.suffix.lower() == ".wav" and ref.stream == 0 for ref in refs.values()):
        return PreparedTrack(track.subset, track.name, {n: r.path for n, r in refs.items()}, duration)  # HQ: as they are
    folder = output / track.subset / track.name
    partial = folder.with_name(f".{folder.name}.part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, audio in sources.items():
        sf.write(partial / f"{name}.wav", audio, rate, subtype="PCM_16")
    os.replace(partial, folder)
    return PreparedTrack(track.subset, track.name, {n: folder / f"{n}.wav" for n in refs}, duration)


def _done(track: Track, output: Path) -> PreparedTrack | None:
    folder = output / track.subset / track.name
    files = {n: folder / f"{n}.wav" for n in (MIXTURE, *INSTRUMENTS)}
    if not all(f.is_file() for f in files.values()):
        return None
    return PreparedTrack(track.subset, track.name, files, sf.info(files[MIXTURE]).duration)


def prepare(root: Path, output: Path, small: int | None = None, workers: int | None = None, report: Report | None = None):
    say = report or (lambda _: None)
    root, output = Path(root), Path(output)
    tracks: list[Track] = []
    for subset in MUSDB_SUBSETS:
        try:
            tracks += find_tracks(root, subset)
        except StemsepError:
            say(f"No {subset} tracks in {root}.")
    if not tracks:
        raise StemsepError(f"{root} holds no MUSDB18 tracks (train/*.stem.mp4 or train/<track>/mixture.wav).")
    result = PrepareResult()
    todo = []
    for track in tracks:
        done = _done(track, output)
        if done is None:
            todo.append(track)
        else:
            result.prepared.append(done)
            result.skipped.append(track.name)
    if result.skipped:
        say(f"{len(result.skipped)} track(s) already prepared; skipping them.")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    context = multiprocessing.get_context("spawn")
    with (
        Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as progress,
        ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=context) as pool,
    ):
        task = progress.add_task("tracks", total=len(todo))
        futures = {pool.submit(prepare_track, track, output): track for track in todo}
        for future in as_completed(futures):
            track = futures[future]
            try:
                result.prepared.append(future.result())
            except Exception as error:
                label = f"{track.subset}/{track.name}"
                result.failed[label] = describe(error)
                say(f"{label}: skipped: {result.failed[label]}")
            progress.advance(task)
    result.csvs = _write_csvs(result.prepared, output, small, say)
    return result


def _write_csvs(prepared: list[PreparedTrack], output: Path, small: int | None, say: Report) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    train = sorted((t for t in prepared if t.subset == "train"), key=lambda t: t.name)
    test = sorted((t for t in prepared if t.subset == "test"), key=lambda t: t.name)
    official = set(OFFICIAL_VALIDATION)
    if any(t.name in official for t in train):
        validation = [t for t in train if t.name in official]
    else:  # not MUSDB18's own tracks: hold out every 7th (about the official 14 of 100)
        validation = train[6::7] if len(train) >= 7 else train[-1:] if len(train) > 1 else []
        if validation:
            say(f"No official validation track found: holding out {len(validation)} of {len(train)} train tracks.")
    names = {t.name for t in validation}
    splits = {"train": [t for t in train if t.name not in names], "validation": validation, "test": test}
    written = []
    for split, entries in list(splits.items()):
        variants = [(split, entries)] + ([(f"{split}_small", entries[:small])] if small else [])
        for name, rows in variants:
            if not rows:
                continue
            path = output / f"{name}.csv"
            write_csv(path, [_row(t, output) for t in rows], INSTRUMENTS)
            written.append(path)
    return written


def _row(track: PreparedTrack, output: Path) -> dict[str, str]:
    row = {"mix_path": os.path.relpath(track.files[MIXTURE], output)}
    row.update({f"{i}_path": os.path.relpath(track.files[i], output) for i in INSTRUMENTS})
    row["duration"] = f"{track.duration:.6f}"
    return row
