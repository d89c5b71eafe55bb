"""Admission: an upload becomes a ``Job``, or is refused with a status and stemsep's own sentence.

The form's model, stems and codec are checked by the checks the CLI uses
(``load_preset``, ``OutputOptions``, ``OutputOptions.plan``), then the song
is probed and decoded once, so that a file the job could not separate is
refused now, not minutes later: 415 for what FFmpeg cannot read as audio,
422 for audio that cannot be separated (cut short, damaged, NaN samples, no
samples) and for unknown options, 413 for a song over --max-duration-s.
Decoding costs ~1 s per 100 s of song (0.10 s for the 10.9 s example mp3,
measured), and gives the job its exact duration, which its progress divides.

Sentences name the upload by its client-side name, never by its path here.
"""

from __future__ import annotations

from pathlib import Path

from stemsep.audio.decode import count_audio_streams, probe, stream_audio
from stemsep.config import PRESETS, load_preset
from stemsep.errors import StemsepError
from stemsep.separate.output import OutputOptions
from stemsep.serve.jobs import Job
from stemsep.serve.settings import ServeSettings
from stemsep.serve.upload import RefusalError, Upload

SERVED_CODECS = ("wav", "flac", "mp3", "m4a", "ogg", "opus")  # one file per stem, each playable in a browser
DEFAULT_MODEL = "spleeter:2stems"
DEFAULT_CODEC = "wav"
PRESET_PREFIX = "spleeter:"
STEM_FILENAME = "{instrument}.{codec}"  # inside the job's stems/ folder


def output_options(codec: str, stems: tuple[str, ...] | None) -> OutputOptions:
    """The value the CLI would build for ``-c CODEC --stems ...``, writing into one job's folder."""
    return OutputOptions(codec=codec, stems=stems, filename_format=STEM_FILENAME, overwrite=True)


def admit(upload: Upload, job_id: str, settings: ServeSettings) -> Job:
    """The job ``upload`` asks for; raises ``RefusalError``."""
    model, codec, stems = _checked_options(upload.fields)
    duration = _checked_audio(upload.path, upload.filename, settings.max_duration_s)
    return Job(job_id, model, codec, stems, upload.filename, duration, upload.path.name)


def _checked_options(fields: dict[str, str]) -> tuple[str, str, tuple[str, ...]]:
    """Model, codec and the stems the job writes, from the form's fields."""
    model = fields.get("model", "").strip() or DEFAULT_MODEL
    codec = fields.get("codec", "").strip().lower() or DEFAULT_CODEC
    text = fields.get("stems", "").strip()
    wanted = tuple(name.strip() for name in text.split(",") if name.strip()) if text else None
    try:
        if not model.startswith(PRESET_PREFIX):
            known = ", ".join(PRESET_PREFIX + name for name in PRESETS)
            raise StemsepError(f"Unknown model {model[:80]!r}; this server runs the presets {known}.")
        instruments = load_preset(model.removeprefix(PRESET_PREFIX)).instruments
        if codec not in SERVED_CODECS:
            raise StemsepError(f"The codec {codec[:40]!r} is not served here; choose {', '.join(SERVED_CODECS)}.")
        stems = tuple(output_options(codec, wanted).plan(instruments))
    except StemsepError as error:
        raise RefusalError(422, str(error)) from None
    return model, codec, stems


def _checked_audio(path: Path, filename: str, max_duration_s: float) -> float:
    """Seconds of audio in ``path``, decoded to the end (with stemsep's checks for cut and damaged files)."""
    try:
        info = probe(path)
        if info.duration is not None and info.duration > max_duration_s:
            raise _too_long(filename, info.duration, max_duration_s)
        frames = sum(block.shape[0] for block in stream_audio(path, info.sample_rate))
    except RefusalError:
        raise
    except StemsepError as error:
        raise RefusalError(_status_of_bad_audio(path), str(error).replace(str(path), filename)) from None
    duration = frames / info.sample_rate
    if duration > max_duration_s:
        raise _too_long(filename, duration, max_duration_s)
    return duration


def _status_of_bad_audio(path: Path) -> int:
    """415 when the file holds no audio FFmpeg can read, 422 when it does but it cannot be separated."""
    try:
        return 422 if count_audio_streams(path) else 415
    except StemsepError:
        return 415


def _too_long(filename: str, seconds: float, max_duration_s: float) -> RefusalError:
    return RefusalError(413, f"{filename} lasts {seconds:.1f} s, longer than this server's limit of {max_duration_s:g} s.")
