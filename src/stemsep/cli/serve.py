"""`stemsep serve`: the HTTP service and its page (the app is ``stemsep.serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemsep.cli.app import app, echo_error
from stemsep.cli.options import (
    ModelDirOption,
)
from stemsep.errors import StemsepError


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Songs separated at once (threads in the server).")] = 1,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Job database, uploads and stems (default: ~/.cache/stemsep/serve).", show_default=False),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload, in MB.")] = 200.0,
    max_duration_s: Annotated[float, typer.Option("--max-duration-s", help="Longest song, in seconds.")] = 1200.0,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="STEMSEP_TOKEN",
            help="Every /api call must carry it (Authorization: Bearer TOKEN, or ?token=TOKEN).",
            show_default=False,
        ),
    ] = None,
    cors_origin: Annotated[
        str | None, typer.Option("--cors-origin", help="Let pages from this origin call the API (CORS).", show_default=False)
    ] = None,
    queue_size: Annotated[int, typer.Option("--queue-size", help="Songs waiting before uploads get 503.")] = 16,
    keep_hours: Annotated[float, typer.Option("--keep-hours", help="Hours finished jobs and their stems are kept.")] = 24.0,
    model_dir: ModelDirOption = None,
) -> None:
    """Run an HTTP service that separates uploaded songs: a page at /, the API described at /docs."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        echo_error("stemsep serve needs FastAPI, uvicorn and python-multipart: pip install 'stemsep[serve]'.")
        raise typer.Exit(1) from None
    from stemsep.cli.app import tune_malloc_for_streaming
    from stemsep.serve import ServeSettings
    from stemsep.serve.app import serve as run_server

    tune_malloc_for_streaming()  # the server's threads run the same pipeline as `stemsep separate`

    options = dict(host=host, port=port, workers=workers, max_upload_mb=max_upload_mb, max_duration_s=max_duration_s)
    options |= dict(token=token, cors_origin=cors_origin, queue_size=queue_size, keep_hours=keep_hours, model_dir=model_dir)
    try:
        settings = ServeSettings(**options, **({"data_dir": data_dir} if data_dir is not None else {}))
        run_server(settings)
    except StemsepError as error:
        echo_error(str(error))
        raise typer.Exit(1) from None
