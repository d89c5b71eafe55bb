"""Where stemsep keeps downloaded models, converted weights and assets."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$STEMSEP_CACHE``, else ``$XDG_CACHE_HOME/stemsep``, else ``~/.cache/stemsep``."""
    if os.environ.get("STEMSEP_CACHE"):
        return Path(os.environ["STEMSEP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stemsep"
