"""The typer application, error output and process set-up shared by every command.

Only typer is imported at start-up: TensorFlow loads when a model is, so
``--help`` and ``models`` answer at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Spleeter-exact music source separation: vocals, drums, bass, piano, other.",
)


def echo_error(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)


_owns_process = False  # set by main(): process-wide settings are the command line's to make


def tune_malloc_for_streaming() -> None:
    """glibc's malloc set for the pipeline: buffers of 8 MiB and more (a chunk's STFT, 17 MB) are
    mapped for themselves and go back to the OS when freed; smaller ones (the per-chunk masks,
    magnitudes and frames, ~4 MB each) are reused from the heap, which keeps up to 64 MiB free.

    Left to itself, glibc raises its mmap threshold after the first large free and the heap
    holds every chunk buffer at once (180 s, --mwf: peak RSS 510 MiB). A 1 MiB threshold
    (stemsep's earlier setting) kept 457 MiB but mapped and faulted in every buffer of every
    chunk: the work around the U-Net took 2.1 s instead of 1.3 (3.3 s instead of 1.9 with
    --mwf), system time 1.9 s. This setting: 470-495 MiB, with or without --mwf (measured
    on 180 s and 600 s, 2 cores, whole processes).
    Only when ``stemsep`` is the process (``main``): the setting lasts for the whole process,
    and a program running the app in-process (CliRunner in the tests) would keep it.
    """
    if _owns_process and sys.platform.startswith("linux"):
        import ctypes

        m_trim_threshold, m_mmap_threshold = -1, -3
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(m_mmap_threshold, 8 * 1024 * 1024)
            libc.mallopt(m_trim_threshold, 64 * 1024 * 1024)


def _terminated(signum, frame) -> None:
    from stemsep.stop import TERMINATED_EXIT, request_stop

    request_stop()  # checked again between chunks, should this exception be swallowed
    raise SystemExit(TERMINATED_EXIT)  # unwinds like Ctrl-C: every open stem writer removes its .partial file


def main() -> None:
    global _owns_process
    _owns_process = True
    signal.signal(signal.SIGTERM, _terminated)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a parent may have blocked it; children inherit masks
    try:
        app()
    except KeyboardInterrupt:
        echo_error("interrupted; no partial stem was left behind.")
        sys.exit(130)
