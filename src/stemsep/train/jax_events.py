"""TensorBoard scalars written without TensorFlow, for the JAX trainer's ``logs/``.

An event file is a TFRecord stream (length, masked CRC-32C of the length,
the record, masked CRC-32C of the record) of ``Event`` protobufs: a version
record first, then one ``Summary`` of ``simple_value`` scalars per call.
The few fields needed are encoded here by hand.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


class EventWriter:
    """Appends scalars to ``<folder>/events.out.tfevents.<time>.<host>.jax``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.jax"
        self._write(_field(3, b"brain.Event:2"), 0)

    def scalar(self, tag: str, value: float, step: int) -> None:
        entry = _field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value)
        self._write(_field(5, _field(1, entry)), step)

    def _write(self, body: bytes, step: int) -> None:
        event = _varint(1 << 3 | 1) + struct.pack("<d", time.time()) + _varint(2 << 3) + _varint(step) + body
        header = struct.pack("<Q", len(event))
        with open(self.path, "ab") as out:
            out.write(header + struct.pack("<I", _masked(header)) + event + struct.pack("<I", _masked(event)))
