"""``stemsep serve``: an HTTP service that separates uploaded songs, with jobs that survive a restart.

``ServeSettings`` says how it runs; ``create_app(settings)`` is the ASGI app
(FastAPI, imported only when asked for: the ``serve`` extra);
``serve(settings)`` runs it with uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stemsep.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]

if TYPE_CHECKING:
    from stemsep.serve.app import create_app, serve


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        import stemsep.serve.app

        return getattr(stemsep.serve.app, name)
    raise AttributeError(name)
