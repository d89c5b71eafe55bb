"""Several files separated at once, for an engine that batches them (the JAX engine).

Each file runs ``Separator.separate_to_file`` in its own CPU thread: decoding,
resampling, cutting windows, adding their overlaps and encoding happen there
(numpy, soxr and the codecs release the GIL), while the device thread
batches the windows of every file in flight. Results come back in the
order of the inputs; at most ``files_at_once`` files are open, so host
memory stays bounded whatever the number of inputs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stemsep.errors import StemsepError
from stemsep.separate.output import OutputOptions
from stemsep.separate.separator import SeparatedFile, Separator

FILES_AT_ONCE = 16  # x 4 windows in flight each: batches of 64 segments


def runs_files_together(separator: Separator) -> bool:
    """Whether ``separator``'s engine batches several files (it runs the whole path on its device)."""
    return getattr(separator.model, "stream_stems", None) is not None


def separate_files(
    separator: Separator,
    paths: Iterable[Path],
    destination: Path,
    output: OutputOptions,
    window: tuple[float, float | None] = (0.0, None),
    files_at_once: int = FILES_AT_ONCE,
) -> Iterator[tuple[Path, SeparatedFile | Exception]]:
    """(path, what ``separate_to_file`` returned or raised) per input, in order. ``window``: offset and duration.

    Closing the iterator early (an interrupt) stops the files in progress: each removes its partial stems.
    """
    offset, duration = window
    stop = threading.Event()

    def watch(seconds: float) -> None:  # called as each file progresses, in its thread
        if stop.is_set():
            raise StemsepError("Interrupted.")

    def separate(path: Path) -> SeparatedFile | Exception:
        try:
            return separator.separate_to_file(path, destination, output, offset, duration, progress=watch)
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=files_at_once, thread_name_prefix="stemsep-file") as pool:
        pending: deque = deque()
        try:
            for path in paths:
                pending.append((path, pool.submit(separate, path)))
                if len(pending) >= files_at_once:
                    path, future = pending.popleft()
                    yield path, future.result()
            while pending:
                path, future = pending.popleft()
                yield path, future.result()
        finally:
            stop.set()
