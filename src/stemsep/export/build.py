"""``stemsep export``: one model (preset or trained) to TFLite, ONNX or SavedModel files.

Every file is written through ``keras.export.ExportArchive`` with a fixed
batch-1 input (a dynamic batch adds ops that keep XNNPACK off), converted
with TFLite builtins only, run once on real-looking input and compared with
the Keras model; its metadata JSON records the measured SNR.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stemsep import __version__
from stemsep._tf import import_tensorflow
from stemsep.config import preset_name
from stemsep.errors import StemsepError
from stemsep.export import metadata
from stemsep.export import quantize as int8
from stemsep.export.graphs import chunk_samples, spectrogram_function, waveform_function
from stemsep.model.loader import ModelSource, build_keras, resolve_source, weights_sha256
from stemsep.runtime.exported import onnx_runner, tflite_runner

FORMATS = ("tflite", "onnx", "savedmodel")
KINDS = ("spectrogram", "waveform")
# int8: weight-only, int8-dynamic: dynamic-range with a few layers on float compute (see export.quantize).
QUANTIZATIONS = ("none", "fp16", "int8", "int8-dynamic")
ONNX_OPSET = 17
# A full disk, a quota, a file too large, a refused write: the destination's problem, said as such.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS)

tf = import_tensorflow()


def _check_request(fmt: str, kind: str, quantize: str) -> None:
    if fmt not in FORMATS:
        raise StemsepError(f"Unknown export format {fmt!r}; choose {', '.join(FORMATS)}.")
    if kind not in KINDS:
        raise StemsepError(f"Unknown export kind {kind!r}; choose {', '.join(KINDS)}.")
    if quantize not in QUANTIZATIONS:
        raise StemsepError(f"Unknown quantization {quantize!r}; choose {', '.join(QUANTIZATIONS)}.")
    if fmt == "savedmodel" and quantize != "none":
        raise StemsepError("A SavedModel is not quantized: use --quantize none with --format savedmodel.")
    if fmt == "onnx" and quantize != "none":
        # Measured: ONNX Runtime's dynamic int8 (ConvInteger) gave 14.6 / 20.5 dB and ran 2.2x
        # slower than fp32 (392 vs 176 ms per segment), so ONNX files are fp32 only.
        raise StemsepError(f"{quantize} is available for tflite; ONNX exports are fp32 (--quantize none).")


def _model_name(source: ModelSource, descriptor: str) -> str:
    return preset_name(descriptor) or Path(descriptor).resolve().name.removesuffix(".json")


def _test_input(cfg, kind: str) -> np.ndarray:
    """One chunk of a synthetic song (data/synth.py: drums, bass, pads, a voice) to check every
    export against Keras; not the example song that the tests and benchmarks measure on."""
    from stemsep.separate.stream import to_model_channels

    wave = to_model_channels(_synthetic_song(chunk_samples(cfg)), cfg.n_channels)
    if kind == "waveform":
        return wave
    from stemsep.dsp.stft import periodic_hann, stft_frames

    spec = stft_frames(wave, cfg.frame_length, cfg.frame_step, cfg.T, periodic_hann(cfg.frame_length))
    return np.abs(spec[:, :, : cfg.F]).transpose(1, 2, 0)[None]


@functools.lru_cache(maxsize=2)
def _synthetic_song(samples: int) -> np.ndarray:
    from stemsep.data.synth import synth_track

    wave = synth_track(seed=2024, seconds=samples / 44100 + 0.1)["mixture"][:samples].astype(np.float32)
    wave.flags.writeable = False  # shared between exports
    return wave


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    return float(10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(noise, 1e-30)))


def export_model(
    descriptor: str,
    fmt: str,
    out_dir: Path,
    kind: str = "spectrogram",
    quantize: str = "none",
    model_dir: Path | None = None,
    per_instrument: bool = True,
) -> list[Path]:
    """Export and verify; returns the model files written (each with its .json beside it).

    ``per_instrument``: spectrogram kind also gets one file per instrument beside the multi-instrument one."""
    _check_request(fmt, kind, quantize)
    source = resolve_source(descriptor, model_dir)
    cfg = source.config
    name = _model_name(source, descriptor)
    targets: list[tuple[str, tuple[str, ...]]] = [("", cfg.instruments)]
    if kind == "spectrogram" and per_instrument:
        targets += [(f"-{instrument}", (instrument,)) for instrument in cfg.instruments]
    written = []
    with _writing_into(out_dir):  # first: a folder that cannot be written is said before the model is built
        reference = build_keras(source)
        # The export graph: same weights, exact ELU and sigmoid everywhere, and for LiteRT and TF the
        # sub-pixel decoder (ONNX Runtime's ConvTranspose is fast: 176 ms per segment vs 224 ms
        # sub-pixel, measured); each file is checked against the reference Keras model.
        subpixel = fmt != "onnx"
        keras_model = _export_graph(reference, cfg, subpixel)
        sha = weights_sha256(source)
        for suffix, instruments in targets:
            stem = f"{name}-{kind}-{'fp32' if quantize == 'none' else quantize}{suffix}"
            path = out_dir / (stem + metadata.EXTENSIONS[fmt])
            model, graph_cfg = keras_model, cfg
            if len(instruments) < len(cfg.instruments) and cfg.model_type != "unet.softmax_unet":
                # Only this instrument's U-Net, so a SavedModel does not carry the others' weights
                # (a softmax model needs every instrument's logits for each mask).
                model, graph_cfg = _instrument_model(keras_model, cfg, instruments[0], subpixel)
            args = (model, reference, cfg, kind, fmt, quantize, instruments, path, descriptor, sha, graph_cfg)
            written.append(_export_one(*args))
    return written


@contextlib.contextmanager
def _writing_into(out_dir: Path) -> Iterator[None]:
    """Make ``out_dir``; if the export fails, remove what it added there (and the folders it made),
    and say a full disk or a refused write in one sentence."""
    missing = [folder for folder in [out_dir, *out_dir.parents] if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = write_failure(error) or (error.strerror or str(error)).lower()
        raise StemsepError(f"Cannot write the exported model to {out_dir}: {reason}.") from None
    before = set(out_dir.iterdir())
    try:
        yield
    except BaseException as error:
        for entry in set(out_dir.iterdir()) - before:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        for folder in missing:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        reason = write_failure(error)
        if reason is not None:
            raise StemsepError(f"Cannot write the exported model to {out_dir}: {reason}.") from None
        raise


def write_failure(error: BaseException) -> str | None:
    """Why the disk refused a write ("no space left on device"...) when ``error`` is that, else None.
    TensorFlow reports these as op errors (ResourceExhaustedError...) holding the system's text."""
    if isinstance(error, OSError):
        return os.strerror(error.errno).lower() if error.errno in WRITE_ERRNOS else None
    if isinstance(error, tf.errors.OpError):
        return next((os.strerror(n).lower() for n in WRITE_ERRNOS if os.strerror(n) in str(error)), None)
    return None


