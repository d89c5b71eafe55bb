"""Exported models: builtins-only TFLite, parity with the Keras path, metadata, chained waveform chunks."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemsep.config import load_preset
from stemsep.dsp.stft import periodic_hann, stft_frames
from stemsep.export.build import export_model
from stemsep.export.tflite_ops import flex_ops, operator_names
from stemsep.model.loader import resolve_source, weights_sha256
from stemsep.separate import Separator
from tests.helpers import snr_db

ROOT = Path(__file__).resolve().parents[1]
# (format, kind, quantization, per-instrument files too) exported once for the module. The quantized
# models' per-instrument files are not written (~20 s of CI each pair): they are the fp32 ones' way.
EXPORTS = [
    ("tflite", "spectrogram", "none", True),
    ("tflite", "spectrogram", "fp16", False),
    ("tflite", "spectrogram", "int8", False),
    ("tflite", "spectrogram", "int8-dynamic", False),
    ("onnx", "spectrogram", "none", True),
    ("tflite", "waveform", "none", True),
    ("savedmodel", "waveform", "none", True),
    ("onnx", "waveform", "none", True),
]
# int8-dynamic keeps four sensitive layers on float compute (see export.quantize): >= 20 dB like int8.
MINIMUM_DB = {"none": 60.0, "fp16": 40.0, "int8": 20.0, "int8-dynamic": 20.0}


@pytest.fixture(scope="module")
def exported_2stems(tmp_path_factory, official_2stems) -> Path:
    folder = tmp_path_factory.mktemp("export-2stems")
    for fmt, kind, quantize, per_instrument in EXPORTS:
        options = dict(kind=kind, quantize=quantize, per_instrument=per_instrument)
        export_model("spleeter:2stems", fmt, folder, model_dir=official_2stems.parent, **options)
    return folder


@pytest.fixture(scope="module")
def keras_stems(separator_2stems, example_wave) -> dict[str, np.ndarray]:
    return separator_2stems.separate(example_wave, 44100)


def test_every_tflite_is_builtins_only(exported_2stems):
    files = sorted(exported_2stems.glob("*.tflite"))
    # fp32 (multi + 2 instruments), the three quantized multi-instrument files, the waveform model
    assert len(files) == 3 + 3 + 1
    for path in files:
        assert flex_ops(path) == set(), path
        assert not any(op.startswith("CUSTOM") for op in operator_names(path)), path
    assert {"RFFT2D", "REVERSE_V2"} <= operator_names(exported_2stems / "2stems-waveform-fp32.tflite")


BACKENDS = [("litert", "none"), ("litert", "fp16"), ("litert", "int8"), ("litert", "int8-dynamic"), ("onnx", "none")]


@pytest.mark.parametrize(("backend", "quantization"), BACKENDS)
def test_exported_spectrogram_models_match_keras(exported_2stems, keras_stems, example_wave, backend, quantization):
    stems = Separator(str(exported_2stems), backend=backend, quantization=quantization).separate(example_wave, 44100)
    report = {name: round(snr_db(keras_stems[name], stems[name]), 1) for name in keras_stems}
    print(f"{backend} {quantization} SNR vs keras (dB):", report)
    assert min(report.values()) >= MINIMUM_DB[quantization], report


def test_single_instrument_files_equal_the_multi_file(exported_2stems):
    from stemsep.runtime.exported import tflite_runner

    segment = np.random.default_rng(3).uniform(0, 1, (1, 512, 1024, 2)).astype(np.float32)
    multi = tflite_runner(exported_2stems / "2stems-spectrogram-fp32.tflite", 2)(segment)
    for name in ("vocals", "accompaniment"):
        single = tflite_runner(exported_2stems / f"2stems-spectrogram-fp32-{name}.tflite", 2)(segment)
        assert list(single) == [name]
        np.testing.assert_allclose(single[name], multi[name], atol=1e-5)


def test_single_instrument_savedmodel_holds_only_its_weights(tmp_path, official_2stems):
    written = export_model("spleeter:2stems", "savedmodel", tmp_path, model_dir=official_2stems.parent)
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*")) / 1e6 for p in written}
    print("SavedModel sizes (MB):", {k: round(v, 1) for k, v in sizes.items()})
    multi = sizes["2stems-spectrogram-fp32.savedmodel"]
    for name in ("vocals", "accompaniment"):
        assert sizes[f"2stems-spectrogram-fp32-{name}.savedmodel"] < 0.6 * multi  # one U-Net of two
        meta = json.loads((tmp_path / f"2stems-spectrogram-fp32-{name}.savedmodel.json").read_text())
        assert meta["instruments"] == [name] and not meta["multi"] and min(meta["verified_snr_db_vs_keras"].values()) > 100


def test_metadata_describes_the_model(exported_2stems, official_2stems):
    meta = json.loads((exported_2stems / "2stems-spectrogram-fp16.tflite.json").read_text())
    assert meta["format_version"] == 1 and meta["quantization"] == "fp16" and meta["instruments"] == ["vocals", "accompaniment"]
    assert (meta["sample_rate"], meta["frame_length"], meta["frame_step"], meta["T"], meta["F"]) == (44100, 4096, 1024, 512, 1024)
    assert meta["inputs"] == [{"name": "magnitude", "shape": [1, 512, 1024, 2], "dtype": "float32"}]
    assert meta["source"]["weights_sha256"] == weights_sha256(resolve_source("spleeter:2stems", official_2stems.parent))
    wave_meta = json.loads((exported_2stems / "2stems-waveform-fp32.tflite.json").read_text())
    chunking = wave_meta["chunking"]
    assert (chunking["chunk_samples"], chunking["hop_samples"], chunking["leading_zeros"]) == (527360, 524288, 4096)


def test_savedmodel_and_onnx_waveform_equal_the_tflite_one(exported_2stems, example_wave):
    import tensorflow as tf

    from stemsep.runtime.exported import onnx_runner, tflite_runner

    chunk = np.zeros((527_360, 2), np.float32)
    chunk[4096 : 4096 + 400_000] = example_wave[:400_000]
    loaded = tf.saved_model.load(str(exported_2stems / "2stems-waveform-fp32.savedmodel"))
    saved = {k: v.numpy() for k, v in loaded.serve(tf.constant(chunk)).items()}
    lite = tflite_runner(exported_2stems / "2stems-waveform-fp32.tflite", 2)(chunk)
    onnx_path = exported_2stems / "2stems-waveform-fp32.onnx"
    ort = onnx_runner(onnx_path, 2)(chunk)
    for name in ("vocals", "accompaniment"):
        assert snr_db(saved[name], lite[name]) > 100
        assert snr_db(saved[name], ort[name]) > 100
    # ONNX's own DFT does the STFT: no dense DFT matrix, so the file is the U-Nets' size.
    assert onnx_path.stat().st_size < 1.05 * (exported_2stems / "2stems-spectrogram-fp32.onnx").stat().st_size


def test_model_sizes(exported_2stems):
    """What an app ships for one stem: one U-Net of two, so at most 10 MB int8 and 20 MB fp16.
    The per-instrument file is half the multi-instrument one (fp32 here: the quantized per-instrument
    files are not exported by this module), so the quantized multi-instrument files may take twice that."""
    files = exported_2stems.glob("2stems-spectrogram-*.tflite")
    sizes = {p.name.removeprefix("2stems-spectrogram-"): p.stat().st_size / 1e6 for p in files}
    print("sizes (MB):", {name: round(size, 2) for name, size in sizes.items()})
    assert 0.49 < sizes["fp32-vocals.tflite"] / sizes["fp32.tflite"] < 0.51
    assert sizes["int8.tflite"] <= 2 * 10.0
    assert sizes["fp16.tflite"] <= 2 * 20.0


def test_standalone_example_chains_waveform_chunks_exactly(exported_2stems, separator_2stems, example_wave, tmp_path):
    """examples/separate_wav.py (numpy + ai-edge-litert only) on a 25 s song: three chunks, two borders."""
    song = np.concatenate([example_wave, example_wave[::-1, :], example_wave[:100_000]])
    soundfile.write(tmp_path / "song.wav", song, 44100, subtype="PCM_16")
    pcm = soundfile.read(tmp_path / "song.wav", dtype="float32")[0]
    script = ROOT / "examples" / "separate_wav.py"
    model = exported_2stems / "2stems-waveform-fp32.tflite"
    args = [sys.executable, str(script), str(model), str(tmp_path / "song.wav"), str(tmp_path / "out")]
    subprocess.run(args, check=True, timeout=600)
    expected = separator_2stems.separate(pcm, 44100)
    for name in ("vocals", "accompaniment"):
        ours = soundfile.read(tmp_path / "out" / f"{name}.wav", dtype="float32")[0]
        assert ours.shape == pcm.shape
        assert snr_db(expected[name], ours) > 60  # limited by the 16-bit output file


def test_four_stems_model_exports_and_matches(tmp_path, example_wave):
    """A 4stems model (seeded random weights in a stemsep model folder) through TFLite and ONNX."""
    import keras

    from stemsep.model.unet import build_unet_model

    keras.utils.set_random_seed(4)
    folder = tmp_path / "model4"
    folder.mkdir()
    config = load_preset("4stems")
    (folder / "config.json").write_text(json.dumps(config.raw))
    build_unet_model(config).save_weights(folder / "model.weights.h5")
    out = tmp_path / "exported"
    # The multi-instrument files only: per-instrument files are the 2stems tests' (a third of the time here).
    export_model(str(folder), "tflite", out, per_instrument=False)
    export_model(str(folder), "onnx", out, per_instrument=False)
    assert len(list(out.glob("*.tflite"))) == 1 and len(list(out.glob("*.onnx"))) == 1
    reference = Separator(str(folder), backend="keras").separate(example_wave[:300_000], 44100)
    # Random weights saturate sigmoids, where the ratio masks divide tiny estimates by tiny sums:
    # this needs the exported sigmoid's relative precision far below -10 (ONNX Runtime's own
    # Sigmoid returns 0 below -18; stemsep exports 1 / (1 + exp(-x))).
    keras_model = Separator(str(folder), backend="keras").model
    padded = np.zeros((527_360, 2), np.float32)
    padded[4096 : 4096 + 400_000] = example_wave[:400_000]
    spectrum = stft_frames(padded, 4096, 1024, 512, periodic_hann(4096))
    segment = np.abs(spectrum[:, :, :1024]).transpose(1, 2, 0)[None]
    for backend in ("litert", "onnx"):
        separator = Separator(str(out), backend=backend)
        pairs = zip(reference, keras_model(segment), separator.model(segment))
        estimates = {name: round(snr_db(a, b), 1) for name, a, b in pairs}
        stems = separator.separate(example_wave[:300_000], 44100)
        report = {name: round(snr_db(reference[name], stems[name]), 1) for name in reference}
        print(f"4stems {backend} SNR vs keras (dB): U-Net outputs {estimates}, stems {report}")
        assert min(estimates.values()) >= 60.0, estimates
        assert min(report.values()) >= 60.0, report


@pytest.mark.slow
def test_four_stems_quantized_with_trained_weights(tmp_path, official_2stems, example_wave):
    """No trained 4stems weights are reachable offline; random weights saturate, so quantization
    is measured on a 4stems model (its config, ELU activations) whose four U-Nets carry the
    official 2stems weights (vocals, accompaniment, vocals, accompaniment). The integer ones only:
    fp16 (~40 s more here) is measured on the 2stems exports."""
    from stemsep.model.loader import build_keras
    from stemsep.model.unet import build_unet_model

    config = load_preset("4stems")
    four = build_unet_model(config)
    two = build_keras(resolve_source("spleeter:2stems", official_2stems.parent))
    donor = {"vocals": "vocals", "drums": "accompaniment", "bass": "vocals", "other": "accompaniment"}
    for layer in four.layers:
        if layer.weights:
            instrument = layer.name.split("_")[0]
            layer.set_weights(two.get_layer(layer.name.replace(instrument, donor[instrument], 1)).get_weights())
    folder = tmp_path / "model4"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config.raw))
    four.save_weights(folder / "model.weights.h5")
    out = tmp_path / "exported"
    song = example_wave[:300_000]
    reference = Separator(str(folder), backend="keras").separate(song, 44100)
    for quantize in ("int8", "int8-dynamic"):
        export_model(str(folder), "tflite", out, quantize=quantize, per_instrument=False)
        stems = Separator(str(out), backend="litert", quantization=quantize).separate(song, 44100)
        report = {name: round(snr_db(reference[name], stems[name]), 1) for name in reference}
        print(f"4stems (2stems weights) litert {quantize} SNR vs keras (dB): {report}")
        # int8-dynamic's float layers were chosen on the official 2stems model with its
        # activations; under this model's ELUs it measures ~12 / 17 dB: recorded, not a target.
        assert min(report.values()) >= {"int8": 20.0, "int8-dynamic": 10.0}[quantize], report
    assert len(list(out.glob("*.tflite"))) == 2
