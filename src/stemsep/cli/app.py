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
    """glibc's malloc set for the pipeline: buffers of 8 MiB and more are mapped for themselves and
    go back to the OS when freed; smaller ones (the per-chunk masks, magnitudes, frames and encoder
    buffers, ~4 MB each) are reused from the heap, which keeps up to 64 MiB free. (The chunk's
    17 MB STFT and the spectrum buffers are the pipeline's own, reused from chunk to chunk.)

    Left to itself, glibc raises and lowers its thresholds as large blocks come and go: on 180 s
    the same peak RSS (449-458 MiB in-process, measured after the STFT buffer was reused), but
    encoding took 0.25-0.30 s instead of 0.07-0.09 and system time was 0.75-1.0 s instead of
    0.47-0.55. A 1 MiB threshold (stemsep's earlier
    setting) mapped and faulted in every buffer of every chunk: the work around the U-Net took
    2.1 s instead of 1.3. Only when ``stemsep`` is the process (``main``: `separate` and `serve`):
    the setting lasts for the whole process, and a program running the app in-process (CliRunner
    in the tests) would keep it.
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