def _instrument_model(keras_model, cfg, instrument: str, subpixel: bool):
    """A one-instrument export U-Net with that instrument's weights from ``keras_model``, and its config."""
    import dataclasses

    from stemsep.model.unet import build_unet_model, copy_weights_by_name

    single_cfg = dataclasses.replace(cfg, instruments=(instrument,))
    model = build_unet_model(single_cfg, portable=True, subpixel=subpixel)
    copy_weights_by_name(model, keras_model)
    return model, single_cfg


def _export_one(
    keras_model,
    reference,
    cfg,
    kind,
    fmt,
    quantize,
    instruments,
    path: Path,
    descriptor: str,
    sha: str,
    graph_cfg=None,
) -> Path:
    """Export ``keras_model`` (the export graph) and check it against ``reference`` (the Keras model
    separation uses). ``graph_cfg``: the config ``keras_model`` was built from, when it holds fewer
    instruments than ``cfg``."""
    import keras

    if kind == "spectrogram":
        function = spectrogram_function(keras_model, graph_cfg or cfg, instruments)
        reference_function = spectrogram_function(reference, cfg, instruments)
        spec = tf.TensorSpec([1, cfg.T, cfg.F, cfg.n_channels], tf.float32, name="magnitude")
    else:
        function = waveform_function(keras_model, cfg)
        reference_function = waveform_function(reference, cfg)
        spec = tf.TensorSpec([chunk_samples(cfg), cfg.n_channels], tf.float32, name="waveform")
    sample = _test_input(cfg, kind)
    expected = {k: v.numpy() for k, v in tf.function(reference_function)(tf.constant(sample)).items()}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        staged = Path(tmp) / path.name
        if fmt == "onnx" and kind == "waveform":
            # The U-Net through tf2onnx, the STFT around it in ONNX's own DFT (see onnx_waveform).
            magnitude = tf.TensorSpec([1, cfg.T, cfg.F, cfg.n_channels], tf.float32, name="magnitude")
            unet = spectrogram_function(keras_model, graph_cfg or cfg, instruments)
            _convert_onnx(unet, magnitude, staged, waveform_cfg=cfg)
            outputs = onnx_runner(staged, os.cpu_count() or 1)(sample)
        elif fmt == "onnx":
            _convert_onnx(function, spec, staged)
            outputs = onnx_runner(staged, os.cpu_count() or 1)(sample)
        else:
            saved = staged if fmt == "savedmodel" else Path(tmp) / "savedmodel"
            archive = keras.export.ExportArchive()
            # Variables the endpoint uses are tracked by add_endpoint; track(model) would save them twice.
            archive.add_endpoint("serve", function, input_signature=[spec])
            archive.write_out(str(saved), verbose=False)
            if fmt == "savedmodel":
                loaded = tf.saved_model.load(str(saved))  # keep it: its variables die with it
                outputs = {k: v.numpy() for k, v in loaded.serve(tf.constant(sample)).items()}
            else:
                staged.write_bytes(_convert_tflite(saved, quantize))
                outputs = tflite_runner(staged, os.cpu_count() or 1)(sample)
        snr = {k: round(snr_db(expected[k], outputs[k]), 2) for k in expected}
        # fp32 must reproduce Keras (a conversion bug shows here, e.g. lost weights); quantized
        # models only record their error: their stem quality is measured on real music in the tests.
        if quantize == "none" and min(snr.values()) < 60.0:
            raise StemsepError(f"The exported {path.name} does not reproduce the Keras model (SNR {snr} dB < 60 dB).")
        if fmt == "tflite":
            from stemsep.export.tflite_ops import flex_ops

            if flex_ops(staged):
                raise StemsepError(
                    f"The exported {path.name} needs Flex ops {sorted(flex_ops(staged))}; mobile models must be builtins-only."
                )
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(staged, path)
    meta = {
        "kind": kind,
        "format": fmt,
        "quantization": quantize,
        "multi": len(instruments) == len(cfg.instruments),
        "instruments": list(instruments),
        "sample_rate": cfg.sample_rate,
        "frame_length": cfg.frame_length,
        "frame_step": cfg.frame_step,
        "T": cfg.T,
        "F": cfg.F,
        "n_channels": cfg.n_channels,
        "inputs": [{"name": spec.name, "shape": list(spec.shape), "dtype": "float32"}],
        "outputs": [{"name": i, "shape": [*spec.shape[:-1], cfg.output_channels], "dtype": "float32"} for i in instruments],
        "verified_snr_db_vs_keras": snr,
        **({"float_compute_layers": list(int8.FLOAT_COMPUTE_LAYERS)} if quantize == "int8-dynamic" else {}),
        "source": {"model": descriptor, "weights_sha256": sha},
        "stemsep_version": __version__,
        "config": cfg.raw,
    }
    if kind == "waveform":
        meta["chunking"] = {
            "chunk_samples": chunk_samples(cfg),
            "hop_samples": cfg.T * cfg.frame_step,
            "leading_zeros": cfg.frame_length,
            "how": "Prefix the song with leading_zeros zero samples, zero-pad its end, feed chunks starting every "
            "hop_samples, overlap-add each output at its chunk's start, drop the first leading_zeros samples "
            "and cut to the song's length.",
        }
    metadata.write(path, meta)
    return path


