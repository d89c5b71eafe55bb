"""``ServeSettings``: how ``stemsep serve`` runs, one frozen value checked once.

The CLI builds it from its options, the tests build it directly; ``create_app``
and every part of the service read it and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from stemsep.cache import cache_root
from stemsep.errors import StemsepError

MB = 1_000_000  # --max-upload-mb counts decimal megabytes, as browsers and file managers show sizes


def default_data_dir() -> Path:
    """``<cache>/serve``: jobs are kept for --keep-hours only, like a cache."""
    return cache_root() / "serve"


@dataclass(frozen=True)
class ServeSettings:
    """Where jobs live, how many run at once, what an upload may be, who may call the API."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # separation threads (each keeps its own models loaded)
    max_upload_mb: float = 200.0
    max_duration_s: float = 1200.0
    token: str | None = None  # every /api call must present it
    cors_origin: str | None = None  # None: no CORS headers at all
    queue_size: int = 16  # queued jobs (not counting running ones) before uploads get 503
    keep_hours: float = 24.0  # finished and failed jobs are removed this long after their last change
    model_dir: Path | None = None  # folder holding pretrained model folders (like --model-dir elsewhere)
    keepalive_s: float = 15.0  # a comment line on an idle event stream, so that proxies keep it open

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir).expanduser())
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be between 0 and 65535 (got {self.port})")
        if self.workers < 1:
            problems.append(f"--workers must be at least 1 (got {self.workers})")
        if self.queue_size < 1:
            problems.append(f"--queue-size must be at least 1 (got {self.queue_size})")
        for name, value in (
            ("--max-upload-mb", self.max_upload_mb),
            ("--max-duration-s", self.max_duration_s),
            ("--keep-hours", self.keep_hours),
            ("the keep-alive interval", self.keepalive_s),
        ):
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number (got {value})")
        if self.token is not None and (not self.token or self.token != self.token.strip()):
            problems.append("--token must not be empty or start or end with spaces")
        if problems:
            raise StemsepError(f"The server settings are not usable: {'; '.join(problems)}.")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite3"
