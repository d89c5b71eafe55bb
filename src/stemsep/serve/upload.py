"""An upload: multipart/form-data streamed to disk as it arrives, refused the moment it passes the limit.

Starlette's ``request.form()`` reads the whole body (spooling the file)
before a handler sees any of it, so a size limit could only be enforced after
the bytes were taken. Here python_multipart's push parser is fed
``request.stream()`` chunk by chunk: the part named ``file`` goes straight
to ``upload[.ext]`` in the job's folder (the extension sanitized from the
client's file name, which is kept for display only), the other fields (a few
short strings) stay in memory, each capped, and every byte is counted.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from stemsep.errors import StemsepError

FILE_FIELD = "file"
FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the short fields around the file
FIELD_LIMIT = 1000  # bytes of one non-file field
_EXTENSION = re.compile(r"\.[a-z0-9]{1,10}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RefusalError(StemsepError):
    """A request the service turns down: its HTTP status and one sentence."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def too_large(limit_mb: float) -> RefusalError:
    return RefusalError(413, f"The upload is larger than this server's limit of {limit_mb:g} MB.")


@dataclass
class Upload:
    """What a form brought: the song written to ``path`` and the other fields."""

    path: Path
    filename: str  # the client's name for the file, for display
    fields: dict[str, str] = field(default_factory=dict)


def display_name(raw: str) -> str:
    """The last component of a client's file name, without control characters, at most 200 characters."""
    name = _CONTROL.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:200] or "upload"


def stored_name(filename: str) -> str:
    """``upload`` plus the file name's extension when it is a plain one (FFmpeg uses it as a hint)."""
    suffix = Path(filename).suffix.lower()
    return "upload" + (suffix if _EXTENSION.fullmatch(suffix) else "")


async def receive_upload(chunks: AsyncIterator[bytes], content_type: str, folder: Path, limit_mb: float) -> Upload:
    """Parse the body into ``folder``; raise ``RefusalError`` (413 past ``limit_mb``, 415, 422, 400)."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise RefusalError(415, f"Send the song as multipart/form-data, in the field '{FILE_FIELD}'.")
    form = _Form(folder, int(limit_mb * 1_000_000), limit_mb)
    try:
        parser = MultipartParser(boundary, form.callbacks())
    except FormParserError:
        raise RefusalError(400, "The multipart boundary of the request is not valid.") from None
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > form.limit + FORM_OVERHEAD:
                raise too_large(limit_mb)
            parser.write(chunk)
            form.raise_problem()
        parser.finalize()
    except FormParserError:
        raise RefusalError(400, "The request body is not valid multipart/form-data.") from None
    finally:
        form.close()
    form.raise_problem()
    if not form.ended:
        raise RefusalError(400, "The upload ended before its form was complete.")
    if form.upload is None:
        raise RefusalError(422, f"The form has no file: send the song in the field '{FILE_FIELD}'.")
    form.upload.fields = form.fields
    return form.upload


class _Form:
    """python_multipart's callbacks: headers of each part, then its data to a file or a field."""

    def __init__(self, folder: Path, limit: int, limit_mb: float) -> None:
        self.folder, self.limit, self.limit_mb = folder, limit, limit_mb
        self.upload: Upload | None = None
        self.fields: dict[str, str] = {}
        self.ended = False
        self.problem: RefusalError | None = None  # raised after the parser returns, not through it
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._name: str | None = None  # the field the current part belongs to
        self._file: BinaryIO | None = None
        self._buffer = bytearray()
        self._written = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._grow("_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._grow("_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def raise_problem(self) -> None:
        if self.problem is not None:
            raise self.problem

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _grow(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self._headers, self._field, self._value, self._name = {}, b"", b"", None
        self._buffer = bytearray()

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == FILE_FIELD and self.problem is None:
            if self.upload is not None:
                self.problem = RefusalError(422, f"Send one file per job, in the field '{FILE_FIELD}'.")
                return
            filename = display_name(options.get(b"filename", b"").decode("utf-8", "replace"))
            path = self.folder / stored_name(filename)
            self._file = path.open("wb")
            self.upload = Upload(path, filename)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.problem is not None:
            return
        if self._file is not None:
            self._written += end - start
            if self._written > self.limit:
                self.problem = too_large(self.limit_mb)
                return
            self._file.write(data[start:end])
        elif self._name:
            self._buffer += data[start:end]
            if len(self._buffer) > FIELD_LIMIT:
                self.problem = RefusalError(422, f"The form field '{self._name[:40]}' is longer than {FIELD_LIMIT} bytes.")

    def _part_end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._name and self._name != FILE_FIELD and self.problem is None:
            try:
                self.fields[self._name] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                self.problem = RefusalError(422, f"The form field '{self._name[:40]}' is not UTF-8 text.")

    def _end(self) -> None:
        self.ended = True
