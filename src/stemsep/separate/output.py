"""What to write for each song: one ``OutputOptions`` value, checked once, shared by every caller.

The CLI, the Python API, the Spleeter drop-in, the service and the cluster
batch all build this one value; ``Separator.separate_to_file`` reads it.
Everything here is checked before a model is loaded, except the stem names,
which need the model's instruments (``plan``).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path

from stemsep.audio.encode import NI_STEMS, Codec, parse_bitrate, resolve_codec
from stemsep.errors import StemsepError

DEFAULT_FILENAME_FORMAT = "{filename}/{instrument}.{codec}"
NI_FILENAME_FORMAT = "{filename}.{codec}"  # one Native Instruments file per song
NI_INSTRUMENT = "stems"  # what {instrument} means in a custom format for stem.mp4
FILENAME_FIELDS = ("filename", "foldername", "instrument", "codec")
BITS = ("16", "24", "32f")
CLIP_MODES = ("clamp", "rescale", "none")


@dataclass(frozen=True)
class OutputOptions:
    """How stems are written: format, fidelity, which stems, what to do with existing files."""

    codec: str = "wav"
    bitrate: str = "128k"
    filename_format: str | None = None  # None: DEFAULT_FILENAME_FORMAT (NI_FILENAME_FORMAT for stem.mp4)
    bits: str | None = None  # wav/flac: 16 (default), 24 or 32f (wav only)
    clip: str = "clamp"  # samples beyond full scale: clamp (counted), rescale (whole stem), none
    stems: tuple[str, ...] | None = None  # write only these instruments
    two_stems: str | None = None  # write this instrument and no_<it>, the sum of the others
    keep_channels: bool = False  # mono input -> mono stems (default: stereo, as Spleeter)
    overwrite: bool = False
    skip_existing: bool = False

    def __post_init__(self) -> None:
        self.check()

    # -- checks that need no model --------------------------------------------

    def check(self) -> None:
        codec = self.resolved_codec  # unknown or unavailable codec
        parse_bitrate(self.bitrate)
        if self.bits is not None:
            if self.bits not in BITS:
                raise StemsepError(f"--bits {self.bits!r} is not one of {', '.join(BITS)}.")
            if codec.name == NI_STEMS and self.bits != "24":
                raise StemsepError("stem.mp4 takes --bits 24 (lossless ALAC) or no --bits (AAC at --bitrate).")
            if codec.lossy and codec.name != NI_STEMS:
                raise StemsepError(f"--bits applies to wav, flac and stem.mp4; {codec.name} sets its quality with --bitrate.")
            if codec.name == "flac" and self.bits == "32f":
                raise StemsepError("FLAC stores integers only: use --bits 16 or 24, or -c wav --bits 32f.")
        if self.clip not in CLIP_MODES:
            raise StemsepError(f"--clip {self.clip!r} is not one of {', '.join(CLIP_MODES)}.")
        if self.clip == "none" and not self.float_samples:
            raise StemsepError(
                f"--clip none keeps samples beyond full scale, which {self.bits or '16'}-bit {codec.name} cannot hold: "
                "use --bits 32f, a lossy codec, or --clip clamp|rescale."
            )
        if self.stems is not None and self.two_stems is not None:
            raise StemsepError("Give either --stems or --two-stems, not both.")
        if self.stems is not None and not self.stems:
            raise StemsepError("--stems needs at least one instrument name.")
        if self.overwrite and self.skip_existing:
            raise StemsepError("Give either --overwrite or --skip-existing, not both.")
        _check_format(self.format)

    @property
    def resolved_codec(self) -> Codec:
        return resolve_codec(self.codec)

    @property
    def is_ni_stems(self) -> bool:
        return self.resolved_codec.name == NI_STEMS

    @property
    def format(self) -> str:
        if self.filename_format is not None:
            return self.filename_format
        return NI_FILENAME_FORMAT if self.is_ni_stems else DEFAULT_FILENAME_FORMAT

    @property
    def float_samples(self) -> bool:
        """Whether written samples may exceed full scale (float PCM or a lossy codec's float input)."""
        return self.bits == "32f" or (self.resolved_codec.lossy and not self.is_ni_stems)

    # -- what a model writes --------------------------------------------------

    def plan(self, instruments: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Output stem name -> the model instruments summed into it (checks --stems/--two-stems names)."""
        known = ", ".join(instruments)
        for name in self.stems or ((self.two_stems,) if self.two_stems else ()):
            if name not in instruments:
                raise StemsepError(f"This model has no {name!r} stem; its instruments are {known}.")
        if self.two_stems:
            others = tuple(i for i in instruments if i != self.two_stems)
            return {self.two_stems: (self.two_stems,), f"no_{self.two_stems}": others}
        chosen = self.stems or instruments
        return {name: (name,) for name in instruments if name in chosen}

    def paths(self, audio_path: Path, destination: Path, stem_names: list[str], name: str | None = None) -> dict[str, Path]:
        """Stem name -> output path; ``name`` replaces the input's file name (stdin)."""
        codec = self.resolved_codec.name
        filename = name or audio_path.stem
        folder = "" if name else audio_path.resolve().parent.name
        names = [NI_INSTRUMENT] if self.is_ni_stems else stem_names
        paths = {}
        root = destination.resolve()
        for stem in names:
            path = destination / self.format.format(filename=filename, foldername=folder, instrument=stem, codec=codec)
            if not path.resolve().is_relative_to(root):
                raise StemsepError(
                    f"The filename format {self.format!r} writes {path}, outside the output folder {destination}; "
                    "keep it relative and without '..'."
                )
            paths[stem] = path
        if len(set(paths.values())) != len(paths):
            raise StemsepError("The filename format must contain {instrument}, or every stem would go to the same file.")
        return paths


def _check_format(filename_format: str) -> None:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(filename_format) if name is not None]
    except ValueError:
        raise StemsepError(
            f"The filename format {filename_format!r} has an unmatched {{ or }}; placeholders look like {{instrument}}."
        ) from None
    for name in fields:
        if name not in FILENAME_FIELDS:
            raise StemsepError(f"Unknown placeholder {{{name}}} in the filename format; use {', '.join(FILENAME_FIELDS)}.")
    if Path(filename_format).is_absolute():
        raise StemsepError(f"The filename format {filename_format!r} is absolute; it must stay inside the output folder.")


def check_time_window(offset: float, duration: float | None) -> None:
    """Offset and duration in seconds: finite, offset >= 0, duration > 0."""
    if not math.isfinite(offset) or offset < 0:
        raise StemsepError(f"The offset must be a number of seconds >= 0 (got {offset}).")
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise StemsepError(f"The duration must be a number of seconds > 0 (got {duration}).")
