"""Files that are either complete or absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from stemsep.errors import StemsepError


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", newline="") as out:
            out.write(text)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def move_into_place(finished: Path, path: Path, overwrite: bool) -> None:
    """Rename a complete temporary file onto ``path`` with the umask's permissions (mkstemp makes 0600 files).

    Without ``overwrite`` an existing ``path`` (made while we wrote) is refused, never replaced.
    """
    if not overwrite and path.exists():
        raise StemsepError(f"{path} already exists (use --overwrite to replace it).")
    os.chmod(finished, 0o666 & ~current_umask())
    os.replace(finished, path)
