"""``Separator``: a model's engine and the streaming pipeline, for arrays and files."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from stemsep.audio.decode import check_finite, probe, stream_audio, to_stereo
from stemsep.audio.encode import parse_bitrate
from stemsep.errors import StemsepError
from stemsep.separate.engine import DEFAULT_BACKEND, Engine, load_engine
from stemsep.separate.output import OutputOptions, check_time_window
from stemsep.separate.sinks import NIStemsFile, Sink, StemFiles, with_clip
from stemsep.separate.stream import Progress, stream_stems
from stemsep.stop import raise_if_stop_requested

DEFAULT_CHUNK_SEGMENTS = 1  # 512 frames ~ 11.9 s at 44.1 kHz


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
        device: str | None = None,
        precision: str = "fp32",
    ) -> None:
        """``model``: a preset, a config.json, a model folder, or a folder made by ``stemsep export``.
        ``backend``: onnx (default) or litert run it without TensorFlow (a model's first use converts
        it once), keras runs the Keras U-Net with TensorFlow, jax the JAX engine; see ``separate.engine``.
        ``device``: None (``backend`` as it is), cpu (the same, and the JAX engine on JAX's CPU), gpu (the
        JAX engine on a GPU) or auto (the GPU when JAX sees one); ``precision``: fp32 or bf16 (the JAX
        engine's U-Nets); see ``separate.gpu.device``."""
        if chunk_segments < 1:
            raise StemsepError("chunk_segments must be at least 1.")
        from stemsep.separate.gpu.device import resolve_backend

        backend = resolve_backend(device, backend, precision)
        model_folder = Path(model_dir) if model_dir else None
        self.model: Engine = load_engine(model, backend, model_folder, quantization, precision=precision)
        self.config = self.model.config
        self.mwf = mwf
        self.chunk_segments = chunk_segments

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.config.instruments

    def stream(self, blocks: Iterable[np.ndarray], progress: Progress | None = None) -> Iterator[list[np.ndarray]]:
        """Stereo float32 blocks at the model rate in; per-instrument blocks out, same length in total."""
        device_stream = getattr(self.model, "stream_stems", None)  # an engine that runs the whole path on its device
        if device_stream is not None:
            return device_stream(blocks, self.mwf, progress)
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
        check_finite(wave[:, :2], "The waveform", rate, remedy="replace them before separating (np.nan_to_num, for example)")
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

    def output_plan(self, output: OutputOptions) -> dict[str, tuple[str, ...]]:
        """Output name -> the instruments summed into it: --stems/--two-stems, or NI's four slots by display name."""
        if not output.is_ni_stems:
            return output.plan(self.instruments)
        if output.stems or output.two_stems:
            raise StemsepError("--stems and --two-stems do not apply to stem.mp4, whose four slots are fixed.")
        from stemsep.audio.ni_stems import NI_SLOTS, ni_slot_stems

        # Two silent slots share a display name: keep them apart by their slot.
        return {f"{slot}:{name}": members for slot, (name, members) in zip(NI_SLOTS, ni_slot_stems(self.instruments))}

    def output_paths(
        self, audio_path: Path, destination: Path, output: OutputOptions, name: str | None = None
    ) -> dict[str, Path]:
        return output.paths(Path(audio_path), Path(destination), list(self.output_plan(output)), name)

    def separate_to_file(
        self,
        audio_path: str | Path,
        destination: str | Path,
        output: OutputOptions | None = None,
        offset: float = 0.0,
        duration: float | None = None,
        progress: Progress | None = None,
        name: str | None = None,
    ) -> SeparatedFile:
        """Separate a file and write its stems as ``output`` says; ``name`` stands for the file name.

        Stems are written at the input's sample rate, atomically: on any error
        no stem is left behind and no existing file is touched.
        """
        audio_path, destination = Path(audio_path), Path(destination)
        output = output or OutputOptions()
        check_time_window(offset, duration)
        plan = self.output_plan(output)
        paths = output.paths(audio_path, destination, list(plan), name)
        if output.skip_existing and all(path.exists() for path in paths.values()):
            return SeparatedFile(paths, skipped=True)
        if not output.overwrite:
            for path in paths.values():
                if path.exists():
                    raise StemsepError(f"{path} already exists (use --overwrite to replace it).")
        info = probe(audio_path)
        channels = 1 if output.keep_channels and info.channels == 1 and not output.is_ni_stems else 2
        names = ["mixture"] + [key.split(":", 1)[1] for key in plan] if output.is_ni_stems else list(plan)
        created: list[Path] = []  # folders this call made, removed again if it fails
        sink = None
        try:
            for path in paths.values():
                created += _make_folders(path.parent)
            sink = self._open_sink(output, paths, names, info.sample_rate, channels)
            sink = with_clip(sink, output.clip, names, destination)
            groups = [tuple(self.instruments.index(i) for i in members) for members in plan.values()]
            layout = _Layout(groups, output.is_ni_stems, info.sample_rate, channels)
            silent = self._stream_file_to(sink, layout, audio_path, offset, duration, progress)
            sink.commit(output.overwrite)
        except BaseException:
            if sink is not None:
                sink.abort()
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        notes = sink.notes() + ([f"{audio_path} is silent (every sample is zero): its stems are silent too."] if silent else [])
        return SeparatedFile(paths, notes)

    def _open_sink(self, output: OutputOptions, paths: dict[str, Path], names: list[str], rate: int, channels: int) -> Sink:
        bitrate = parse_bitrate(output.bitrate)
        if output.is_ni_stems:
            return NIStemsFile(next(iter(paths.values())), rate, names[1:], bitrate, output.bits)
        return StemFiles(list(paths.values()), output.resolved_codec, rate, bitrate, output.bits, channels)

    def _stream_file_to(
        self,
        sink: Sink,
        layout: _Layout,
        audio_path: Path,
        offset: float,
        duration: float | None,
        progress: Progress | None,
    ) -> bool:
        """Stream the file through the model into ``sink``; True if the input was silent."""
        model_rate = self.config.sample_rate
        groups, with_mixture, file_rate, channels = layout.groups, layout.with_mixture, layout.file_rate, layout.channels
        width = len(groups) + with_mixture
        back = None
        if file_rate != model_rate:
            back = [soxr.ResampleStream(model_rate, file_rate, channels, dtype="float32", quality="HQ") for _ in range(width)]
        peak = 0.0
        pending: deque[np.ndarray] = deque()  # input blocks not yet matched by stems (the NI mixture)

        def watched(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal peak
            for block in blocks:
                peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
                if with_mixture:
                    pending.append(block)
                yield block

        def emit(outs: list[np.ndarray], last: bool = False) -> None:
            if channels == 1:
                outs = [out.mean(axis=1, keepdims=True) for out in outs]
            if back:
                outs = [resampler.resample_chunk(out, last=last) for resampler, out in zip(back, outs)]
            sink.write(outs)

        blocks = watched(stream_audio(audio_path, model_rate, offset, duration))
        shared = {i for i in range(len(self.instruments)) if sum(i in group for group in groups) > 1}
        for pieces in self.stream(blocks, progress):
            raise_if_stop_requested()
            outs = [_sum(pieces, group, shared) for group in groups]
            if with_mixture:
                outs.insert(0, _take(pending, pieces[0].shape[0]))
            emit(outs)
        if back:
            emit([np.zeros((0, 2), np.float32)] * width, last=True)
        return peak == 0.0


@dataclass(frozen=True)
class _Layout:
    """How the model's instruments become the outputs of one file."""

    groups: list[tuple[int, ...]]  # instrument indices summed into each output
    with_mixture: bool  # the input itself goes first (NI stems' master)
    file_rate: int
    channels: int


@dataclass
class SeparatedFile:
    """What ``separate_to_file`` did: the paths (stem -> file), notes (clipping, silence), or skipped."""

    paths: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    skipped: bool = False


def _sum(pieces: list[np.ndarray], group: tuple[int, ...], shared: set[int]) -> np.ndarray:
    """The sum of the instruments in ``group``, an array the sinks may clamp in place: the piece itself
    for one instrument that no other group reads (not in ``shared``), else a fresh array."""
    if not group:
        return np.zeros_like(pieces[0])
    if len(group) == 1 and group[0] not in shared and pieces[group[0]].flags.writeable:
        return pieces[group[0]]
    total = pieces[group[0]].copy()
    for index in group[1:]:
        total += pieces[index]
    return total


def _take(pending: deque[np.ndarray], frames: int) -> np.ndarray:
    """The next ``frames`` samples of the queued input blocks."""
    taken, need = [], frames
    while need > 0 and pending:
        block = pending.popleft()
        if block.shape[0] > need:
            pending.appendleft(block[need:])
            block = block[:need]
        taken.append(block)
        need -= block.shape[0]
    return np.concatenate(taken) if len(taken) != 1 else taken[0].copy()


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
