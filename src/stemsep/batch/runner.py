"""``run_batch``: separate a manifest's songs on a Ray cluster (or a local Ray instance), resumably.

The order of a run:

1. read the manifest, open the results table, refuse other options;
2. connect to Ray and start the workers (one model each, loaded once);
3. plan every song's stem paths with a worker's ``Separator`` and refuse
   two songs that would write the same file, before any work;
4. probe durations (kept in the table: a re-run does not probe again);
5. hand songs out longest first, one at a time to each idle worker, so the
   last minutes are short songs filling every worker instead of one long
   song holding a single worker while the others idle (LPT scheduling);
6. record each answer as it comes; redo the songs of a worker that died.

Why Ray and not a process pool: the same code runs on one machine (a local
instance) and on a cluster (``--ray auto`` or an address), and Ray restarts
the actors of a dead node elsewhere.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.exceptions import RayActorError

from stemsep.audio.decode import probe
from stemsep.batch.manifest import read_manifest
from stemsep.batch.pool import WorkerPool
from stemsep.batch.progress import BatchProgress, Tally
from stemsep.batch.results import DONE, FAILED, TABLE_NAME, ResultsTable, Row
from stemsep.batch.summary import BatchSummary, summarize
from stemsep.batch.worker import Job, ModelChoice, Outcome, timeout_sentence
from stemsep.errors import StemsepError, describe
from stemsep.separate import OutputOptions

MAX_ATTEMPTS = 3  # a song whose worker died this many times fails
START_WAIT_S = 600.0  # for the first worker to load its model, or for any worker after all were lost
POLL_S = 1.0
PROBE_THREADS = 8  # durations are read over shared storage: I/O, not CPU


@dataclass(frozen=True)
class BatchSettings:
    """What ``stemsep batch`` was asked: the songs, where and how to write them, and on which cluster."""

    manifest: Path
    destination: Path
    output: OutputOptions
    model: ModelChoice
    ray_address: str | None = None  # None: a local Ray instance; "auto" or HOST:PORT: a running cluster
    retry_failed: bool = False
    timeout_s: float | None = 1800.0  # per song; None or 0: no limit
    workers: int | None = None  # None: one per cpus_per_worker CPUs of the cluster
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s < 0:
            raise StemsepError(f"--timeout-s must be 0 (no limit) or more seconds (got {self.timeout_s:g}).")
        if self.workers is not None and self.workers < 1:
            raise StemsepError(f"--workers must be at least 1 (got {self.workers}).")
        if self.cpus_per_worker <= 0:
            raise StemsepError(f"--cpus-per-worker must be more than 0 (got {self.cpus_per_worker:g}).")

    def options(self) -> dict:
        """What the stems depend on, kept in the results table (not --overwrite/--skip-existing)."""
        written = {k: v for k, v in dataclasses.asdict(self.output).items() if k not in ("overwrite", "skip_existing")}
        model = {k: v for k, v in dataclasses.asdict(self.model).items() if k != "model_dir"}
        return {**written, **model, "stems": list(self.output.stems) if self.output.stems else None}


def run_batch(settings: BatchSettings, progress: BatchProgress) -> BatchSummary:
    """Separate what the table does not have done yet; returns the summary (also of earlier runs' work)."""
    started = time.perf_counter()
    manifest = read_manifest(settings.manifest)
    table = ResultsTable(settings.destination / TABLE_NAME)
    try:
        table.check_options(settings.options())
        table.add(manifest.songs)
        run = table.new_run()
        todo = [row for row in table.rows(manifest.songs) if _wanted(row, settings.retry_failed)]
        stalled = None
        if todo:
            _connect(settings.ray_address)
            try:
                stalled = _Run(settings, table, run, progress).separate(manifest.songs, todo)
            finally:
                ray.shutdown()
        return summarize(table.rows(manifest.songs), manifest, run, time.perf_counter() - started, stalled)
    finally:
        table.close()


def _wanted(row: Row, retry_failed: bool) -> bool:
    return row.state not in (DONE, FAILED) or (retry_failed and row.state == FAILED)


def _connect(address: str | None) -> None:
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
        raise StemsepError(f"Cannot connect to {where} ({str(error).strip().splitlines()[0]}).") from None


@dataclass
class _Flight:
    """A song on a worker."""

    row: Row
    actor: object
    sent: float  # perf_counter
    killed: bool = False  # stopped by the driver: past --timeout-s and its grace


class _Run:
    """One invocation's dispatch loop: the queue, the songs in flight, the table and the progress."""

    def __init__(self, settings: BatchSettings, table: ResultsTable, run: int, progress: BatchProgress) -> None:
        self.settings, self.table, self.run, self.progress = settings, table, run, progress
        self.flights: dict = {}  # ObjectRef -> _Flight
        self.queue: list[Row] = []  # shortest first: pop() takes the longest
        self.tally = Tally()

    def separate(self, songs: list[Path], todo: list[Row]) -> str | None:
        """Plan, probe, then dispatch until every song is answered; a sentence if no worker was left."""
        settings = self.settings
        cpus = ray.cluster_resources().get("CPU", 0.0)
        count = min(settings.workers or max(1, int(cpus // settings.cpus_per_worker)), len(todo))
        self.progress.note(f"Starting {count} worker(s) on {cpus:g} CPU(s) of {len(ray.nodes())} node(s)...")
        self.pool = WorkerPool(settings.model, count, settings.cpus_per_worker)
        self._plan(songs, todo, self.pool.first(START_WAIT_S))
        unreadable = self._probe(todo)
        self.tally = Tally(files=len(todo), audio_s=sum(row.duration_s or 0.0 for row in todo))
        self.queue = sorted((row for row in todo if row.path not in unreadable), key=_shortest_first)
        self.progress.start(self.tally)
        try:
            for row in todo:
                if row.path in unreadable:
                    self._fail(row, unreadable[row.path])
            return self._dispatch()
        finally:
            self.progress.stop()

    def _plan(self, songs: list[Path], todo: list[Row], planner) -> None:
        planned = ray.get(planner.plan.remote(songs, self.settings.destination, self.settings.output))
        if isinstance(planned, str):
            raise StemsepError(planned)
        for row in todo:
            row.outputs = planned[row.path]
        self.table.plan({row.path: row.outputs for row in todo})

    def _probe(self, todo: list[Row]) -> dict[Path, str]:
        """Durations of the songs not probed yet, kept; the sentences of those that cannot be read."""
        unknown = [row for row in todo if row.duration_s is None]
        unreadable, durations = {}, {}
        with ThreadPoolExecutor(PROBE_THREADS) as pool:
            for row, answer in zip(unknown, pool.map(_duration, [row.path for row in unknown])):
                if isinstance(answer, str):
                    unreadable[row.path] = answer
                elif answer is not None:
                    row.duration_s = durations[row.path] = answer
        self.table.set_durations(durations)
        return unreadable

    # -- the loop -------------------------------------------------------------

    def _dispatch(self) -> str | None:
        pool, no_worker_since = self.pool, None
        while self.queue or self.flights:
            while pool.idle and self.queue:
                self._send(pool.idle.pop(), self.queue.pop())
            if not self.flights and not pool.idle:
                no_worker_since = no_worker_since or time.monotonic()
                if not pool.starting:
                    return "No worker is left (their model did not load where they restarted); re-run to separate the rest."
                if time.monotonic() - no_worker_since > START_WAIT_S:
                    return f"No worker was back within {START_WAIT_S:.0f} s (nodes lost); re-run to separate the rest."
            else:
                no_worker_since = None
            for ref in _first_answers([*self.flights, *pool.waiting]):
                if ref in pool.waiting:
                    pool.answered(ref)
                else:
                    self._answered(ref)
            for note in pool.notes:
                self.progress.note(note)
            pool.notes.clear()
            pool.wake()
            self._stop_overdue()
        return None

    def _send(self, actor, row: Row) -> None:
        redo_since = row.started_at if row.attempts else None  # an earlier attempt may have left files
        row.started_at = self.table.start(row.path)
        row.attempts += 1
        settings = self.settings
        job = Job(row.path, settings.destination, settings.output, settings.timeout_s, tuple(row.outputs.values()), redo_since)
        self.flights[actor.separate.remote(job)] = _Flight(row, actor, time.perf_counter())

    def _answered(self, ref) -> None:
        flight = self.flights.pop(ref)
        try:
            outcome: Outcome = ray.get(ref)
        except RayActorError as error:
            self.pool.recover(flight.actor)
            self._lost(flight, error)
            return
        self.pool.idle.append(flight.actor)
        self._record(flight.row, outcome)

    def _record(self, row: Row, outcome: Outcome) -> None:
        if outcome.error is not None:
            self._fail(row, outcome.error, outcome.node, outcome.seconds)
            return
        self.table.finish_done(row.path, outcome.seconds, outcome.node, self.run)
        self.tally.count(row.duration_s, True)
        line = f"{row.path}: {'skipped, its stems exist' if outcome.skipped else 'done'} on {outcome.node}"
        self.progress.update(self.tally, line + f" in {outcome.seconds:.1f} s" + "".join(f"; {n}" for n in outcome.notes))

    def _fail(self, row: Row, sentence: str, node: str | None = None, seconds: float | None = None) -> None:
        self.table.finish_failed(row.path, sentence, node, self.run, seconds)
        self.tally.count(row.duration_s, False)
        line = f"{row.path}: failed{f' on {node}' if node else ''}: {sentence}"
        if sentence.startswith(str(row.path)):  # stemsep's sentences name the file already
            line = f"failed{f' on {node}' if node else ''}: {sentence}"
        self.progress.update(self.tally, line)
        self.progress.note(line)

    def _lost(self, flight: _Flight, error: RayActorError) -> None:
        """The worker died with the song: a timeout we forced fails it, anything else redoes it."""
        row = flight.row
        node = self.pool.nodes.get(flight.actor)
        if flight.killed:
            self._fail(row, timeout_sentence(row.path, self.settings.timeout_s or 0.0), node, time.perf_counter() - flight.sent)
            return
        reason = f"its worker on {node or 'a node'} died ({type(error).__name__})"
        if row.attempts >= MAX_ATTEMPTS:
            self._fail(row, f"{row.path} was not separated: {reason}, {row.attempts} times.", node)
            return
        self.table.requeue(row.path, reason)
        self.progress.note(f"{row.path}: {reason}; separating it again.")
        self.queue.append(row)  # a redo goes next: the longest songs were sent first already

    def _stop_overdue(self) -> None:
        """A worker past --timeout-s and a grace (stuck outside the pipeline: a hung read) is killed."""
        limit = self.settings.timeout_s
        if not limit:
            return
        now = time.perf_counter()
        for flight in self.flights.values():
            if not flight.killed and now - flight.sent > limit * 1.1 + 30:
                flight.killed = True
                self.pool.kill(flight.actor)


def _shortest_first(row: Row) -> float:
    return row.duration_s if row.duration_s is not None else float("inf")  # unknown lengths may be long: sent first


def _first_answers(refs: list) -> list:
    """The calls that answered within POLL_S (at least the first one to)."""
    if not refs:
        time.sleep(POLL_S)
        return []
    return ray.wait(refs, num_returns=1, timeout=POLL_S)[0]


def _duration(path: Path) -> float | str | None:
    """A song's duration in seconds (None if its container does not say), or the sentence why it cannot be read."""
    try:
        return probe(path).duration
    except Exception as error:
        return describe(error) if isinstance(error, StemsepError) else f"unexpected {describe(error)}"
