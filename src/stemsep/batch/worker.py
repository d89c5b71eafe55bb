"""``SeparatorWorker``: the Ray actor that holds one ``Separator`` (its model loaded once) and separates songs.

The actor decides nothing about separation: it calls
``Separator.separate_to_file`` with the ``OutputOptions`` value the CLI
built, and answers with an ``Outcome`` value (never an exception), so the
driver tells a song's failure (one sentence, recorded) from a worker's death
(the song is redone elsewhere). Stems are written atomically by stemsep's
writers: a worker killed mid-song leaves hidden ``.partial`` files and no
stem; the redo removes what the interrupted attempt left before it starts.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import ray

from stemsep.audio.encode import PARTIAL_SUFFIX
from stemsep.errors import StemsepError, describe
from stemsep.separate import OutputOptions, Separator
from stemsep.separate.batch import plan_outputs

CLOCK_SLACK_S = 2.0  # file times on shared storage vs the driver's clock


@dataclass(frozen=True)
class ModelChoice:
    """What each worker loads: ``Separator``'s arguments, paths absolute (workers run elsewhere)."""

    params: str = "spleeter:2stems"
    mwf: bool = False
    model_dir: Path | None = None
    backend: str = "onnx"
    quantization: str | None = None

    def load(self) -> Separator:
        return Separator(self.params, self.mwf, self.model_dir, backend=self.backend, quantization=self.quantization)


@dataclass(frozen=True)
class Job:
    """One song to separate; ``redo_since``: the start of an interrupted attempt whose leftovers go first."""

    song: Path
    destination: Path
    output: OutputOptions
    timeout_s: float | None = None
    planned: tuple[Path, ...] = ()
    redo_since: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a job on a worker: done (with notes, or skipped: its stems existed) or failed."""

    song: Path
    node: str
    seconds: float
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    skipped: bool = False


class SeparatorWorker:
    """One model per actor; ``ready`` reports where it runs and whether its model loaded."""

    def __init__(self, model: ModelChoice) -> None:
        self.node = ray.util.get_node_ip_address()
        self.problem: str | None = None
        try:
            self.separator = model.load()
        except Exception as error:  # answered by ready(): the driver reports it in one sentence
            self.problem = describe(error)

    def ready(self) -> tuple[str, str | None]:
        return self.node, self.problem

    def plan(self, songs: list[Path], destination: Path, output: OutputOptions) -> dict[Path, dict[str, Path]] | str:
        """Every song's stem paths, or the sentence refusing two songs that would write the same file."""
        try:
            return plan_outputs(self.separator, songs, destination, output)
        except StemsepError as error:
            return str(error)

    def separate(self, job: Job) -> Outcome:
        started = time.perf_counter()
        try:
            if job.redo_since is not None:
                clear_attempt(job.planned, job.redo_since)
            result = self.separator.separate_to_file(
                job.song, job.destination, job.output, progress=_deadline(job.song, job.timeout_s, started)
            )
        except Exception as error:
            reason = describe(error) if isinstance(error, StemsepError) else f"unexpected {describe(error)}"
            return Outcome(job.song, self.node, time.perf_counter() - started, reason)
        return Outcome(job.song, self.node, time.perf_counter() - started, notes=tuple(result.notes), skipped=result.skipped)


def timeout_sentence(song: Path, timeout_s: float) -> str:
    return f"{song} took longer than --timeout-s {timeout_s:g} s."


def _deadline(song: Path, timeout_s: float | None, started: float):
    """A progress callback that stops the separation (its writers abort) once ``timeout_s`` has passed."""
    if not timeout_s:
        return None

    def check(_seconds_done: float) -> None:
        if time.perf_counter() - started > timeout_s:
            raise StemsepError(timeout_sentence(song, timeout_s))

    return check


def clear_attempt(planned: Iterable[Path], since: float) -> None:
    """Remove what an interrupted attempt left: its ``.partial`` files, and stems it committed after ``since``."""
    for path in planned:
        for leftover in path.parent.glob(f".{glob.escape(path.name)}.*{PARTIAL_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        try:
            if path.stat().st_mtime >= since - CLOCK_SLACK_S:
                path.unlink()
        except FileNotFoundError:
            pass


RemoteWorker = ray.remote(SeparatorWorker)
