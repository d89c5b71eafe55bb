"""One thread that runs work items from every stream through a device function in batches.

Streams (one per file being separated) submit waveform windows and get
futures; the thread takes what is queued (up to the largest of ``sizes``,
waiting ``linger_s`` for more after the first), pads it to the smallest size
that holds it (a jitted function compiles once per shape), dispatches it, and only
then fetches the previous batch's result, so the device computes one batch
while the host copies the last one back and gathers the next.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Dispatch = Callable[[np.ndarray], object]  # a batch in, a device array out (not waited for)


class Batcher:
    def __init__(self, dispatch: Dispatch, sizes: tuple[int, ...], linger_s: float = 0.005) -> None:
        self.dispatch = dispatch
        self.sizes = sorted(sizes)
        self.linger_s = linger_s
        self.items: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="stemsep-device", daemon=True)
        self.thread.start()

    def submit(self, item: np.ndarray) -> Future:
        future: Future = Future()
        self.items.put((item, future))
        return future

    def close(self) -> None:
        self.items.put(None)
        self.thread.join()

    def _run(self) -> None:
        pending = None  # (futures, device result) dispatched but not yet fetched
        while True:
            if pending is not None and self.items.empty():
                _resolve(*pending)
                pending = None
            taken = self._take()
            if taken is None:
                break
            futures = [future for _, future in taken]
            try:
                result = self.dispatch(self._stack([item for item, _ in taken]))
            except BaseException as error:  # the streams waiting on it raise it
                for future in futures:
                    future.set_exception(error)
                continue
            if pending is not None:
                _resolve(*pending)
            pending = (futures, result)
        if pending is not None:
            _resolve(*pending)

    def _take(self) -> list | None:
        """The queued items, at least one (waited for), at most the largest batch."""
        first = self.items.get()
        if first is None:
            return None
        taken = [first]
        deadline = time.monotonic() + self.linger_s
        while len(taken) < self.sizes[-1]:
            try:
                item = self.items.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is None:
                self.items.put(None)  # close after this batch
                break
            taken.append(item)
        return taken

    def _stack(self, items: list[np.ndarray]) -> np.ndarray:
        size = next(s for s in self.sizes if s >= len(items))
        batch = np.zeros((size, *items[0].shape), items[0].dtype)
        for i, item in enumerate(items):
            batch[i] = item
        return batch


def _resolve(futures: list[Future], result) -> None:
    try:
        values = np.asarray(result)  # waits for the device
    except BaseException as error:
        for future in futures:
            future.set_exception(error)
        return
    for i, future in enumerate(futures):
        future.set_result(values[i])
