"""``WorkerPool``: the bounded queue and the N threads of the server process that run the jobs.

Threads, not processes: ONNX Runtime releases the GIL while the U-Net runs,
and decoding, STFTs and encoders spend their time in C as well. Each thread
keeps its own ``Separator`` per model (loading one takes 0.3-1.7 s), so a
model loads once per worker and serves every later job. A job is a thin call
of the library: ``Separator.separate_to_file`` with the ``OutputOptions`` the
CLI would build. Its progress callback reports how far it is, and is where a
job is stopped, when it was deleted or the server is stopping: the callback
raises, the stem writers abort, no partial file is left.

The queue holds at most --queue-size jobs waiting (running ones not
counted): admission counts the queued jobs in the store under the pool's
lock, so two uploads cannot both take the last place. At start-up the pool
takes over what the last server left: jobs it was running are queued again
(their outputs removed: they start from the beginning), folders without a
job (an upload cut short by a kill) are removed, expired jobs too.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from stemsep.errors import StemsepError
from stemsep.separate import Separator
from stemsep.serve.admission import output_options
from stemsep.serve.jobs import QUEUED, Job, JobStore, is_job_id
from stemsep.serve.settings import ServeSettings

log = logging.getLogger("stemsep.serve")

MODELS_PER_WORKER = 2  # ~100-200 MB each: a worker keeps the two it used last
PROGRESS_INTERVAL_S = 0.25  # progress is stored at most this often (event streams read it ~4/s)
INITIAL_PACE = 0.25  # wall seconds per second of song before a job has finished (2stems, 2 cores: ~0.2)
STOP_TIMEOUT_S = 30.0
DELETED, STOPPING = "deleted", "stopping"
STEMS, ZIP = "stems", "stems.zip"  # a job's outputs, in its folder


class JobCancelledError(Exception):
    """Raised by a job's progress callback: the job was deleted, or the server is stopping."""


