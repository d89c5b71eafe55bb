"""Engines: a prepared model separates without TensorFlow, with the stems of the TensorFlow path."""

import subprocess
import sys

import numpy as np
import pytest

from stemsep.errors import StemsepError
from stemsep.separate import Separator
from tests.helpers import snr_db

# Separates a wav with the default engine while any import of TensorFlow or Keras raises,
# and saves the stems; prints the heavy modules that did get imported.
WITHOUT_TENSORFLOW = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import soundfile
from stemsep.separate import Separator

wave, rate = soundfile.read(sys.argv[1], dtype="float32")
separator = Separator("spleeter:2stems", model_dir=sys.argv[3], mwf=sys.argv[4] == "mwf")
np.savez(sys.argv[2], **separator.separate(wave, rate))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "scipy")))
"""


@pytest.fixture(scope="module")
def example_wav(example_wave, tmp_path_factory):
    import soundfile

    path = tmp_path_factory.mktemp("wav") / "example.wav"
    soundfile.write(path, example_wave, 44100, subtype="FLOAT")
    return path


@pytest.mark.parametrize("mwf", [False, True])
def test_prepared_model_separates_with_tensorflow_blocked(mwf, tmp_path, example_wav, example_wave, official_2stems):
    Separator("spleeter:2stems", model_dir=official_2stems.parent)  # prepares it, if not done yet
    out = tmp_path / "stems.npz"
    args = [str(example_wav), str(out), str(official_2stems.parent), "mwf" if mwf else "masks"]
    result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    imported = result.stdout.strip().splitlines()[-1]
    assert "tensorflow" not in imported and "keras" not in imported
    assert "scipy" not in imported  # ~0.45 s of start-up that separation does not need
    keras = Separator("spleeter:2stems", model_dir=official_2stems.parent, backend="keras", mwf=mwf)
    expected = keras.separate(example_wave, 44100)
    stems = np.load(out)
    report = {name: round(snr_db(expected[name], stems[name]), 1) for name in expected}
    print(f"prepared ONNX vs Keras, mwf={mwf} (dB):", report)
    assert min(report.values()) >= 100.0, report


def test_prepared_model_is_made_once_and_reused(official_2stems):
    import onnx

    from stemsep.runtime.onnx_tuned import machine_key
    from stemsep.separate.prepared import prepared_folder

    Separator("spleeter:2stems", model_dir=official_2stems.parent)
    folder = prepared_folder("spleeter:2stems", official_2stems.parent, "onnx")
    files = sorted(p.name for p in folder.iterdir())
    portable = ["2stems-spectrogram-fp32.onnx", "2stems-spectrogram-fp32.onnx.json", "2stems-spectrogram-fp32.weights"]
    tuned = [f"2stems-spectrogram-fp32.tuned-{machine_key()}"] if machine_key() else []  # see the next test
    assert files == sorted(portable + tuned)
    model = folder / "2stems-spectrogram-fp32.onnx"
    graph = onnx.load(model, load_external_data=False).graph
    # each U-Net's five wide transposed convolutions run as phase convolutions (export.onnx_phases)
    assert sum(node.name.endswith("/interleave") for node in graph.node) == 2 * 5
    stamp = model.stat().st_mtime_ns
    Separator("spleeter:2stems", model_dir=official_2stems.parent)
    assert model.stat().st_mtime_ns == stamp


def test_the_machine_tuned_graph_is_checked_kept_and_loaded_as_it_is(official_2stems, capfd):
    import platform

    import onnx
    import onnxruntime

    from stemsep.runtime.onnx_tuned import tuned_folder
    from stemsep.separate.prepared import prepared_folder

    Separator("spleeter:2stems", model_dir=official_2stems.parent)
    portable = prepared_folder("spleeter:2stems", official_2stems.parent, "onnx") / "2stems-spectrogram-fp32.onnx"
    folder = tuned_folder(portable)
    if folder is None:
        pytest.skip("no machine key on this platform: ONNX Runtime optimizes at every start")
    tuned = folder / portable.name
    assert sorted(p.name for p in folder.iterdir()) == [portable.name, "2stems-spectrogram-fp32.weights"]
    graph = tuned.read_bytes()
    if platform.machine() in ("x86_64", "AMD64"):  # ONNX Runtime's blocked convolutions for this CPU's vector width
        convolutions = {node.domain for node in onnx.load(tuned, load_external_data=False).graph.node if node.op_type == "Conv"}
        assert convolutions == {"com.microsoft.nchwc"}
    segment = np.random.default_rng(5).uniform(0, 1, (1, 512, 1024, 2)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(portable), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"magnitude": segment})))
    expected = [outputs[name] for name in ("vocals", "accompaniment")]
    stamp = tuned.stat().st_mtime_ns
    engine = Separator("spleeter:2stems", model_dir=official_2stems.parent).model
    assert tuned.stat().st_mtime_ns == stamp  # loaded, not written again
    for want, got in zip(expected, engine(segment)):
        assert snr_db(want, got) > 100
    tuned.write_bytes(graph[: len(graph) // 2])  # a copy cut short is made again, quietly
    capfd.readouterr()
    engine = Separator("spleeter:2stems", model_dir=official_2stems.parent).model
    assert "onnxruntime" not in capfd.readouterr().err
    assert len(onnx.load(tuned, load_external_data=False).graph.node) == len(onnx.load_from_string(graph).graph.node)
    for want, got in zip(expected, engine(segment)):
        assert snr_db(want, got) > 100
    assert not [p for p in portable.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_unwritable_cache_prepares_a_temporary_copy(tmp_path, capfd, monkeypatch):
    import json

    from stemsep.config import ModelConfig, load_preset
    from stemsep.model.unet import build_unet_model

    # A small one-instrument model keeps the conversion short.
    raw = dict(load_preset("2stems").raw, instrument_list=["vocals"], T=64, F=256)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    build_unet_model(ModelConfig.from_dict(raw)).save_weights(tmp_path / "model.weights.h5")
    cache = tmp_path / "cache-file"
    cache.write_text("not a folder")
    monkeypatch.setenv("STEMSEP_CACHE", str(cache))
    wave = 0.1 * np.random.default_rng(0).standard_normal((44100, 2)).astype(np.float32)
    stems = Separator(str(tmp_path)).separate(wave, 44100)
    assert stems["vocals"].shape == (44100, 2)
    assert "is not writable" in capfd.readouterr().err


def test_unknown_backend_and_misplaced_quantization_are_one_sentence(official_2stems):
    with pytest.raises(StemsepError, match=r"^Unknown backend 'bogus'; choose onnx, litert, keras, jax\.$"):
        Separator("spleeter:2stems", backend="bogus")
    with pytest.raises(StemsepError, match="picks a file of a folder made by `stemsep export`"):
        Separator("spleeter:2stems", model_dir=official_2stems.parent, quantization="fp16")
