"""``Separator``: a model's engine and the streaming pipeline, for arrays and files."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soxr

from stemsep.audio.decode import probe, stream_audio, to_stereo
from stemsep.audio.encode import StemWriter, parse_bitrate, resolve_codec
from stemsep.errors import StemsepError
from stemsep.separate.engine import DEFAULT_BACKEND, Engine, load_engine
from stemsep.separate.stream import Progress, stream_stems

DEFAULT_FILENAME_FORMAT = "{filename}/{instrument}.{codec}"
DEFAULT_CHUNK_SEGMENTS = 1  # 512 frames ~ 11.9 s at 44.1 kHz
FILENAME_FIELDS = {"filename", "foldername", "instrument", "codec"}


class Separator:
    """Separate waveforms or files with a Spleeter model.

    >>> Separator("spleeter:4stems").separate(waveform, 44100)["vocals"].shape
    """

    def __init__(
        self,
        model: str = "spleeter:2stems",
        mwf: bool = False,
        model_dir: str | Path | None = None,
        chunk_segments: int = DEFAULT_CHUNK_SEGMENTS,
        backend: str = DEFAULT_BACKEND,
        quantization: str | None = None,
    ) -> None:
        """``model``: a preset, a config.json, a model folder, or a folder made by ``stemsep export``.
        ``backend``: onnx (default) or litert run it without TensorFlow (a model's first use converts
        it once), keras runs the Keras U-Net with TensorFlow; see ``separate.engine``."""
        if chunk_segments < 1:
            raise StemsepError("chunk_segments must be at least 1.")
        self.model: Engine = load_engine(model, backend, Path(model_dir) if model_dir else None, quantization)
        self.config = self.model.config
        self.mwf = mwf
        self.chunk_segments = chunk_segments

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.config.instruments

    def stream(self, blocks: Iterable[np.ndarray], progress: Progress | None = None) -> Iterator[list[np.ndarray]]:
        """Stereo float32 blocks at the model rate in; per-instrument blocks out, same length in total."""
        return stream_stems(self.model, blocks, self.mwf, self.chunk_segments, progress)

    # -- arrays --------------------------------------------------------------

    def separate(self, waveform: np.ndarray, sample_rate: int | None = None) -> dict[str, np.ndarray]:
        """[n] or [n, channels] float waveform -> {instrument: [n, 2] float32} at the same rate."""
        rate = sample_rate or self.config.sample_rate
        wave = np.asarray(waveform, dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[:, None]
        if wave.ndim != 2 or wave.shape[0] == 0:
            raise StemsepError("The waveform must be a non-empty [samples, channels] array.")
        wave = to_stereo(wave)
        if rate != self.config.sample_rate:
            wave = soxr.resample(wave, rate, self.config.sample_rate, quality="HQ")
        parts: list[list[np.ndarray]] = [[] for _ in self.instruments]
        for pieces in self.stream([wave]):
            for acc, piece in zip(parts, pieces):
                acc.append(piece)
        result = {}
        for name, acc in zip(self.instruments, parts):
            out = np.concatenate(acc)
            if rate != self.config.sample_rate:
                out = soxr.resample(out, self.config.sample_rate, rate, quality="HQ")
            result[name] = out.astype(np.float32, copy=False)
        return result

    # -- files ---------------------------------------------------------------

    def output_paths(self, audio_path: Path, destination: Path, codec: str, filename_format: str) -> dict[str, Path]:
        fields = {name for _, name, _, _ in string.Formatter().parse(filename_format) if name is not None}
        unknown = fields - FILENAME_FIELDS
        if unknown:
            raise StemsepError(
                f"Unknown placeholder {{{sorted(unknown)[0]}}} in the filename format; use {', '.join(sorted(FILENAME_FIELDS))}."
            )
        paths = {}
        for instrument in self.instruments:
            name = filename_format.format(
                filename=audio_path.stem, foldername=audio_path.resolve().parent.name, instrument=instrument, codec=codec
            )
            paths[instrument] = destination / name
        if len(set(paths.values())) != len(paths):
            raise StemsepError("The filename format must contain {instrument}, or every stem would go to the same file.")
        return paths

    def separate_to_file(
        self,
        audio_path: str | Path,
        destination: str | Path,
        codec: str = "wav",
        bitrate: str = "128k",
        filename_format: str = DEFAULT_FILENAME_FORMAT,
        offset: float = 0.0,
        duration: float | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Path]:
        """Separate a file and write one file per instrument; returns their paths.

        Stems are written at the input's sample rate, atomically: on any error
        no stem is left behind and no existing file is touched.
        """
        audio_path, destination = Path(audio_path), Path(destination)
        chosen = resolve_codec(codec)
        bits = parse_bitrate(bitrate)
        if offset < 0 or (duration is not None and duration <= 0):
            raise StemsepError("Offset must be >= 0 and duration > 0.")
        info = probe(audio_path)
        paths = self.output_paths(audio_path, destination, chosen.name, filename_format)
        if not overwrite:
            for path in paths.values():
                if path.exists():
                    raise StemsepError(f"{path} already exists (use --overwrite to replace it).")
        created: list[Path] = []  # folders this call made, removed again if it fails
        writers: list[StemWriter] = []
        try:
            for path in paths.values():
                created += _make_folders(path.parent)
            for path in paths.values():
                try:
                    writers.append(StemWriter(path, chosen, info.sample_rate, bits))
                except OSError as error:
                    raise StemsepError(f"Cannot write to {path.parent} ({error.strerror}).") from None
            self._stream_file_to(writers, audio_path, info.sample_rate, offset, duration, progress)
            for writer in writers:
                writer.commit(overwrite)
        except BaseException:
            for writer in writers:
                writer.abort()
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return paths

    def _stream_file_to(
        self,
        writers: list[StemWriter],
        audio_path: Path,
        file_rate: int,
        offset: float,
        duration: float | None,
        progress: Progress | None,
    ) -> None:
        model_rate = self.config.sample_rate
        back = None
        if file_rate != model_rate:
            back = [soxr.ResampleStream(model_rate, file_rate, 2, dtype="float32", quality="HQ") for _ in writers]
        peak = 0.0

        def watched(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal peak
            for block in blocks:
                peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
                yield block

        blocks = watched(stream_audio(audio_path, model_rate, offset, duration))
        for pieces in self.stream(blocks, progress):
            for i, (writer, piece) in enumerate(zip(writers, pieces)):
                writer.write(back[i].resample_chunk(piece) if back else piece)
        if back:
            for writer, resampler in zip(writers, back):
                writer.write(resampler.resample_chunk(np.zeros((0, 2), np.float32), last=True))
        if peak == 0.0:
            raise StemsepError(f"{audio_path} is silent (every sample is zero): there is nothing to separate.")


def _make_folders(folder: Path) -> list[Path]:
    """mkdir -p that returns the folders it created, outermost first."""
    missing = []
    probe_folder = folder
    while not probe_folder.exists() and probe_folder != probe_folder.parent:
        missing.append(probe_folder)
        probe_folder = probe_folder.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StemsepError(f"Cannot create the output folder {folder} ({error.strerror}).") from None
    return missing[::-1]
