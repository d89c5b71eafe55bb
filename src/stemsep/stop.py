"""A request to stop (SIGTERM), honoured between chunks.

The CLI's SIGTERM handler raises SystemExit, which unwinds like Ctrl-C and lets
every stem writer remove its ``.partial`` file. Python runs a handler at the
next bytecode of the main thread; if that happens inside a ``__del__`` or a
callback, the exception is printed and swallowed. The flag set here is checked
again after every chunk, so the request is never lost.
"""

from __future__ import annotations

import threading

TERMINATED_EXIT = 143  # 128 + SIGTERM, as shells report it

_requested = threading.Event()


def request_stop() -> None:
    _requested.set()


def raise_if_stop_requested() -> None:
    if _requested.is_set():
        raise SystemExit(TERMINATED_EXIT)
