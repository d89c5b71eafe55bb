"""The separation pipeline, streamed in bounded chunks.

waveform -> (4096 leading zeros) -> STFT -> |X|[:F] in T-frame segments ->
U-Nets -> ratio masks (or norbert Wiener filter) -> masked STFT -> iSTFT x 2/3.

Chunks are whole multiples of T frames, aligned on the reference's segment
grid, and the STFT/iSTFT overlaps are carried across chunk borders, so the
result equals the whole-file computation while memory stays bounded by the
chunk size whatever the input's length. With ``--mwf`` the Wiener filter's
statistics are estimated per chunk (the reference estimates them over the
whole file, which cannot be bounded); files shorter than one chunk match it.
"""

from __future__ import annotations

import contextlib
import math
import string
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soxr

from stemsep.audio.decode import probe, stream_audio, to_stereo
from stemsep.audio.encode import StemWriter, parse_bitrate, resolve_codec
from stemsep.dsp.masks import extend_band, ratio_masks
from stemsep.dsp.stft import OverlapAdd, periodic_hann, stft_frames
from stemsep.dsp.wiener import wiener_stfts
from stemsep.errors import StemsepError

DEFAULT_FILENAME_FORMAT = "{filename}/{instrument}.{codec}"
DEFAULT_CHUNK_SEGMENTS = 1  # 512 frames ~ 11.9 s at 44.1 kHz
FILENAME_FIELDS = {"filename", "foldername", "instrument", "codec"}

