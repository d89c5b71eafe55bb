"""Find the tracks of a MUSDB18-shaped dataset, whatever its layout.

Three layouts are read as they are:

- MUSDB18: ``ROOT/<subset>/<track>.stem.mp4``; stream 0 is the mixture,
  then drums, bass, other, vocals (SPEC.md).
- MUSDB18-HQ (or any folder of reference stems):
  ``ROOT/<subset>/<track>/mixture.wav`` beside one audio file per stem.
- A prepared dataset: ``ROOT/<subset>.csv`` in the reference's training CSV
  format (``mix_path``, ``<instrument>_path``..., ``duration``; paths relative
  to ROOT), as `stemsep dataset prepare` writes.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemsep.audio.decode import read_audio
from stemsep.errors import StemsepError

MUSDB_STREAMS = ("mixture", "drums", "bass", "other", "vocals")
MUSDB_SUBSETS = ("train", "test")
MIXTURE = "mixture"
STEM_FILE_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aiff")
LENGTH_TOLERANCE_S = 0.05  # stems longer or shorter than the mixture by more than this are refused


@dataclass(frozen=True)
class AudioRef:
    """One audio stream: a file, and which of its audio streams."""

    path: Path
    stream: int = 0

    def read(self, sample_rate: int) -> np.ndarray:
        return read_audio(self.path, sample_rate, self.stream)

    @property
    def label(self) -> str:
        return self.path.name if self.stream == 0 else f"{self.path.name} stream {self.stream}"


@dataclass(frozen=True)
class Track:
    name: str
    subset: str
    mixture: AudioRef
    stems: Mapping[str, AudioRef] = field(default_factory=dict)

    def has_reference(self, instrument: str) -> bool:
        return instrument in self.stems or (instrument == "accompaniment" and self._accompaniment_parts() is not None)

    def reference(self, instrument: str, sample_rate: int, length: int | None = None) -> np.ndarray:
        """The true source of ``instrument``; ``accompaniment`` is every stem but vocals summed (as musdb).

        ``length``: the mixture's, in samples; a stem that differs from it is refused (not cut)."""
        names = [instrument] if instrument in self.stems else None
        if instrument == "accompaniment" and names is None:
            names = self._accompaniment_parts()
        if names is None:
            raise StemsepError(f"Track {self.name} has no reference for {instrument}.")
        signals = [self.stems[name].read(sample_rate) for name in names]
        if length is not None:
            self._check_lengths({self.stems[n].label: s.shape[0] for n, s in zip(names, signals)}, length, sample_rate)
        if len(signals) == 1:
            return signals[0]
        shortest = min(s.shape[0] for s in signals)
        return np.sum([s[:shortest] for s in signals], axis=0, dtype=np.float64).astype(np.float32)

    def _check_lengths(self, stems: dict[str, int], length: int, sample_rate: int) -> None:
        """Stems (label -> samples) as long as the mixture (``length``), within LENGTH_TOLERANCE_S."""
        wrong = {label: n for label, n in stems.items() if abs(n - length) > LENGTH_TOLERANCE_S * sample_rate}
        if wrong:
            listed = " and ".join(f"{label} lasts {n / sample_rate:.2f} s" for label, n in wrong.items())
            raise StemsepError(
                f"Track {self.name}: {listed} but {self.mixture.label} lasts {length / sample_rate:.2f} s; "
                "every reference stem must be as long as the mixture."
            )

    def _accompaniment_parts(self) -> list[str] | None:
        if "vocals" not in self.stems:
            return None
        others = [name for name in self.stems if name != "vocals"]
        return others or None


def find_tracks(root: Path, subset: str) -> list[Track]:
    """The tracks of ``subset`` under ``root``, sorted by name; raises StemsepError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise StemsepError(f"{root} is not a folder.")
    table = root / f"{subset}.csv"
    if table.is_file():
        return tracks_from_csv(table, root, subset)
    folder = root / subset
    tracks: list[Track] = []
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and entry.name.endswith(".stem.mp4"):
                tracks.append(_stem_mp4_track(entry, subset))
            elif entry.is_dir():
                track = _folder_track(entry, subset)
                if track is not None:
                    tracks.append(track)
    if not tracks:
        raise StemsepError(
            f"No tracks found for subset '{subset}' in {root}: expected {subset}/*.stem.mp4 (MUSDB18), "
            f"{subset}/<track>/mixture.wav (MUSDB18-HQ) or {subset}.csv (prepared dataset)."
        )
    return tracks


def _stem_mp4_track(path: Path, subset: str) -> Track:
    stems = {name: AudioRef(path, index) for index, name in enumerate(MUSDB_STREAMS) if name != MIXTURE}
    return Track(path.name.removesuffix(".stem.mp4"), subset, AudioRef(path, 0), stems)


def _folder_track(folder: Path, subset: str) -> Track | None:
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in STEM_FILE_SUFFIXES}
    if MIXTURE not in files:
        return None
    stems = {name: AudioRef(path) for name, path in files.items() if name != MIXTURE}
    return Track(folder.name, subset, AudioRef(files[MIXTURE]), stems)


def read_dataset_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a dataset CSV in the reference's format; StemsepError if it cannot be read."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except OSError as error:
        raise StemsepError(f"Cannot read dataset CSV {path} ({error.strerror}).") from None


def tracks_from_csv(table: Path, root: Path, subset: str) -> list[Track]:
    """Tracks listed in a reference-format CSV (named after the mixture's folder)."""
    columns, rows = read_dataset_table(table)
    if "mix_path" not in columns:
        raise StemsepError(f"{table} has no mix_path column; expected the reference's training CSV format.")
    instruments = [c.removesuffix("_path") for c in columns if c.endswith("_path") and c != "mix_path"]
    tracks = []
    for row in rows:
        mix = root / row["mix_path"]
        stems = {name: AudioRef(root / row[f"{name}_path"]) for name in instruments if row.get(f"{name}_path")}
        name = mix.parent.name if mix.parent != root else mix.stem
        tracks.append(Track(name, subset, AudioRef(mix), stems))
    if not tracks:
        raise StemsepError(f"{table} lists no tracks.")
    return sorted(tracks, key=lambda t: t.name)