class QueueFullError(StemsepError):
    """No room in the queue; ``retry_after`` estimates the seconds until there is."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Running:
    duration: float
    progress: float = 0.0
    reported: float = 0.0  # time.monotonic() of the last stored progress
    cancel: str | None = None  # DELETED or STOPPING


class WorkerPool:
    """Jobs in, separated stems out, at most ``settings.workers`` at a time."""

    def __init__(self, store: JobStore, settings: ServeSettings) -> None:
        self.store, self.settings = store, settings
        self._lock = threading.Lock()  # admission, start, cancel and finish see each other whole
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._running: dict[str, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._pace = INITIAL_PACE

    # -- life -------------------------------------------------------------------

    def start(self) -> None:
        """Recover what the last server left, then start the threads."""
        for job in self.store.requeue_interrupted():
            log.info("job %s was interrupted: it starts again", job.id)
        self._remove_strays()
        self.remove_expired()
        for job in self.store.all(QUEUED):
            _remove_outputs(self.store.folder(job.id))
            self._queue.put(job.id)
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"stemsep-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the running jobs (queued again, for the next start) and the threads; whether all ended."""
        with self._lock:
            self._stopping = True
            for running in self._running.values():
                running.cancel = STOPPING
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in self._threads)

    # -- requests ---------------------------------------------------------------

    def check_room(self) -> None:
        """Raise ``QueueFullError`` when the queue has no room (before an upload is read)."""
        with self._lock:
            self._check_room()

    def submit(self, job: Job) -> Job:
        """Store ``job`` and queue it, or raise ``QueueFullError`` (nothing stored)."""
        with self._lock:
            self._check_room()
            job = self.store.add(job)
        self._queue.put(job.id)
        return job

    def delete(self, job_id: str) -> bool:
        """Remove a job and its files; a running one is stopped at its next progress report."""
        with self._lock:
            if self.store.get(job_id) is None or not self.store.delete(job_id):
                return False
            running = self._running.get(job_id)
            if running is not None:
                running.cancel = DELETED  # its worker removes the folder once the writers have let go
        if running is None:
            shutil.rmtree(self.store.folder(job_id), ignore_errors=True)
        return True

    def remove_expired(self) -> int:
        """Remove the finished and failed jobs older than --keep-hours; how many."""
        before = time.time() - self.settings.keep_hours * 3600
        return sum(self.delete(job.id) for job in self.store.expired(before))

    def counts(self) -> dict[str, int]:
        """Jobs waiting, workers busy (a deleted job counts until its worker has let go of it), workers."""
        with self._lock:
            busy = len(self._running)
        return {"queued": self.store.count(QUEUED), "running": busy, "workers": self.settings.workers}

    def _check_room(self) -> None:
        waiting = self.store.count(QUEUED)
        if waiting >= self.settings.queue_size or self._stopping:
            raise QueueFullError(f"The queue is full ({waiting} songs are waiting); try again later.", self._retry_after())

    def _retry_after(self) -> int:
        """Seconds until the first running job should finish (and a queued one start)."""
        left = [(1.0 - running.progress) * running.duration for running in self._running.values()]
        return min(max(math.ceil(min(left, default=0.0) * self._pace), 1), 600)

    # -- the threads -------------------------------------------------------------

    def _work(self) -> None:
        separators = _Separators(self.settings.model_dir)
        while (job_id := self._queue.get()) is not None:
            with self._lock:
                job = None if self._stopping else self.store.start(job_id)
                if job is None:  # deleted while queued, or the server is stopping
                    continue
                running = self._running[job.id] = _Running(job.duration)
            self._run(job, running, separators)

    def _run(self, job: Job, running: _Running, separators: _Separators) -> None:
        folder = self.store.folder(job.id)
        _remove_outputs(folder)  # a job cut short by a killed server starts again from nothing
        upload, error, cancelled, started = folder / job.upload, None, False, time.monotonic()
        try:
            separator = separators.get(job.model)
            output = output_options(job.codec, job.stems)
            separator.separate_to_file(
                upload, folder / STEMS, output, progress=lambda seconds: self._report(job, running, seconds)
            )
        except JobCancelledError:
            cancelled = True
        except StemsepError as problem:
            error = str(problem).replace(str(upload), job.filename)
        except Exception as problem:
            log.exception("job %s failed", job.id)
            error = f"internal error: {type(problem).__name__}"
        with self._lock:
            del self._running[job.id]
            deleted = running.cancel == DELETED
            if deleted:
                pass  # its row is gone already
            elif cancelled:
                self.store.requeue(job.id)
            else:
                self.store.finish(job.id, error)
                if error is None and job.duration > 0:
                    self._pace = 0.7 * self._pace + 0.3 * (time.monotonic() - started) / job.duration
        if deleted:
            shutil.rmtree(folder, ignore_errors=True)
        elif cancelled:
            _remove_outputs(folder)

    def _report(self, job: Job, running: _Running, seconds: float) -> None:
        """The job's progress callback: seconds of the song done."""
        if running.cancel is not None:
            raise JobCancelledError(running.cancel)
        now = time.monotonic()
        if now - running.reported >= PROGRESS_INTERVAL_S:
            running.progress = min(seconds / job.duration, 0.99) if job.duration > 0 else 0.0  # 1 once the stems are in place
            running.reported = now
            self.store.set_progress(job.id, running.progress)

    def _remove_strays(self) -> None:
        """Folders and files in the jobs folder that belong to no job."""
        for path in self.store.jobs_dir.iterdir():
            if is_job_id(path.name) and path.is_dir() and self.store.get(path.name) is not None:
                continue
            log.info("removing %s: it belongs to no job", path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


class _Separators:
    """One worker's loaded models, the most recently used kept."""

    def __init__(self, model_dir: Path | None) -> None:
        self._model_dir = model_dir
        self._loaded: OrderedDict[str, Separator] = OrderedDict()

    def get(self, model: str) -> Separator:
        if model not in self._loaded:
            self._loaded[model] = Separator(model, model_dir=self._model_dir)
            while len(self._loaded) > MODELS_PER_WORKER:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(model)
        return self._loaded[model]


def _remove_outputs(folder: Path) -> None:
    """A job's stems, its zip and any half-written temporary file beside them."""
    shutil.rmtree(folder / STEMS, ignore_errors=True)
    for path in folder.glob(".*"):
        path.unlink(missing_ok=True)
    (folder / ZIP).unlink(missing_ok=True)