Progress = Callable[[float], None]  # seconds of input done


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
        backend: str = "keras",
        quantization: str | None = None,
    ) -> None:
        """``backend`` keras runs ``model`` (preset, config or model folder) with TensorFlow;
        litert and onnx run the spectrogram model exported in the folder ``model``
        (``quantization`` picks among several), without importing TensorFlow."""
        if chunk_segments < 1:
            raise StemsepError("chunk_segments must be at least 1.")
        if backend == "keras":
            from stemsep.model.loader import load_model

            self.model = load_model(model, Path(model_dir) if model_dir else None)
        else:
            from stemsep.runtime.exported import load_exported

            self.model = load_exported(Path(model), backend, quantization)
        self.config = self.model.config
        self.mwf = mwf
        self.chunk_segments = chunk_segments
        self._window = periodic_hann(self.config.frame_length)

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.config.instruments

    # -- core stream ---------------------------------------------------------

    def stream(self, blocks: Iterable[np.ndarray], progress: Progress | None = None) -> Iterator[list[np.ndarray]]:
        """Stereo float32 blocks at the model rate in; per-instrument blocks out, same length in total.

        Two stages overlap: while a worker thread runs the U-Nets of chunk k+1
        (TensorFlow releases the GIL), this thread masks and inverts chunk k.
        """
        cfg = self.config
        length = cfg.frame_length
        overlap_adds = [OverlapAdd(length, cfg.frame_step, cfg.n_channels, self._window) for _ in cfg.instruments]
        masked_buffers: dict[int, np.ndarray] = {}  # per stream, so one Separator can serve several streams
        counted = _Counter(blocks)
        emitted = 0  # samples of the zero-prefixed signal already returned or dropped

        def emit(pieces: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
            # Drop the reference's leading frame of zeros and anything past the input's end.
            nonlocal emitted
            start, stop = emitted, emitted + pieces[0].shape[0]
            emitted = stop
            lo, hi = max(length - start, 0), min(length + counted.samples - start, stop - start)
            if hi > lo:
                yield [p[lo:hi] for p in pieces]
            if progress:
                progress(max(min(emitted - length, counted.samples), 0) / cfg.sample_rate)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stemsep-unet") as unet:
            pending = None
            for stft in self._stft_chunks(counted):
                future = unet.submit(self._estimate, stft)
                if pending is not None:
                    yield from emit(self._reconstruct(*pending, overlap_adds, masked_buffers))
                pending = (stft, future)
            if pending is not None:
                yield from emit(self._reconstruct(*pending, overlap_adds, masked_buffers))
        yield from emit([ola.flush() for ola in overlap_adds])

    def _stft_chunks(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """STFT chunks of ``chunk_segments * T`` frames (the last one shorter), complex64 [channels, frames, bins].

        As the reference: one frame of zeros in front, frames every hop, and
        the end zero-padded until the signal is covered (tf.signal's pad_end).
        """
        cfg = self.config
        length, hop = cfg.frame_length, cfg.frame_step
        chunk_frames = cfg.T * self.chunk_segments
        chunk_samples = (chunk_frames - 1) * hop + length
        buffer = np.zeros((length, cfg.n_channels), dtype=np.float32)
        for block in blocks:
            buffer = np.concatenate([buffer, block.astype(np.float32, copy=False)])
            while buffer.shape[0] >= chunk_samples:
                yield stft_frames(buffer, length, hop, chunk_frames, self._window)
                buffer = buffer[chunk_frames * hop :]
        remaining = math.ceil(buffer.shape[0] / hop)
        padding = np.zeros(((remaining - 1) * hop + length - buffer.shape[0], cfg.n_channels), np.float32)
        buffer = np.concatenate([buffer, padding])
        while remaining > 0:
            n = min(chunk_frames, remaining)
            yield stft_frames(buffer, length, hop, n, self._window)
            buffer = buffer[n * hop :]
            remaining -= n

    def _estimate(self, stft: np.ndarray) -> list[np.ndarray]:
        """U-Net estimates [frames, F, channels] per instrument for stft [channels, frames, bins]."""
        cfg = self.config
        n_frames = stft.shape[1]
        n_segments = math.ceil(n_frames / cfg.T)
        magnitude = np.zeros((n_segments * cfg.T, cfg.F, cfg.n_channels), dtype=np.float32)
        magnitude[:n_frames] = np.abs(stft[:, :, : cfg.F]).transpose(1, 2, 0)
        segments = magnitude.reshape(n_segments, cfg.T, cfg.F, cfg.n_channels)
        # One segment per call: activations of a batch cost ~100 MB per segment, and batch 1 is as fast on CPU.
        per_segment = [self.model(segments[i : i + 1]) for i in range(n_segments)]
        return [np.concatenate(outs).reshape(-1, cfg.F, cfg.n_channels)[:n_frames] for outs in zip(*per_segment)]

    def _reconstruct(
        self, stft: np.ndarray, estimates: Future, overlap_adds: list[OverlapAdd], buffers: dict[int, np.ndarray]
    ) -> list[np.ndarray]:
        """Masks (or Wiener filter) on the chunk's STFT, then inverse STFT: finished samples per instrument."""
        cfg = self.config
        values = estimates.result()
        if self.mwf:
            stfts = [s.transpose(2, 0, 1) for s in wiener_stfts(values, stft.transpose(1, 2, 0))]
        else:
            masks = ratio_masks(values, cfg.separation_exponent)
            stfts = [self._apply_mask(mask.transpose(2, 0, 1), stft, buffers, i) for i, mask in enumerate(masks)]
        return [ola.push(s) for ola, s in zip(overlap_adds, stfts)]

    def _apply_mask(self, mask: np.ndarray, stft: np.ndarray, buffers: dict[int, np.ndarray], index: int) -> np.ndarray:
        """mask [channels, frames, F] extended to every bin, times stft [channels, frames, bins]."""
        cfg = self.config
        if cfg.mask_extension == "zeros":
            # Bins above F stay silent: multiply only the band, into a buffer
            # reused across chunks whose upper bins are zero once and for all.
            masked = buffers.get(index)
            if masked is None or masked.shape != stft.shape:
                masked = buffers[index] = np.zeros_like(stft)
            np.multiply(stft[:, :, : cfg.F], mask, out=masked[:, :, : cfg.F])
            return masked
        return stft * extend_band(mask, cfg.n_bins, cfg.mask_extension)

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


class _Counter:
    """Passes blocks through and counts their samples (the input's length, known at its end)."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.blocks = blocks
        self.samples = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.samples += block.shape[0]
            yield block
