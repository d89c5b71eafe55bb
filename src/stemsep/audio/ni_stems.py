"""Native Instruments Stems (``.stem.mp4``): a five-track MP4 that Traktor and Mixxx open as one deck.

Track 0 is the stereo mixture and the only enabled track (ordinary players play it alone); tracks 1-4 are
the drums, bass, other and vocals slots, disabled. A ``moov/udta/stem`` box holds the manifest: UTF-8 JSON
with ``mastering_dsp`` (compressor, limiter), ``version`` 1 and four ``{"name", "color"}`` entries, the
payload right after the 8-byte box header (no full-box version/flags), as NI's Stem Creator writes it with
MP4Box ``-udta 0:type=stem`` and Mixxx's ``StemInfoImporter`` reads it.

FFmpeg's mp4 muxer writes ``moov`` after ``mdat``, so the box is added by rewriting only ``moov`` at the end
of the file: no chunk offset moves and the sample data is never read back. The file is written to a hidden
temporary file beside the destination and renamed into place when complete, like ``encode.StemWriter``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import av
import numpy as np

from stemsep.errors import StemsepError, describe
from stemsep.files import move_into_place

NI_SLOTS = ("drums", "bass", "other", "vocals")
NI_NAMES = ("Drums", "Bass", "Other", "Vocals")
NI_COLORS = ("#009E73", "#D55E00", "#CC79A7", "#56B4E9")  # Stem Creator's defaults, also Mixxx's fallback
NI_CODECS = ("aac", "alac")
_SLOT_TABLE: dict[frozenset[str], list[tuple[str, tuple[str, ...]]]] = {
    frozenset(("vocals", "drums", "bass", "other")): [
        ("Drums", ("drums",)), ("Bass", ("bass",)), ("Other", ("other",)), ("Vocals", ("vocals",))],
    frozenset(("vocals", "piano", "drums", "bass", "other")): [
        ("Drums", ("drums",)), ("Bass", ("bass",)), ("Other + Piano", ("other", "piano")), ("Vocals", ("vocals",))],
    frozenset(("vocals", "accompaniment")): [
        ("Accompaniment", ("accompaniment",)), ("Silent", ()), ("Silent", ()), ("Vocals", ("vocals",))],
}  # fmt: skip


def ni_slot_stems(instruments: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """How a model's instruments fill NI's four slots: (display name, instruments summed; () is silence)."""
    slots = _SLOT_TABLE.get(frozenset(instruments)) if len(set(instruments)) == len(instruments) else None
    if slots is None:
        raise StemsepError(
            f"NI Stems have drums, bass, other and vocals slots, which a model with {', '.join(instruments)} cannot fill; "
            "use a 2stems (vocals, accompaniment), 4stems (vocals, drums, bass, other) or 5stems (plus piano) model."
        )
    return [(name, parts) for name, parts in slots]


@dataclass(frozen=True)
class Compressor:  # Traktor's compressor on the stem sum: off, with Stem Creator's default settings
    enabled: bool = False
    input_gain: float = 0.5
    output_gain: float = 0.5
    threshold: float = 0.0
    ratio: float = 3.0
    attack: float = 0.003
    release: float = 0.3
    hp_cutoff: int = 300
    dry_wet: int = 50


@dataclass(frozen=True)
class Limiter:  # Traktor's limiter on the stem sum: off, with Stem Creator's default settings
    enabled: bool = False
    threshold: float = 0.0
    ceiling: float = -0.35
    release: float = 0.05


@dataclass(frozen=True)
class NIStemManifest:
    """The JSON in ``moov/udta/stem``: four slot names and ``#RRGGBB`` colours."""

    names: tuple[str, ...]
    colors: tuple[str, ...] = NI_COLORS
    compressor: Compressor = field(default_factory=Compressor)
    limiter: Limiter = field(default_factory=Limiter)
    version: int = 1

    def __post_init__(self) -> None:
        if len(self.names) != 4 or not all(name.strip() for name in self.names):
            raise StemsepError(f"An NI stem file needs exactly 4 non-empty stem names, not {list(self.names)}.")
        if len(self.colors) != 4 or not all(re.fullmatch(r"#[0-9A-Fa-f]{6}", c) for c in self.colors):
            raise StemsepError(f"An NI stem file needs exactly 4 colours written #RRGGBB, not {list(self.colors)}.")

    def to_json(self) -> bytes:
        doc = {
            "mastering_dsp": {"compressor": asdict(self.compressor), "limiter": asdict(self.limiter)},
            "version": self.version,
            "stems": [{"name": n, "color": c} for n, c in zip(self.names, self.colors)],
        }
        return json.dumps(doc).encode("utf-8")


