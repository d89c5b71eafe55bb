"""Where stemsep keeps downloaded models, converted weights and assets.

A cache that cannot be written (read-only, on a full disk, or
``$STEMSEP_CACHE`` naming a file) does not stop a run: what would be stored
there is made in a temporary folder for this process only, removed at exit,
and one line on stderr says so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """``$STEMSEP_CACHE``, else ``$XDG_CACHE_HOME/stemsep``, else ``~/.cache/stemsep``."""
    if os.environ.get("STEMSEP_CACHE"):
        return Path(os.environ["STEMSEP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stemsep"


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (made if missing), or None when they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=folder, prefix=".stemsep-probe-").cleanup()
    except OSError as error:
        return (error.strerror or str(error)).lower()
    return None


def writable_or_temporary(path: Path, consequence: str) -> Path:
    """``path`` when its folder can be written, else the same name in a temporary folder removed at
    exit; ``consequence`` ends the line on stderr that says so (e.g. "it is downloaded again on every run")."""
    reason = unwritable_reason(path.parent)
    if reason is None:
        return path
    print(f"The cache {path.parent} is not writable ({reason}): {consequence}.", file=sys.stderr)
    return temporary_folder() / path.name


def temporary_folder() -> Path:
    """A new folder removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="stemsep-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
