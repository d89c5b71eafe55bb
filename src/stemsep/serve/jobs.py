"""``JobStore``: every job of the service in one SQLite table, each change committed as it happens.

SQLite in WAL mode at ``<data-dir>/jobs.sqlite3``, next to the jobs' folders
``<data-dir>/jobs/<id>/`` (the upload ``upload[.ext]``, the stems in
``stems/``, ``stems.zip`` once asked for). A server killed at any moment
restarts from the table: a job it finds ``running`` was cut short and is
queued again, finished jobs stay downloadable. Job ids are made here
(uuid4 hex) and checked before any path is built from one, so no text from a
request ever becomes part of a path.

One connection serves the request handlers, the event streams and the worker
threads, behind a lock: every statement is short (one row), and each commits
on its own (autocommit), so a state change is on disk before anyone is told.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

from stemsep.errors import StemsepError

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FINISHED = (DONE, FAILED)
SCHEMA_VERSION = 1
_JOB_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Job:
    """One song to separate: what was asked, what became of it."""

    id: str
    model: str  # a preset, e.g. spleeter:2stems
    codec: str
    stems: tuple[str, ...]  # the stems the job writes, in the model's order
    filename: str  # the upload's original name, for display only
    duration: float  # seconds of audio
    upload: str  # the upload's file name inside the job's folder: upload[.ext]
    state: str = QUEUED
    progress: float = 0.0  # 0..1
    error: str | None = None  # one sentence, for a failed job
    created: str = ""  # ISO 8601, UTC
    updated: float = 0.0  # time.time() of the last change: --keep-hours counts from it

    def public(self) -> dict:
        """The job as the API shows it."""
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "error": self.error,
            "stems": list(self.stems),
            "model": self.model,
            "codec": self.codec,
            "filename": self.filename,
            "duration": round(self.duration, 3),
            "created": self.created,
        }


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


_COLUMNS = tuple(f.name for f in fields(Job))


class JobStore:
    """The jobs table and the jobs' folders."""

    def __init__(self, database: Path, jobs_dir: Path) -> None:
        self.jobs_dir = jobs_dir
        self._lock = threading.Lock()
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            jobs_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, codec TEXT NOT NULL, "
                "stems TEXT NOT NULL, filename TEXT NOT NULL, duration REAL NOT NULL, upload TEXT NOT NULL, "
                "state TEXT NOT NULL, progress REAL NOT NULL, error TEXT, created TEXT NOT NULL, updated REAL NOT NULL)"
            )
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as error:
            raise StemsepError(f"Cannot open the job database {database} ({error}).") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- folders ----------------------------------------------------------------

    def folder(self, job_id: str) -> Path:
        """``<jobs>/<id>``, for a well-formed id only."""
        if not is_job_id(job_id):
            raise StemsepError("A job id is 32 hexadecimal digits.")
        return self.jobs_dir / job_id

    # -- reading ----------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        if not is_job_id(job_id):
            return None
        rows = self._query(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def all(self, state: str | None = None) -> list[Job]:
        """Jobs in the order they were made, all or in one state."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return [_job(row) for row in self._query(f"SELECT {', '.join(_COLUMNS)} FROM jobs {where} ORDER BY rowid", args)]

    def count(self, state: str) -> int:
        return self._query("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,))[0][0]

    def expired(self, before: float) -> list[Job]:
        """Finished or failed jobs last changed before ``before`` (a time.time())."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE state IN (?, ?) AND updated < ? ORDER BY rowid"
        return [_job(row) for row in self._query(query, (*FINISHED, before))]

    # -- changing ---------------------------------------------------------------

    def add(self, job: Job) -> Job:
        job = replace(job, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), updated=time.time())
        row = asdict(job) | {"stems": ",".join(job.stems)}
        self._query(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", tuple(row.values()))
        return job

    def start(self, job_id: str) -> Job | None:
        """queued -> running; None if the job is gone or not queued."""
        changed = self._change(job_id, "state = ?, progress = 0, error = NULL", (RUNNING,), f"state = '{QUEUED}'")
        return self.get(job_id) if changed else None

    def set_progress(self, job_id: str, progress: float) -> None:
        self._change(job_id, "progress = ?", (progress,), f"state = '{RUNNING}'")

    def finish(self, job_id: str, error: str | None = None) -> None:
        """running -> done (progress 1), or failed with its sentence."""
        if error is None:
            self._change(job_id, "state = ?, progress = 1, error = NULL", (DONE,))
        else:
            self._change(job_id, "state = ?, error = ?", (FAILED, error))

    def requeue(self, job_id: str) -> None:
        """A running job back to the queue, to start again from the beginning."""
        self._change(job_id, "state = ?, progress = 0", (QUEUED,), f"state = '{RUNNING}'")

    def requeue_interrupted(self) -> list[Job]:
        """Every job left running (by a server that was stopped or killed) queued again."""
        interrupted = self.all(RUNNING)
        for job in interrupted:
            self.requeue(job.id)
        return interrupted

    def delete(self, job_id: str) -> bool:
        return self._query("DELETE FROM jobs WHERE id = ?", (job_id,), count=True) > 0

    # -- SQL ----------------------------------------------------------------------

    def _change(self, job_id: str, assignments: str, args: tuple, condition: str = "1") -> bool:
        query = f"UPDATE jobs SET {assignments}, updated = ? WHERE id = ? AND {condition}"
        return self._query(query, (*args, time.time(), job_id), count=True) > 0

    def _query(self, query: str, args: tuple = (), count: bool = False):
        with self._lock:
            cursor = self._db.execute(query, args)
            return cursor.rowcount if count else cursor.fetchall()


def _job(row: tuple) -> Job:
    values = dict(zip(_COLUMNS, row))
    values["stems"] = tuple(values["stems"].split(",")) if values["stems"] else ()
    return Job(**values)
