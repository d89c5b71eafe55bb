"""Low-priority threads that use the cores' idle moments while the engine runs the next chunk.

ONNX Runtime's threads leave about 7% of the cores idle while a U-Net runs
(its synchronisation points: CPU time / wall 1.86-1.88 on 2 cores,
measured). A chunk's masks (or Wiener filter) and inverse STFTs run on
threads at nice 19 while the engine runs the next chunk: they take those
moments and the decoding's single-threaded stretches without slowing the
engine (measured with a Wiener filter looping beside the U-Net: nice 19 left
it at 208-239 ms per segment, nice 10 made it 266-283, nice 0 454-462).
Whatever is left when the engine is done then runs alone, at full speed.

Nice works within a scheduling group (a cgroup, a terminal's autogroup):
another CPU-bound program in the same group leaves a nice-19 thread ~1.5%
of a core (180 s with ``--mwf`` beside two busy loops: 42 s instead of 11,
measured). So a chunk's work that is still unfinished once the engine has
been done with the next chunk for as long as that chunk took is taken as
starved: its threads get the process's priority back where the system allows
it, and the rest of the file, and every later one in the process (a batch,
a service's jobs), takes turns on normal-priority threads.
Off Linux, where a thread's priority cannot be set on its own, the stages
always take turns.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

Result = TypeVar("Result")

LOW_PRIORITY = 19  # the lowest nice value: runs only where the engine's threads leave a core idle


class Background:
    """Runs work on low-priority threads (``start``) and collects it (``finish``); turn-taking once starved.

    ``start(function, *args)`` calls ``function(*args, pool)``, with ``pool`` the
    ``workers`` threads of the work's own priority for it to spread its parts on.
    """

    starved = False  # once in this process: every later file takes turns too (a batch, a service's jobs)

    def __init__(self, workers: int) -> None:
        self.overlapping = sys.platform.startswith("linux") and not Background.starved
        self._nice = 0  # this thread's own, given back to starved threads
        if self.overlapping:
            try:
                self._nice = os.getpriority(os.PRIO_PROCESS, 0)
            except OSError:  # a sandbox that hides priorities: take turns
                self.overlapping = False
        self._low_threads: list[int] = []
        self._lock = threading.Lock()
        # Threads start on first use: a pool that is never used costs nothing.
        self._runner = ThreadPoolExecutor(1, "stemsep-background", initializer=self._lower_priority)
        self._low_pool = ThreadPoolExecutor(workers, "stemsep-dsp-low", initializer=self._lower_priority)
        self._pool = ThreadPoolExecutor(workers, "stemsep-dsp")  # its threads start from the caller's: its priority

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self._runner, self._low_pool, self._pool):
            pool.shutdown(wait=True)

    def start(self, function: Callable[..., Result], *args: object) -> Future[Result]:
        """``function(*args, pool)`` on the low-priority threads, or here and now once they have been starved."""
        if self.overlapping:
            return self._runner.submit(function, *args, self._low_pool)
        done: Future[Result] = Future()
        done.set_result(function(*args, self._pool))
        return done

    def finish(self, future: Future[Result], patience: float) -> Result:
        """``future``'s result; not there within ``patience`` seconds: starved (see the module's docstring)."""
        try:
            return future.result(timeout=patience)
        except FutureTimeout:
            self.overlapping = False
            Background.starved = True
            self._restore_priority()
            return future.result()

    def _lower_priority(self) -> None:
        thread = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, thread, LOW_PRIORITY)  # Linux: this thread only
        except OSError:  # at the engine's priority it would slow the engine down: take turns instead
            self.overlapping = False
            return
        with self._lock:
            self._low_threads.append(thread)

    def _restore_priority(self) -> None:
        """The low-priority threads back at the process's priority, where the system allows it (a
        process may lower its priority but raise it back only with CAP_SYS_NICE or RLIMIT_NICE)."""
        with self._lock:
            threads = list(self._low_threads)
        for thread in threads:
            try:
                os.setpriority(os.PRIO_PROCESS, thread, self._nice)
            except OSError:
                break
