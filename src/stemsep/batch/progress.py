"""How far a batch is: files done, hours of audio done, x real time and the time left.

``Tally`` counts (the driver updates it as workers answer); ``LiveProgress``
draws it as a rich progress bar on a terminal, ``LineProgress`` writes one
line per song for logs (a cluster job's output is rarely a terminal).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text


@dataclass
class Tally:
    """This run's counts; audio seconds from the probed durations."""

    files: int = 0
    audio_s: float = 0.0
    done: int = 0
    failed: int = 0
    audio_done_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def realtime(self) -> float:
        """Seconds of audio separated per second of the run, all workers together."""
        elapsed = time.perf_counter() - self.started
        return self.audio_done_s / elapsed if elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.realtime
        return (self.audio_s - self.audio_done_s) / rate if rate > 0 else None

    def count(self, duration_s: float | None, ok: bool) -> None:
        self.done += ok
        self.failed += not ok
        self.audio_done_s += duration_s or 0.0


class BatchProgress(Protocol):
    def start(self, tally: Tally) -> None: ...
    def update(self, tally: Tally, line: str) -> None: ...
    def note(self, line: str) -> None: ...
    def stop(self) -> None: ...


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status(tally: Tally) -> str:
    """files 7/12 (1 failed) | 0.02/0.03 h audio | 9.1x real time | 0:00:03 left"""
    failed = f" ({tally.failed} failed)" if tally.failed else ""
    hours = f"{tally.audio_done_s / 3600:.2f}/{tally.audio_s / 3600:.2f} h audio"
    speed = f"{tally.realtime:.1f}x real time"
    return f"files {tally.finished}/{tally.files}{failed} | {hours} | {speed} | {_clock(tally.seconds_left)} left"


class _TallyColumn(ProgressColumn):
    def __init__(self, tally: Callable[[], Tally]) -> None:
        super().__init__()
        self.tally = tally

    def render(self, task: Task) -> Text:
        return Text(status(self.tally()))


class LiveProgress:
    """A rich bar on stderr, advanced by audio seconds (a long song counts for what it is)."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            _TallyColumn(lambda: self.tally),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = None

    def start(self, tally: Tally) -> None:
        self.tally = tally
        self.task = self.progress.add_task("separating", total=max(tally.audio_s, 1e-9))
        self.progress.start()

    def update(self, tally: Tally, line: str) -> None:
        self.progress.update(self.task, completed=tally.audio_done_s)

    def note(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, markup=False)

    def stop(self) -> None:
        self.progress.stop()


class LineProgress:
    """One line per song and the running status, for logs."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def start(self, tally: Tally) -> None:
        self.write(f"{tally.files} song(s), {tally.audio_s / 3600:.2f} h of audio to separate")

    def update(self, tally: Tally, line: str) -> None:
        self.write(f"{line}  [{status(tally)}]")

    def note(self, line: str) -> None:
        self.write(line)

    def stop(self) -> None:
        pass
