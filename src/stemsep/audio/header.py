"""The length an uncompressed audio file's header declares, against the bytes the file holds.

FFmpeg estimates a WAV's or AIFF's duration from the file's size, so a file
cut short (a copy interrupted, a download stopped) decodes to its first part
without any error. The header still holds the size of the sample data that
was written: RIFF/RIFX/RF64/BW64 WAV (the ``data`` chunk, or ``ds64``), Sony
Wave64, AIFF and AIFF-C (``COMM`` frames and the ``SSND`` chunk), CAF (``desc``
and ``data``), Sun AU. Sizes a writer leaves when it cannot seek back (a pipe:
0, 0xFFFFFFFF, sox's 0x7FFFF000, CAF's -1) mean "unknown length", not a cut file.

Compressed formats are not read here: their decoder reaches the end early
and ``decode.stream_audio`` compares that with the declared duration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFF000}
PCM_TAGS = {1, 3, 6, 7, 0xFFFE}  # integer, float, A-law, mu-law, extensible: bytes = frames x block align
AU_BYTES_PER_SAMPLE = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
MAX_CHUNKS = 1000  # a header is a handful of chunks; garbage is not walked for long
TOLERANCE_S = 0.001  # a writer's rounding (a partial last frame, a pad byte) is not a cut file


@dataclass(frozen=True)
class DataLength:
    """Seconds of sample data the header declares, and seconds the file holds."""

    declared: float
    present: float

    @property
    def truncated(self) -> bool:
        return self.present < self.declared - TOLERANCE_S


def data_length(path: Path) -> DataLength | None:
    """What ``path``'s header declares against what it holds; None for other formats or unknown lengths."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(0)
            magic = stream.read(40)
            if magic[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and magic[8:12] == b"WAVE":
                order = ">" if magic[:4] == b"RIFX" else "<"
                return _wave(stream, _chunks(stream, size, 12, order + "4sI"), size, order)
            if magic[:4] == b"riff" and magic[24:28] == b"wave":  # Wave64: GUIDs, 64-bit sizes counting the header
                return _wave(stream, _chunks(stream, size, 40, "<16sQ", align=8, inclusive=True), size, "<")
            if magic[:4] == b"FORM" and magic[8:12] in (b"AIFF", b"AIFC"):
                return _aiff(stream, size)
            if magic[:4] == b"caff":
                return _caf(stream, size)
            if magic[:4] == b".snd":
                return _au(magic, size)
    except (OSError, struct.error):
        return None  # unreadable or cut inside the header: the decoder says what is wrong
    return None


def _chunks(stream: BinaryIO, size: int, start: int, header: str, align: int = 2, inclusive: bool = False):
    """(id, size of the body, offset of the body) of each chunk from ``start``: ``header`` is the
    struct layout of a chunk's id and size; ``inclusive``: the size counts the header too."""
    position, header_size = start, struct.calcsize(header)
    for _ in range(MAX_CHUNKS):
        if position + header_size > size:
            return
        stream.seek(position)
        chunk_id, chunk_size = struct.unpack(header, stream.read(header_size))
        body_size = chunk_size - header_size if inclusive else chunk_size
        yield chunk_id[:4], body_size, position + header_size
        if body_size < 0:
            return
        position += header_size + -(-body_size // align) * align


def _wave(stream: BinaryIO, chunks, size: int, order: str) -> DataLength | None:
    ds64_data_size = None
    bytes_per_second = None
    for chunk_id, chunk_size, body in chunks:
        stream.seek(body)
        if chunk_id == b"ds64":
            _, ds64_data_size = struct.unpack(order + "QQ", stream.read(16))
        elif chunk_id == b"fmt ":
            tag, _, rate, byte_rate, block_align = struct.unpack(order + "HHIIH", stream.read(14))
            bytes_per_second = rate * block_align if tag in PCM_TAGS else byte_rate
        elif chunk_id == b"data":
            declared = ds64_data_size if chunk_size == 0xFFFFFFFF and ds64_data_size else chunk_size
            if not bytes_per_second or declared in UNKNOWN_SIZES or declared == 0xFFFFFFFFFFFFFFFF:
                return None
            return DataLength(declared / bytes_per_second, min(size - body, declared) / bytes_per_second)
    return None


def _aiff(stream: BinaryIO, size: int) -> DataLength | None:
    seconds = None
    for chunk_id, chunk_size, body in _chunks(stream, size, 12, ">4sI"):
        stream.seek(body)
        if chunk_id == b"COMM":
            _, frames, _, exponent, mantissa = struct.unpack(">hIhHQ", stream.read(18))
            rate = _extended(exponent, mantissa)
            seconds = frames / rate if frames and rate > 0 else None
        elif chunk_id == b"SSND":
            (offset,) = struct.unpack(">I", stream.read(4))
            declared = chunk_size - 8 - offset  # after the offset and block-size fields and the padding
            if seconds is None or chunk_size in UNKNOWN_SIZES or declared <= 0:
                return None
            present = min(size - (body + 8 + offset), declared)
            return DataLength(seconds, seconds * max(present, 0) / declared)
    return None


def _caf(stream: BinaryIO, size: int) -> DataLength | None:
    bytes_per_second = None
    for chunk_id, chunk_size, body in _chunks(stream, size, 8, ">4sq", align=1):
        stream.seek(body)
        if chunk_id == b"desc":
            rate, _, _, bytes_per_packet, frames_per_packet = struct.unpack(">d4sIII", stream.read(24))
            if bytes_per_packet and frames_per_packet:  # constant bit rate: PCM, A-law, mu-law
                bytes_per_second = rate * bytes_per_packet / frames_per_packet
        elif chunk_id == b"data":
            declared = chunk_size - 4  # after the edit count
            if not bytes_per_second or chunk_size < 0 or declared <= 0:
                return None
            present = min(size - (body + 4), declared)
            return DataLength(declared / bytes_per_second, max(present, 0) / bytes_per_second)
    return None


def _au(header: bytes, size: int) -> DataLength | None:
    offset, declared, encoding, rate, channels = struct.unpack(">5I", header[4:24])
    if declared in UNKNOWN_SIZES or encoding not in AU_BYTES_PER_SAMPLE or not rate or not channels:
        return None
    bytes_per_second = rate * channels * AU_BYTES_PER_SAMPLE[encoding]
    return DataLength(declared / bytes_per_second, max(min(size - offset, declared), 0) / bytes_per_second)


def _extended(exponent: int, mantissa: int) -> float:
    """An IEEE 754 80-bit extended float (AIFF's sample rate)."""
    if exponent == 0 and mantissa == 0:
        return 0.0
    sign = -1.0 if exponent & 0x8000 else 1.0
    return sign * mantissa * 2.0 ** ((exponent & 0x7FFF) - 16383 - 63)
