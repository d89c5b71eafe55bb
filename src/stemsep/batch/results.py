"""The results table, ``OUTPUT/batch.sqlite3``: what a batch did to each song, so a re-run resumes it.

One row per song: its state, planned output paths, duration, seconds taken,
the node that separated it and, if it failed, the one-sentence reason.
States: ``pending`` (not tried, or to redo), ``running`` (sent to a worker,
no answer yet: an attempt a crash interrupted, redone on the next run),
``done`` and ``failed`` (retried only with ``--retry-failed``).

Only the driver writes it, one short transaction per song (a worker answers
the driver, never the table), so the file may sit on shared storage.
The options the batch writes with are kept in it: a re-run with other
options is refused rather than mixing two formats in one folder.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stemsep.errors import StemsepError

TABLE_NAME = "batch.sqlite3"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'pending',
    duration_s REAL,
    outputs TEXT,
    seconds REAL,
    node TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    run INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "path, state, duration_s, outputs, seconds, node, error, attempts, started_at, run"


@dataclass
class Row:
    """One song's line of the table."""

    path: Path
    state: str = PENDING
    duration_s: float | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float | None = None
    node: str | None = None
    error: str | None = None
    attempts: int = 0
    started_at: float | None = None  # when the last attempt was sent (time.time())
    run: int | None = None


class ResultsTable:
    """``OUTPUT/batch.sqlite3``, opened (or created) by the driver."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StemsepError(f"Cannot open the results table {self.path} ({error}).") from None

    def close(self) -> None:
        self._db.close()

    # -- the batch as a whole -------------------------------------------------

    def check_options(self, options: dict) -> None:
        """Keep the options on first use; refuse a re-run that would write differently."""
        text = json.dumps(options, sort_keys=True)
        found = self._db.execute("SELECT value FROM meta WHERE key = 'options'").fetchone()
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('options', ?)", (text,))
            return
        before = json.loads(found[0])
        changed = sorted(key for key in set(before) | set(options) if before.get(key) != options.get(key))
        if changed:
            was = ", ".join(f"{key}={before.get(key)!r}" for key in changed)
            raise StemsepError(
                f"{self.path} records a batch written with other options ({was}); "
                "give the same options to resume it, or another output folder."
            )

    def new_run(self) -> int:
        """The number of this invocation (1, 2...): rows it finishes carry it."""
        found = self._db.execute("SELECT value FROM meta WHERE key = 'runs'").fetchone()
        run = int(found[0]) + 1 if found else 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('runs', ?)", (str(run),))
        return run

    def add(self, songs: Iterable[Path]) -> None:
        """New songs become pending; songs already in the table keep their row."""
        self._many("INSERT OR IGNORE INTO files (path) VALUES (?)", ((str(song),) for song in songs))

    def rows(self, songs: Iterable[Path] | None = None) -> list[Row]:
        """The rows of ``songs`` in their order (every row if None)."""
        found = {row.path: row for row in map(_row, self._db.execute(f"SELECT {_COLUMNS} FROM files"))}
        return list(found.values()) if songs is None else [found[Path(song)] for song in songs if Path(song) in found]

    # -- one song -------------------------------------------------------------

    def plan(self, planned: dict[Path, dict[str, Path]]) -> None:
        """Each song's stem paths (stem -> path), in one transaction."""
        rows = ((json.dumps({name: str(path) for name, path in outputs.items()}), str(song)) for song, outputs in planned.items())
        self._many("UPDATE files SET outputs = ? WHERE path = ?", rows)

    def set_durations(self, durations: dict[Path, float]) -> None:
        self._many("UPDATE files SET duration_s = ? WHERE path = ?", ((d, str(song)) for song, d in durations.items()))

    def start(self, song: Path) -> float:
        """An attempt is sent to a worker: running, one more attempt; returns its start time."""
        now = time.time()
        self._db.execute(
            "UPDATE files SET state = ?, attempts = attempts + 1, started_at = ? WHERE path = ?", (RUNNING, now, str(song))
        )
        return now

    def requeue(self, song: Path, reason: str) -> None:
        """The attempt was lost with its worker: pending again, the reason kept until it is redone."""
        self._set(song, state=PENDING, error=reason)

    def finish_done(self, song: Path, seconds: float, node: str, run: int) -> None:
        self._set(song, state=DONE, seconds=seconds, node=node, error=None, finished_at=time.time(), run=run)

    def finish_failed(self, song: Path, error: str, node: str | None, run: int, seconds: float | None = None) -> None:
        self._set(song, state=FAILED, seconds=seconds, node=node, error=error, finished_at=time.time(), run=run)

    def _many(self, statement: str, rows: Iterable[tuple]) -> None:
        """One transaction for many rows: a catalogue's 100,000 songs are not 100,000 commits."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(statement, rows)

    def _set(self, song: Path, **values) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(f"UPDATE files SET {assignments} WHERE path = ?", (*values.values(), str(song)))


def _row(values: tuple) -> Row:
    path, state, duration_s, outputs, seconds, node, error, attempts, started_at, run = values
    planned = {name: Path(p) for name, p in json.loads(outputs).items()} if outputs else {}
    return Row(Path(path), state, duration_s, planned, seconds, node, error, attempts, started_at, run)
