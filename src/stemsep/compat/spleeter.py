"""Spleeter 2.4's Python API on stemsep: code written for Spleeter runs once its imports say

    from stemsep.compat.spleeter import AudioAdapter, Codec, Separator, SpleeterError

``Separator(params_descriptor, MWF, multiprocess)`` with ``separate``,
``separate_to_file``, ``save_to_file`` and ``join``, and ``AudioAdapter``
(``default``, ``get``, ``load``, ``save``) keep Spleeter's signatures,
defaults (600 s read by ``separate_to_file``, stems written at the model's
rate, existing files replaced silently) and results ([n, 2] float32 per
instrument). Underneath: stemsep's TensorFlow-free engine and its PyAV
decoder and encoder instead of TensorFlow and an ``ffmpeg`` process.

Deliberate differences, each where Spleeter's behaviour is an accident:
- a filename format that sends two stems to one file raises SpleeterError
  before the song is read (Spleeter separates, writes one stem, then raises);
  an unknown ``{placeholder}`` is a SpleeterError too (Spleeter: KeyError);
- stems are written atomically (a temporary file renamed into place);
- ``multiprocess`` runs the writes in threads, not a process pool that
  pickles every stem; ``join(timeout)`` honours its timeout per write
  (Spleeter's blocks without limit before it looks at the timeout);
- the model loads in the constructor, so a missing model is reported there;
- ``load`` returns the file's rate as an int (Spleeter: ffprobe's string)
  and at most 2 channels (Spleeter: all, of which ``separate`` keeps 2);
- ``AudioAdapter.load_waveform``, the TensorFlow dataset hook of Spleeter's
  training pipeline, is not provided.
Every ``StemsepError`` raised inside surfaces as ``SpleeterError``, a subclass.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from enum import Enum
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from stemsep.audio import encode
from stemsep.audio.decode import probe, stream_audio
from stemsep.errors import StemsepError
from stemsep.separate import FILENAME_FIELDS
from stemsep.separate import Separator as StemsepSeparator

DEFAULT_FILENAME_FORMAT = "{filename}/{instrument}.{codec}"  # Spleeter's, the same as stemsep's
DEFAULT_BITRATE = "128k"  # what Spleeter's FFmpeg used when given none
DEFAULT_DURATION = 600.0  # seconds separate_to_file reads, as Spleeter


class SpleeterError(StemsepError):
    """Spleeter's exception; a StemsepError, so ``except StemsepError`` catches it too."""


@contextlib.contextmanager
def _spleeter_errors() -> Iterator[None]:
    """Re-raise a StemsepError from stemsep as a SpleeterError with the same message."""
    try:
        yield
    except SpleeterError:
        raise
    except StemsepError as error:
        raise SpleeterError(str(error)) from error


class Codec(str, Enum):
    """Spleeter's codecs; members are their strings, in ``format`` too (as Spleeter's StrEnum)."""

    WAV = "wav"
    MP3 = "mp3"
    OGG = "ogg"
    M4A = "m4a"
    WMA = "wma"
    FLAC = "flac"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# -- audio ---------------------------------------------------------------------


