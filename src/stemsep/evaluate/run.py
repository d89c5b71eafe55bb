"""`stemsep evaluate`: separate every track of a dataset and score it with museval.

The model runs in this process, one track at a time (TensorFlow uses every
core); BSSEval, which costs far more than the separation, runs in ``workers``
spawned processes, so scoring of track k overlaps separation of track k+1.
At most ``workers`` tracks wait to be scored, which bounds memory. Each
track's JSON is written when it is scored, so an interrupted run loses
nothing and a re-run scores only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemsep.data.tracks import Track, find_tracks
from stemsep.errors import StemsepError, describe
from stemsep.evaluate.aggregate import RUN_FILE, load_run, write_reports
from stemsep.evaluate.score import ScoreJob, is_complete, score_and_save
from stemsep.files import write_text_atomically

Report = Callable[[str], None]


@dataclass
class EvaluationResult:
    output: Path
    scored: dict[str, dict[str, float]] = field(default_factory=dict)  # track -> instrument -> median SDR
    skipped: list[str] = field(default_factory=list)  # scored by an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # track -> reason
    unscored_instruments: list[str] = field(default_factory=list)  # no reference stem in the dataset
    reports: dict[str, Path] = field(default_factory=dict)


# museval's BSSEval v4 peaks at ~28 MB per second of a four-stem track (measured: 1.5 GB for 30 s,
# 2.3 GB for 60 s), about 7 GB for a 4-minute MUSDB18 song.
MEMORY_PER_WORKER = 8 * 1024**3


def default_workers() -> int:
    """One per core, but no more than the memory holds."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return cores
    return max(1, min(cores, memory // MEMORY_PER_WORKER))


def evaluate(
    model: str,
    mus_dir: Path,
    output: Path,
    subset: str = "test",
    backend: str = "onnx",
    mwf: bool = False,
    workers: int | None = None,
    quantization: str | None = None,
    model_dir: Path | None = None,
    report: Report | None = None,
    separator=None,
) -> EvaluationResult:
    """Separate and score every track of ``subset``; returns what was scored, skipped and failed.

    ``separator`` may be given to reuse a loaded model made with the same settings.
    """
    workers = workers or default_workers()
    if workers < 1:
        raise StemsepError("--workers must be at least 1.")
    tracks = find_tracks(Path(mus_dir), subset)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise StemsepError(f"{output} exists and is not a folder.")
    result = EvaluationResult(output)
    say = report or (lambda _: None)
    with _writing_into(output):
        _write_run_file(output, model, backend, quantization, mwf, subset, Path(mus_dir))
    todo = []
    for track in tracks:
        if is_complete(_score_path(output, track)):
            result.skipped.append(track.name)
        else:
            todo.append(track)
    if result.skipped:
        say(f"{len(result.skipped)} track(s) already scored in {output}; skipping them.")

    if todo:
        if separator is None:
            from stemsep.separate import Separator

            separator = Separator(model, mwf=mwf, model_dir=model_dir, backend=backend, quantization=quantization)
        result.unscored_instruments = [i for i in separator.instruments if not any(t.has_reference(i) for t in tracks)]
        if result.unscored_instruments:
            say(f"No reference stems for {', '.join(result.unscored_instruments)} in {mus_dir}: not scored.")
        _separate_and_score(separator, todo, output, workers, result, say)

    if result.scored or result.skipped:
        with _writing_into(output):
            result.reports = write_reports(load_run(output, leave_out=result.failed))  # a failed track's file is older
    return result


@contextlib.contextmanager
def _writing_into(output: Path) -> Iterator[None]:
    """An unwritable output folder (a full disk, no permission, a file on the way) in one sentence."""
    try:
        yield
    except OSError as error:
        raise StemsepError(f"Cannot write the evaluation to {output} ({(error.strerror or str(error)).lower()}).") from None


def _score_path(output: Path, track: Track) -> Path:
    return output / track.subset / f"{track.name}.json"


def _write_run_file(output: Path, model: str, backend: str, quantization: str | None, mwf: bool, subset: str, mus_dir: Path):
    from stemsep import __version__

    name = Path(model).name if Path(model).exists() else model
    label = " ".join(filter(None, [name, backend if backend != "onnx" else None, quantization, "mwf" if mwf else None]))
    settings = {
        "label": label,
        "model": model,
        "backend": backend,
        "quantization": quantization,
        "mwf": mwf,
        "subset": subset,
        "mus_dir": str(mus_dir),
        "stemsep": __version__,
    }
    existing = output / RUN_FILE
    if existing.exists():
        try:
            previous = json.loads(existing.read_text())
        except ValueError:
            previous = {}
        differing = [k for k in ("model", "backend", "quantization", "mwf", "subset") if previous.get(k) != settings[k]]
        if differing:
            raise StemsepError(
                f"{output} holds scores of another run ({', '.join(f'{k}={previous.get(k)!r}' for k in differing)}); "
                "choose another output folder."
            )
    write_text_atomically(existing, json.dumps(settings, indent=2) + "\n")


def _separate_and_score(separator, tracks: list[Track], output: Path, workers: int, result: EvaluationResult, say: Report):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    rate = separator.config.sample_rate
    pending: dict[Future, str] = {}

    def collect(block: bool) -> None:
        done, _ = wait(pending, return_when=FIRST_COMPLETED) if block else ([f for f in pending if f.done()], None)
        for future in done:
            name = pending.pop(future)
            try:
                medians = future.result()
            except Exception as error:  # a worker's failure is this track's, not the run's
                result.failed[name] = describe(error)
                say(f"{name}: scoring failed: {result.failed[name]}")
            else:
                result.scored[name] = medians
                say(f"{name}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in medians.items()))
            progress.advance(task)

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    context = multiprocessing.get_context("spawn")  # never fork a process that has TensorFlow's threads
    with (
        Progress(*columns, transient=True, disable=not _interactive()) as progress,
        ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
    ):
        task = progress.add_task("tracks", total=len(tracks))
        for track in tracks:
            try:
                job = _separate(separator, track, rate, _score_path(output, track))
            except Exception as error:
                result.failed[track.name] = describe(error)
                say(f"{track.name}: failed: {result.failed[track.name]}")
                progress.advance(task)
                continue
            pending[pool.submit(score_and_save, job)] = track.name
            while len(pending) >= workers:
                collect(block=True)
            collect(block=False)
        while pending:
            collect(block=True)


def _separate(separator, track: Track, rate: int, destination: Path) -> ScoreJob:
    instruments = [i for i in separator.instruments if track.has_reference(i)]
    if not instruments:
        raise StemsepError(f"no reference stem for any of {', '.join(separator.instruments)}")
    mixture = track.mixture.read(rate)
    # A stem shorter than the mixture would silently score only its length: refused instead.
    references = {name: track.reference(name, rate, length=mixture.shape[0]) for name in instruments}
    length = min([mixture.shape[0], *(r.shape[0] for r in references.values())])
    estimates = separator.separate(mixture[:length], rate)
    return ScoreJob(
        track=track.name,
        subset=track.subset,
        sample_rate=rate,
        references={k: v[:length] for k, v in references.items()},
        estimates={k: np.asarray(v[:length]) for k, v in estimates.items() if k in references},
        destination=destination,
    )


def _interactive() -> bool:
    import sys

    return sys.stderr.isatty()
