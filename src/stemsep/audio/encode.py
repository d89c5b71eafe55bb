"""Streaming, atomic encoding of stems.

Each stem is written to a hidden temporary file beside its destination and
renamed into place only when complete, so an interrupted run never leaves a
truncated stem and never replaces a file the user had with a partial one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr

from stemsep.errors import StemsepError
from stemsep.files import move_into_place

NI_STEMS = "stem.mp4"  # Native Instruments Stems: one file per song (audio.ni_stems)
STALE_PARTIAL_S = 24 * 3600  # a .partial of ours this old was left by a killed run


@dataclass(frozen=True)
class Codec:
    name: str  # what -c takes, and the file extension
    container: str  # FFmpeg muxer, or "soundfile"
    encoder: str
    rate: int | None = None  # forced encoder rate (Opus runs at 48 kHz)
    lossy: bool = True
    min_samples: int = 1  # shorter stems decode to nothing (measured: AAC < 1024, WMA < 4096 samples)

    def encoder_for(self, bits: str | None) -> tuple[str, str | None]:
        """(FFmpeg encoder, sample format) for ``--bits`` (16, 24, 32f; None: the codec's default)."""
        if self.name == "wav" and bits:
            return {"16": ("pcm_s16le", None), "24": ("pcm_s24le", None), "32f": ("pcm_f32le", None)}[bits]
        if self.name == "flac" and bits == "24":
            return "flac", "s32"  # FFmpeg's FLAC encoder writes 24-bit samples from s32
        return self.encoder, None


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec("wav", "wav", "pcm_s16le", lossy=False),
        Codec("flac", "flac", "flac", lossy=False),
        Codec("mp3", "mp3", "libmp3lame"),
        Codec("m4a", "ipod", "aac", min_samples=1024),
        Codec("ogg", "soundfile", "vorbis"),
        Codec("opus", "ogg", "libopus", rate=48000),
        Codec("wma", "asf", "wmav2", min_samples=4096),
        Codec(NI_STEMS, "mp4", "aac"),  # --bits 24: ALAC instead
    )
}


def available_codecs() -> dict[str, str | None]:
    """Codec name -> None if usable here, else the reason it is not."""
    status: dict[str, str | None] = {}
    for codec in CODECS.values():
        if codec.container == "soundfile":
            import soundfile

            ok = "VORBIS" in soundfile.available_subtypes("OGG")
            status[codec.name] = None if ok else "libsndfile was built without Vorbis"
            continue
        try:
            av.codec.Codec(codec.encoder, "w")
            status[codec.name] = None
        except Exception:
            status[codec.name] = f"this FFmpeg build has no {codec.encoder} encoder"
    return status


def resolve_codec(name: str) -> Codec:
    codec = CODECS.get(name.lower())
    if codec is None:
        raise StemsepError(f"Unknown codec {name!r}; choose one of {', '.join(CODECS)}.")
    reason = available_codecs()[codec.name]
    if reason:
        raise StemsepError(f"Codec {codec.name} is unavailable: {reason}.")
    return codec


def parse_bitrate(text: str) -> int:
    """'128k' -> 128000, '320000' -> 320000."""
    value = text.strip().lower()
    scale = 1
    if value.endswith("k"):
        value, scale = value[:-1], 1000
    elif value.endswith("m"):
        value, scale = value[:-1], 1_000_000
    try:
        bits = int(float(value) * scale)
    except ValueError:
        raise StemsepError(f"Bitrate {text!r} is not a number like 128k.") from None
    if bits <= 0:
        raise StemsepError(f"Bitrate {text!r} must be positive.")
    return bits


class StemWriter:
    """Write one float32 stream of ``channels`` to ``path`` in ``codec``; atomic on ``commit``.

    Samples go to the encoder as they are: clamping or rescaling is the
    caller's choice (``separate.separator``). A codec with a fixed rate
    (Opus: 48 kHz) gets its samples resampled here, so the encoder never
    buffers a resampler of its own that a very short stem would not flush.
    """

    def __init__(
        self, path: Path, codec: Codec, sample_rate: int, bitrate: int, bits: str | None = None, channels: int = 2
    ) -> None:
        self.path = path
        self.codec = codec
        self.sample_rate = sample_rate
        self.channels = channels
        self.layout = "stereo" if channels == 2 else "mono"
        self.rate = codec.rate or sample_rate
        self._resampler = None
        if self.rate != sample_rate:
            self._resampler = soxr.ResampleStream(sample_rate, self.rate, channels, dtype="float32", quality="HQ")
        remove_stale_partials(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.samples = 0  # at self.rate
        try:
            self._open(bitrate, bits)
        except Exception:
            self.tmp.unlink(missing_ok=True)
            raise

    def _open(self, bitrate: int, bits: str | None) -> None:
        if self.codec.container == "soundfile":
            import soundfile

            # Vorbis is VBR: map the bitrate onto libsndfile's 0 (best) .. 1 scale.
            level = float(np.clip(1.0 - (bitrate - 64_000) / 256_000, 0.0, 1.0))
            self._sf = soundfile.SoundFile(
                self.tmp,
                "w",
                samplerate=self.rate,
                channels=self.channels,
                format="OGG",
                subtype="VORBIS",
                compression_level=level,
            )
            return
        self._sf = None
        encoder, sample_format = self.codec.encoder_for(bits)
        self._container = av.open(str(self.tmp), mode="w", format=self.codec.container)
        self._stream = self._container.add_stream(encoder, rate=self.rate, layout=self.layout)
        if sample_format:
            self._stream.format = sample_format
        if self.codec.lossy:
            self._stream.bit_rate = bitrate

    def write(self, block: np.ndarray) -> None:
        """Append float32 [n, channels] samples at ``sample_rate``."""
        if self._resampler is not None:
            block = self._resampler.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))
        self._encode(block)

    def _encode(self, block: np.ndarray) -> None:
        if block.shape[0] == 0:
            return
        if self._sf is not None:
            self._sf.write(block)
        else:
            planar = np.ascontiguousarray(block.T, dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.samples
            frame.time_base = Fraction(1, self.rate)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        self.samples += block.shape[0]

    def commit(self, overwrite: bool) -> None:
        """Finish the file and move it into place."""
        try:
            if self._resampler is not None:
                self._encode(self._resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True))
            if self.samples < self.codec.min_samples:
                raise StemsepError(
                    f"A {self.samples}-sample stem is too short for {self.codec.name} (it needs {self.codec.min_samples} "
                    "samples to decode to anything); write it with -c wav or flac."
                )
            if self._sf is not None:
                self._sf.close()
            else:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            move_into_place(self.tmp, self.path, overwrite)
        finally:
            self.tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._sf is not None:
                self._sf.close()
            else:
                self._container.close()
        self.tmp.unlink(missing_ok=True)


PARTIAL_SUFFIX = ".partial"


def remove_stale_partials(folder: Path, max_age_s: float = STALE_PARTIAL_S) -> None:
    """Remove hidden ``.*.partial`` files of ours older than ``max_age_s`` (left by a killed run)."""
    now = time.time()
    with contextlib.suppress(OSError):
        for leftover in folder.glob(f".*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(OSError):
                if now - leftover.stat().st_mtime > max_age_s:
                    leftover.unlink()
