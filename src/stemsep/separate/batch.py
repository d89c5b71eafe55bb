"""Many songs with one ``Separator``: inputs from files, folders and stdin, outputs planned before any work.

``collect_inputs`` expands folders (``--recursive``) to their audio files and
counts what it left out; ``plan_outputs`` computes every song's stem paths
first, so a filename format that sends two songs to the same file is refused
before a single stem is written.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stemsep.errors import StemsepError
from stemsep.separate.output import OutputOptions

STDIN = "-"
STDIN_NAME = "stdin"
# What FFmpeg users keep music in; a folder's other files (covers, cue sheets, notes) are skipped.
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".mp3",
        ".m4a",
        ".aac",
        ".mp4",
        ".ogg",
        ".oga",
        ".opus",
        ".wma",
        ".aif",
        ".aiff",
        ".aifc",
        ".alac",
        ".ape",
        ".wv",
        ".mka",
        ".webm",
        ".caf",
        ".w64",
        ".rf64",
        ".ac3",
        ".dts",
        ".mp2",
        ".amr",
        ".au",
        ".snd",
    }
)


@dataclass(frozen=True)
class Inputs:
    """The songs to separate, in order, and how many non-audio files the folders held."""

    songs: list[Path]
    skipped_non_audio: int = 0
    from_stdin: bool = False
    problems: tuple[tuple[Path, str], ...] = ()  # folders without audio: failures, the batch goes on


def collect_inputs(arguments: list[str], recursive: bool = False) -> Inputs:
    """Files as given (checked when separated), folders expanded to their audio files, ``-`` for stdin."""
    songs: list[Path] = []
    problems: list[tuple[Path, str]] = []
    skipped = 0
    if STDIN in arguments and len(arguments) > 1:
        raise StemsepError("Standard input (-) is separated on its own: give no other file with it.")
    for argument in arguments:
        if argument == STDIN:
            return Inputs([Path(STDIN)], from_stdin=True)
        path = Path(argument)
        if not path.is_dir():
            songs.append(path)
            continue
        found = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
        audio = [p for p in found if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")]
        if not audio:
            hint = "" if recursive else " (--recursive also searches its subfolders)"
            problems.append((path, f"{path} holds no audio files{hint}."))
        songs += audio
        skipped += len(found) - len(audio)
    return Inputs(songs, skipped, problems=tuple(problems))


def plan_outputs(
    separator, songs: list[Path], destination: Path, output: OutputOptions, name: str | None = None
) -> dict[Path, dict[str, Path]]:
    """Song -> its stem paths; refuses two songs (or a song and itself) that would write the same file."""
    planned: dict[Path, dict[str, Path]] = {}
    owner: dict[Path, Path] = {}
    for song in songs:
        paths = separator.output_paths(song, destination, output, name)
        for path in paths.values():
            key = path.resolve()
            if key in owner and owner[key] != song:
                raise StemsepError(
                    f"{owner[key]} and {song} would both write {path}; add {{foldername}} to the filename format "
                    "or separate them into different folders."
                )
            owner[key] = song
        planned[song] = paths
    return planned


@contextlib.contextmanager
def stdin_as_file() -> Iterator[Path]:
    """Standard input copied to a temporary file (FFmpeg probes and seeks; a pipe cannot), removed after."""
    if sys.stdin is None or sys.stdin.isatty():
        raise StemsepError("Standard input (-) is a terminal: pipe a song into it, e.g. `cat song.mp3 | stemsep separate -`.")
    with tempfile.NamedTemporaryFile(prefix="stemsep-stdin-", suffix=".audio") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.flush()
        if spool.tell() == 0:
            raise StemsepError("Standard input (-) was empty: pipe a song into it.")
        yield Path(spool.name)