def _export_graph(keras_model, cfg, subpixel: bool):
    """The same U-Net built as an export graph (see ``build_unet_model``)."""
    from stemsep.model.unet import build_unet_model

    portable = build_unet_model(cfg, portable=True, subpixel=subpixel)
    portable.set_weights(keras_model.get_weights())
    return portable


def _convert_tflite(saved: Path, quantize: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # never Flex
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        model = converter.convert()
    except Exception as error:  # the converter raises ConverterError and others
        if write_failure(error):
            raise
        raise StemsepError(f"TFLite conversion failed ({str(error).strip().splitlines()[0][:200]}).") from None
    if quantize == "int8":
        return int8.weight_only(model)
    if quantize == "int8-dynamic":
        return int8.dynamic(model)
    return model


def _convert_onnx(function, spec, path: Path, waveform_cfg=None) -> None:
    """``waveform_cfg``: wrap the converted spectrogram model into the waveform kind."""
    import tf2onnx

    concrete = tf.function(function, input_signature=[spec])
    try:
        tf2onnx.convert.from_function(concrete, input_signature=[spec], opset=ONNX_OPSET, output_path=str(path))
    except Exception as error:  # tf2onnx raises many types
        if write_failure(error):
            raise
        raise StemsepError(f"ONNX conversion failed ({str(error).strip().splitlines()[0][:200]}).") from None
    if waveform_cfg is not None:
        import onnx

        from stemsep.export.onnx_waveform import waveform_onnx

        onnx.save(waveform_onnx(onnx.load(str(path)), waveform_cfg), str(path))
