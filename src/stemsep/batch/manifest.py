"""The manifest: which songs a batch separates, from a folder, a text file of paths or a CSV.

A folder is searched recursively for audio (``separate.batch.collect_inputs``,
its ``AUDIO_EXTENSIONS``); a text file holds one path a line (blank lines and
``#`` comments skipped); a ``.csv`` holds a ``path`` column. Relative paths
in a file resolve from the file's folder, so a manifest on shared storage
means the same songs on every node. Every path is made absolute: the workers
of a cluster do not run in the folder the batch was started from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from stemsep.errors import StemsepError
from stemsep.separate.batch import collect_inputs

PATH_COLUMN = "path"


@dataclass(frozen=True)
class Manifest:
    """The songs in order (absolute, each once), and what was left out."""

    songs: list[Path]
    skipped_non_audio: int = 0  # a folder's other files: covers, cue sheets
    duplicates: int = 0


def read_manifest(source: Path) -> Manifest:
    """The songs of a folder, a text file of paths or a CSV with a ``path`` column."""
    source = Path(source)
    if source.is_dir():
        inputs = collect_inputs([str(source)], recursive=True)
        if inputs.problems:
            raise StemsepError(inputs.problems[0][1])
        return _unique([song.absolute() for song in inputs.songs], inputs.skipped_non_audio)
    if not source.is_file():
        raise StemsepError(f"The manifest {source} does not exist: give a folder, a text file of paths or a CSV.")
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise StemsepError(f"Cannot read the manifest {source} ({getattr(error, 'strerror', None) or error}).") from None
    entries = _csv_paths(source, text) if source.suffix.lower() == ".csv" else _text_paths(text)
    if not entries:
        raise StemsepError(f"The manifest {source} lists no songs.")
    base = source.absolute().parent
    return _unique([(base / Path(entry).expanduser()) for entry in entries])


def _text_paths(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _csv_paths(source: Path, text: str) -> list[str]:
    reader = csv.DictReader(text.splitlines())
    columns = {name.strip().lower(): name for name in reader.fieldnames or []}
    if PATH_COLUMN not in columns:
        found = ", ".join(reader.fieldnames or []) or "none"
        raise StemsepError(f"The manifest {source} has no {PATH_COLUMN!r} column (its columns: {found}).")
    return [row[columns[PATH_COLUMN]].strip() for row in reader if (row[columns[PATH_COLUMN]] or "").strip()]


def _unique(songs: list[Path], skipped_non_audio: int = 0) -> Manifest:
    """Each path once, in the manifest's order (a song listed twice would be separated twice to the same stems)."""
    seen: dict[Path, None] = dict.fromkeys(songs)
    return Manifest(list(seen), skipped_non_audio, len(songs) - len(seen))