class Box(NamedTuple):
    kind: bytes
    start: int  # offset of the header
    header: int  # 8, or 16 with a 64-bit largesize
    end: int  # offset just past the box


def iter_boxes(f: BinaryIO, start: int, end: int) -> Iterator[Box]:
    """The ISO BMFF boxes laid end to end in ``f[start:end]`` (size 1: 64-bit largesize; size 0: to ``end``)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(min(16, end - pos))
        size, kind = struct.unpack(">I4s", head[:8])
        header = 16 if size == 1 else 8
        if size == 1:
            size = struct.unpack(">Q", head[8:])[0] if len(head) == 16 else 0
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise StemsepError(f"The MP4 box {kind.decode('latin-1')!r} at byte {pos} has an impossible size of {size}.")
        yield Box(kind, pos, header, pos + size)
        pos += size


def _box(kind: bytes, payload: bytes) -> bytes:
    if len(payload) + 8 < 2**32:
        return struct.pack(">I4s", len(payload) + 8, kind) + payload
    return struct.pack(">I4sQ", 1, kind, len(payload) + 16) + payload


def insert_stem_box(path: Path, manifest: bytes) -> None:
    """Append a ``stem`` box to ``moov/udta`` (creating ``udta`` if absent); ``moov`` must be the last box."""
    stem = _box(b"stem", manifest)
    with open(path, "r+b") as f:
        boxes = list(iter_boxes(f, 0, f.seek(0, os.SEEK_END)))
        if not boxes or boxes[-1].kind != b"moov":
            raise RuntimeError(f"{path}: the mp4 muxer did not write moov last, so the stem box cannot be appended")
        moov = boxes[-1]
        f.seek(moov.start + moov.header)
        body = f.read(moov.end - moov.start - moov.header)
        children = list(iter_boxes(io.BytesIO(body), 0, len(body)))
        udta = next((c for c in children if c.kind == b"udta"), None)
        if udta is None:
            body += _box(b"udta", stem)
        else:
            grown = _box(b"udta", body[udta.start + udta.header : udta.end] + stem)
            body = body[: udta.start] + grown + body[udta.end :]
        f.seek(moov.start)
        f.write(_box(b"moov", body))
        f.truncate()


def _frame(block: np.ndarray, codec: str, pts: int, rate: int) -> av.AudioFrame:
    planar = np.ascontiguousarray(block.T, dtype=np.float32)
    if codec == "alac":  # 24-bit ALAC: FFmpeg's encoder takes s32p and keeps the top 24 bits
        levels = np.clip(np.round(planar.astype(np.float64) * 2**23), -(2**23), 2**23 - 1).astype(np.int32)
        frame = av.AudioFrame.from_ndarray(levels << 8, format="s32p", layout="stereo")
    else:
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


class NIStemWriter:
    """Stream a mixture and four stereo stems into an NI stem file at ``path``; atomic on ``commit``."""

    def __init__(
        self, path: Path, sample_rate: int, stem_names: Sequence[str], codec: str = "aac", bitrate: int = 256_000,
        colors: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        if codec not in NI_CODECS:
            raise StemsepError(f"NI stem files hold {' or '.join(NI_CODECS)} audio, not {codec!r}.")
        self.manifest = NIStemManifest(tuple(stem_names), tuple(colors) if colors is not None else NI_COLORS)
        self.path, self.sample_rate, self.codec, self.samples = path, sample_rate, codec, 0
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self._container = av.open(str(self.tmp), mode="w", format="mp4")
            self._streams = [self._add_stream(index, bitrate) for index in range(5)]
        except Exception:
            self.tmp.unlink(missing_ok=True)
            raise

    def _add_stream(self, index: int, bitrate: int) -> av.audio.stream.AudioStream:
        stream = self._container.add_stream(self.codec, rate=self.sample_rate, layout="stereo")
        if self.codec == "alac":
            stream.codec_context.format = "s32p"
        else:
            stream.bit_rate = bitrate
        # Only the mixture is enabled (tkhd flag 1), so ordinary players play it and not all five at once.
        stream.disposition = av.stream.Disposition.default if index == 0 else av.stream.Disposition(0)
        return stream

    def write(self, mixture: np.ndarray, stems: Sequence[np.ndarray]) -> None:
        """Append float32 [n, 2] blocks: the mixture and the four stems, all with the same n."""
        blocks = [mixture, *stems]
        if len(blocks) != 5 or any(b.shape != (mixture.shape[0], 2) for b in blocks):
            raise ValueError(f"expected a mixture and 4 stems of shape [n, 2], got {[b.shape for b in blocks]}")
        if mixture.shape[0] == 0:
            return
        for stream, block in zip(self._streams, blocks):
            for packet in stream.encode(_frame(block, self.codec, self.samples, self.sample_rate)):
                self._container.mux(packet)
        self.samples += mixture.shape[0]

    def commit(self, overwrite: bool) -> None:
        """Finish the file, add the manifest and move it into place."""
        try:
            for stream in self._streams:
                for packet in stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            insert_stem_box(self.tmp, self.manifest.to_json())
            move_into_place(self.tmp, self.path, overwrite)
        finally:
            self.tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        self.tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class NIStreamInfo:
    codec: str
    sample_rate: int
    channels: int
    samples: int  # from packet timestamps: encoder priming and the last frame's padding excluded
    enabled: bool  # the tkhd enabled flag, as FFmpeg reports it (default disposition)


@dataclass(frozen=True)
class NIStemsInfo:
    streams: tuple[NIStreamInfo, ...]
    manifest: dict[str, Any] | None  # the parsed moov/udta/stem JSON


def _find_stem_box(f: BinaryIO) -> bytes | None:
    start, end = 0, f.seek(0, os.SEEK_END)
    for kind in (b"moov", b"udta", b"stem"):
        box = next((b for b in iter_boxes(f, start, end) if b.kind == kind), None)
        if box is None:
            return None
        start, end = box.start + box.header, box.end
    f.seek(start)
    return f.read(end - start)


def _stream_infos(container: Any) -> tuple[NIStreamInfo, ...]:
    """Each audio stream; its length is the end of its last packet (pts + duration), demuxed without decoding."""
    ends: dict[int, int] = {}
    for packet in container.demux(*container.streams.audio):
        if packet.pts is not None and packet.duration:
            stream = packet.stream
            end = round((packet.pts + packet.duration) * stream.time_base * stream.sample_rate)
            ends[stream.index] = max(ends.get(stream.index, 0), end)
    default = av.stream.Disposition.default
    return tuple(
        NIStreamInfo(s.codec_context.name, s.sample_rate, s.channels, ends.get(s.index, 0), bool(s.disposition & default))
        for s in container.streams.audio
    )


def read_ni_stems(path: Path) -> NIStemsInfo:
    """The audio streams of an MP4 and its NI stem manifest (None when it has no ``moov/udta/stem`` box)."""
    try:
        with av.open(str(path)) as container:
            streams = _stream_infos(container)
        with open(path, "rb") as f:
            payload = _find_stem_box(f)
        manifest = json.loads(payload) if payload is not None else None
    except (av.FFmpegError, OSError, ValueError) as error:
        raise StemsepError(f"{path} could not be read as an NI stem file ({describe(error)}).") from None
    return NIStemsInfo(streams, manifest)