class AudioAdapter(ABC):
    """Loads and saves audio for ``Separator``; subclass it for other storage, as in Spleeter."""

    _DEFAULT: AudioAdapter | None = None

    @abstractmethod
    def load(
        self,
        audio_descriptor: Any,
        offset: float | None = None,
        duration: float | None = None,
        sample_rate: float | None = None,
        dtype: Any = b"float32",
    ) -> tuple[np.ndarray, float]:
        """(waveform [n, channels], sample rate) of the audio ``audio_descriptor`` names."""

    @abstractmethod
    def save(self, path: str | Path, data: np.ndarray, sample_rate: float, codec: Any = None, bitrate: str | None = None) -> None:
        """Write ``data`` [n, channels] at ``sample_rate`` to ``path``."""

    @classmethod
    def default(cls) -> AudioAdapter:
        """The shared stemsep adapter (PyAV decoding and encoding, no FFmpeg binary)."""
        if AudioAdapter._DEFAULT is None:
            AudioAdapter._DEFAULT = StemsepAudioAdapter()
        return AudioAdapter._DEFAULT

    @classmethod
    def get(cls, descriptor: str) -> AudioAdapter:
        """An instance of the adapter class ``module.Class``; the default one for an empty descriptor."""
        if not descriptor:
            return cls.default()
        module_name, _, class_name = descriptor.rpartition(".")
        try:
            adapter_class = getattr(import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            raise SpleeterError(f"Cannot import the audio adapter {descriptor!r}; give it as module.Class.") from None
        if not (isinstance(adapter_class, type) and issubclass(adapter_class, AudioAdapter)):
            raise SpleeterError(f"{class_name} is not a valid AudioAdapter class")
        return adapter_class()


class StemsepAudioAdapter(AudioAdapter):
    """``AudioAdapter.default()``: stemsep's decoder (FFmpeg's float conversion, soxr resampling) and encoder."""

    def load(
        self,
        audio_descriptor: Any,
        offset: float | None = None,
        duration: float | None = None,
        sample_rate: float | None = None,
        dtype: Any = b"float32",
    ) -> tuple[np.ndarray, float]:
        """Mono files stay [n, 1]; more than 2 channels become the first 2."""
        path = Path(os.fsdecode(audio_descriptor))
        with _spleeter_errors():
            info = probe(path)
            rate = int(sample_rate) if sample_rate else info.sample_rate
            blocks = stream_audio(path, rate, float(offset or 0.0), None if duration is None else float(duration))
            waveform = np.concatenate(list(blocks))
        if info.channels == 1:
            waveform = waveform[:, :1]  # stream_audio duplicated it: both columns are the same samples
        wanted = np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype)
        return waveform.astype(wanted, copy=False), sample_rate or rate

    def save(self, path: str | Path, data: np.ndarray, sample_rate: float, codec: Any = None, bitrate: str | None = None) -> None:
        """Replace ``path`` atomically; the codec is ``codec`` or the file extension's."""
        path = Path(os.fsdecode(path))
        if not path.parent.is_dir():
            raise SpleeterError(f"Output directory does not exist: {path.parent}")
        samples = np.asarray(data, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2 or samples.shape[1] not in (1, 2):
            raise SpleeterError(f"Audio to save must be [samples, 1 or 2 channels], not shape {samples.shape}.")
        resolved, bits_per_second = self.check_output(codec or path.suffix.lstrip("."), bitrate)
        try:
            writer = encode.StemWriter(path, resolved, int(sample_rate), bits_per_second, channels=samples.shape[1])
        except OSError as error:
            raise SpleeterError(f"Cannot write {path} ({error.strerror}).") from None
        try:
            writer.write(samples)
            with _spleeter_errors():
                writer.commit(overwrite=True)
        except BaseException:
            writer.abort()
            raise

    @staticmethod
    def check_output(codec: Any, bitrate: str | None) -> tuple[encode.Codec, int]:
        """The encoder for ``codec`` and ``bitrate`` in bits/s; SpleeterError if either is unusable."""
        name = str(codec).lower()
        if name == encode.NI_STEMS:
            raise SpleeterError(
                "stem.mp4 holds a whole song, not one stem: use stemsep.separate.Separator with OutputOptions(codec='stem.mp4')."
            )
        with _spleeter_errors():
            return encode.resolve_codec(name), encode.parse_bitrate(bitrate or DEFAULT_BITRATE)


# -- separation ----------------------------------------------------------------


class Separator:
    """Spleeter's ``Separator``: ``params_descriptor`` is ``spleeter:<model>`` or a config.json path.

    A pretrained model is looked for in ``$MODEL_PATH/<model>`` (as Spleeter does),
    then in stemsep's cache, else downloaded.
    """

    def __init__(self, params_descriptor: str, MWF: bool = False, multiprocess: bool = True) -> None:  # noqa: N803
        with _spleeter_errors():
            self._separator = StemsepSeparator(params_descriptor, mwf=MWF)
        self._sample_rate = self._separator.config.sample_rate
        self._MWF = MWF
        self._pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="spleeter-save") if multiprocess else None
        self._tasks: list[concurrent.futures.Future] = []

    def separate(self, waveform: np.ndarray, audio_descriptor: Any = "") -> dict[str, np.ndarray]:
        """{instrument: [n, 2] float32} for a [n, channels] waveform at the model's sample rate."""
        with _spleeter_errors():
            return self._separator.separate(waveform)

    def separate_to_file(
        self,
        audio_descriptor: Any,
        destination: str,
        audio_adapter: AudioAdapter | None = None,
        offset: float = 0,
        duration: float = DEFAULT_DURATION,
        codec: Codec | str = Codec.WAV,
        bitrate: str = DEFAULT_BITRATE,
        filename_format: str = DEFAULT_FILENAME_FORMAT,
        synchronous: bool = True,
    ) -> None:
        """Load ``duration`` seconds from ``offset``, separate, and save each stem (see ``save_to_file``)."""
        audio_adapter = audio_adapter or AudioAdapter.default()
        # What would stop the writes is found before the song is read and separated.
        _stem_paths(self._separator.instruments, audio_descriptor, destination, filename_format, codec)
        if isinstance(audio_adapter, StemsepAudioAdapter):
            audio_adapter.check_output(codec, bitrate)
        waveform, _ = audio_adapter.load(audio_descriptor, offset=offset, duration=duration, sample_rate=self._sample_rate)
        sources = self.separate(waveform, audio_descriptor)
        self.save_to_file(sources, audio_descriptor, destination, filename_format, codec, audio_adapter, bitrate, synchronous)

    def save_to_file(
        self,
        sources: dict[str, np.ndarray],
        audio_descriptor: Any,
        destination: str,
        filename_format: str = DEFAULT_FILENAME_FORMAT,
        codec: Codec | str = Codec.WAV,
        audio_adapter: AudioAdapter | None = None,
        bitrate: str = DEFAULT_BITRATE,
        synchronous: bool = True,
    ) -> None:
        """Write each source to ``destination/filename_format`` at the model's rate, replacing what is there.

        ``filename_format`` may use {filename}, {foldername} (of ``audio_descriptor``),
        {instrument} and {codec}. With ``multiprocess`` the writes run in the background;
        ``synchronous`` waits for them (``join``).
        """
        audio_adapter = audio_adapter or AudioAdapter.default()
        paths = _stem_paths(list(sources), audio_descriptor, destination, filename_format, codec)
        for path, data in zip(paths, sources.values()):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            if self._pool is not None:
                self._tasks.append(self._pool.submit(audio_adapter.save, path, data, self._sample_rate, codec, bitrate))
            else:
                audio_adapter.save(path, data, self._sample_rate, codec, bitrate)
        if synchronous and self._pool is not None:
            self.join()

    def join(self, timeout: int = 200) -> None:
        """Wait for the background writes, up to ``timeout`` seconds each; re-raise the first that failed."""
        while self._tasks:
            task = self._tasks[-1]
            try:
                task.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                if not task.done():
                    message = f"A stem is still being written after {timeout} s; call join() again to wait on."
                    raise SpleeterError(message) from None
                raise
            finally:
                if task.done():
                    self._tasks.pop()


def _stem_paths(instruments, audio_descriptor: Any, destination: Any, filename_format: str, codec: Any) -> list[str]:
    """Each instrument's output path, as Spleeter forms it; SpleeterError if two are the same."""
    descriptor = os.fsdecode(audio_descriptor)
    fields = {
        "filename": os.path.splitext(os.path.basename(descriptor))[0],
        "foldername": os.path.basename(os.path.dirname(descriptor)),
        "codec": str(codec),
    }
    paths: list[str] = []
    for instrument in instruments:
        try:
            name = filename_format.format(instrument=instrument, **fields)
        except KeyError as error:
            known = ", ".join(f"{{{field}}}" for field in FILENAME_FIELDS)
            raise SpleeterError(f"Unknown placeholder {{{error.args[0]}}} in the filename format; use {known}.") from None
        except (ValueError, IndexError) as error:
            raise SpleeterError(f"The filename format {filename_format!r} is not valid ({error}).") from None
        path = os.path.join(os.fsdecode(destination), name)
        if path in paths:
            hint = "please check your filename format (add {instrument})"
            raise SpleeterError(f"Separated source path conflict : {path}, {hint}.")
        paths.append(path)
    return paths
