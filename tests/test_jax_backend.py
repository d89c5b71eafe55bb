"""The JAX backend (``--backend jax`` / ``--device gpu``) on JAX's CPU: it separates as the TensorFlow path
(>= 60 dB: the official 2stems model with ratio masks and with --mwf, a 4stems and a mono "average"
model with random weights, several files batched together), trains with the TensorFlow trainer's
losses (1e-3 relative) and resumes exactly, reads and writes checkpoints the TensorFlow trainer reads,
and never imports TensorFlow.

Keras has one backend per process, so every JAX run is a subprocess (this process holds Keras on
TensorFlow for the references). JAX's convolutions on CPU are ~10x slower than TensorFlow's: the
excerpts and networks are small. Measured on 2 busy cores: 254 s for the module (training 159 s, the
separation subprocess 58 s), with JAX's compilation cache (~/.cache/stemsep-tests/jax) warm.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemsep.config import load_preset
from tests.helpers import snr_db

REPO = Path(__file__).resolve().parents[1]
EXCERPT = 8 * 44100  # one 512-frame window of the official example


def run_python(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemsep.cli", *args], capture_output=True, text=True, cwd=REPO, check=False)


def random_model(folder: Path, raw: dict, seed: int) -> Path:
    """A stemsep model folder: ``raw`` as its config.json and seeded random weights (built here, on TensorFlow)."""
    import keras

    from stemsep.config import ModelConfig
    from stemsep.model.unet import build_unet_model

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**raw, "model_dir": "."}))
    keras.utils.set_random_seed(seed)
    build_unet_model(ModelConfig.from_dict(raw)).save_weights(folder / "model.weights.h5")
    return folder


# -- separation ------------------------------------------------------------------------------------

SEPARATE = """
import json, sys
from pathlib import Path
import numpy as np
from stemsep.separate import OutputOptions, Separator
from stemsep.separate.gpu.files import separate_files

work = Path(sys.argv[1]); plan = json.loads((work / "plan.json").read_text())
wave = np.load(work / "excerpt.npy")
for label, (model, options) in plan["runs"].items():
    separator = Separator(model, model_dir=plan["model_dir"], backend="jax", **options)
    np.savez(work / f"{label}.npz", **separator.separate(wave, 44100))
separator = Separator(plan["runs"]["2stems"][0], model_dir=plan["model_dir"], backend="jax")
files = [Path(p) for p in plan["files"]]
for path, result in separate_files(separator, files, work / "stems", OutputOptions(bits="32f"), files_at_once=2):
    assert not isinstance(result, Exception), result
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "platform": separator.model.platform}))
"""


@pytest.fixture(scope="module")
def jax_separation(tmp_path_factory, official_2stems, example_wave):
    """The JAX engine's stems of every model, and of two files separated together, in one subprocess."""
    work = tmp_path_factory.mktemp("jax-separate")
    np.save(work / "excerpt.npy", example_wave[:EXCERPT])
    four = random_model(work / "model4", load_preset("4stems").raw, seed=4)
    mono_raw = {**load_preset("2stems").raw, "n_channels": 1, "mask_extension": "average", "T": 128, "F": 256}
    mono = random_model(work / "mono", mono_raw, seed=5)
    files = []
    for i, seconds in enumerate((3.0, 14.0)):  # one window, and two (the second ends mid-window)
        files.append(work / f"song{i}.wav")
        sf.write(files[-1], example_wave[44100 * i : 44100 * i + int(seconds * 44100)], 44100, "FLOAT")
    runs = {
        "2stems": ["spleeter:2stems", {}],
        "2stems-mwf": ["spleeter:2stems", {"mwf": True}],
        "2stems-bf16": ["spleeter:2stems", {"precision": "bf16"}],
        "4stems": [str(four), {}],
        "mono": [str(mono), {}],
    }
    plan = {"runs": runs, "model_dir": str(official_2stems.parent), "files": [str(f) for f in files]}
    (work / "plan.json").write_text(json.dumps(plan))
    facts = json.loads(run_python(SEPARATE, str(work)).stdout.strip().splitlines()[-1])
    return work, runs, files, facts


def tensorflow_stems(model: str, model_dir: Path, wave: np.ndarray, **options) -> dict[str, np.ndarray]:
    from stemsep.separate import Separator

    return Separator(model, model_dir=model_dir, backend="keras", **options).separate(wave, 44100)


@pytest.mark.parametrize("label", ["2stems", "2stems-mwf", "4stems", "mono"])
def test_jax_engine_separates_as_the_tensorflow_path(jax_separation, official_2stems, example_wave, label):
    work, runs, _, facts = jax_separation
    model, options = runs[label]
    assert facts["tensorflow"] is False, "the JAX path never imports TensorFlow"
    reference = tensorflow_stems(model, official_2stems.parent, example_wave[:EXCERPT], mwf=options.get("mwf", False))
    stems = np.load(work / f"{label}.npz")
    report = {name: round(snr_db(reference[name], stems[name]), 1) for name in reference}
    print(f"{label}: JAX (CPU) vs TensorFlow, dB: {report}")
    assert set(stems.files) == set(reference)
    assert min(report.values()) >= 60.0, report


def test_bf16_stems_stay_close_to_fp32(jax_separation):
    work = jax_separation[0]
    fp32, bf16 = np.load(work / "2stems.npz"), np.load(work / "2stems-bf16.npz")
    report = {name: round(snr_db(fp32[name], bf16[name]), 1) for name in fp32.files}
    print("bf16 vs fp32 stems (JAX on CPU), dB:", report)
    assert min(report.values()) >= 20.0, report


def test_files_separated_together_equal_each_file_alone(jax_separation, official_2stems):
    work, _, files, _ = jax_separation
    for path in files:
        wave, _ = sf.read(path, dtype="float32", always_2d=True)
        reference = tensorflow_stems("spleeter:2stems", official_2stems.parent, wave)
        for name, expected in reference.items():
            written, rate = sf.read(work / "stems" / path.stem / f"{name}.wav", dtype="float32", always_2d=True)
            assert rate == 44100 and written.shape == expected.shape
            assert snr_db(expected, written) >= 60.0, (path.name, name)


# -- choices and refusals --------------------------------------------------------------------------


def test_device_gpu_without_a_gpu_is_one_sentence(example_mp3, tmp_path):
    done = run_cli("separate", str(example_mp3), "-o", str(tmp_path), "--device", "gpu")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: --device gpu") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = run_cli("separate", str(example_mp3), "-o", str(tmp_path), "--device", "cpu", "--precision", "bf16")
    assert done.returncode == 1 and "--precision bf16 applies to the JAX engine" in done.stderr


def test_the_jax_engine_refuses_a_process_whose_keras_runs_on_tensorflow(official_2stems):
    import keras

    from stemsep.errors import StemsepError
    from stemsep.separate import Separator

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(StemsepError, match="already loaded on its tensorflow backend"):
        Separator("spleeter:2stems", model_dir=official_2stems.parent, backend="jax")


def test_auto_is_the_cpu_engine_without_a_jax_gpu_plugin():
    from stemsep.separate.gpu.device import gpu_plugin_installed, resolve_backend

    assert not gpu_plugin_installed()
    assert resolve_backend("auto", "onnx") == "onnx"


def test_checkpoints_read_without_tensorflow_as_tensorflow_reads_them(official_2stems):
    from stemsep.model.checkpoint import checkpoint_prefix, read_bundle, read_checkpoint

    prefix = checkpoint_prefix(official_2stems)
    ours, theirs = read_bundle(prefix), read_checkpoint(prefix)
    assert set(ours) == set(theirs) and len(ours) > 100
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype
        np.testing.assert_array_equal(ours[name], value)


# -- training --------------------------------------------------------------------------------------

TRAIN = """
import json, sys
from pathlib import Path
from stemsep.train.jax_loop import train
from stemsep.train.loop import TrainSettings

for config, steps, resume in json.loads(sys.argv[1]):
    settings = TrainSettings(Path(config), Path(sys.argv[2]), resume=resume, init=sys.argv[3], max_steps=steps, keep=1)
    train(settings, report=print)
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def read_log(model_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    with open(model_dir / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    losses = {int(r["step"]): float(r["loss"]) for r in rows if r["loss"]}
    validation = {int(r["step"]): float(r["validation_loss"]) for r in rows if r["validation_loss"]}
    return losses, validation


def test_jax_training_equals_tensorflow_resumes_exactly_and_shares_checkpoints(tmp_path):
    from stemsep.data.synth import write_synthetic_dataset
    from stemsep.model.checkpoint import read_bundle
    from stemsep.train import jax_checkpoint
    from stemsep.train.jax_loop import train_on
    from stemsep.train.loop import TrainSettings

    data = tmp_path / "data"
    write_synthetic_dataset(data, train=3, test=1, validation=1, seconds=4.0, seed=2)
    raw = {
        "train_csv": str(data / "train.csv"),
        "validation_csv": str(data / "validation.csv"),
        "instrument_list": ["vocals", "other"],
        "sample_rate": 44100,
        "frame_length": 2048,
        "frame_step": 512,
        "T": 64,
        "F": 128,
        "n_channels": 2,
        "separation_exponent": 2,
        "mask_extension": "zeros",
        "chunk_duration": 2.0,
        "n_chunks_per_song": 1,
        "learning_rate": 1e-3,
        "batch_size": 2,
        "training_cache": str(tmp_path / "cache" / "train"),
        "validation_cache": str(tmp_path / "cache" / "validation"),
        "train_max_steps": 4,
        "random_seed": 3,
        "save_checkpoints_steps": 2,
        "save_summary_steps": 1,
        "model": {"type": "unet.unet", "params": {"conv_activation": "ELU", "deconv_activation": "ELU"}},
    }
    init = random_model(tmp_path / "init", raw, seed=6)

    def config(name: str) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**raw, "model_dir": str(tmp_path / name)}))
        return path

    def tensorflow(name: str, steps: int, resume: bool = False) -> None:
        settings = TrainSettings(
            config(name), data, resume=resume, init=str(init), max_steps=steps, keep=1, export_savedmodel=False
        )
        train_on(settings, "cpu", "keras", "fp32", report=print)

    def jax(*runs: tuple[str, int, bool]) -> None:
        done = run_python(TRAIN, json.dumps([[str(config(n)), s, r] for n, s, r in runs]), str(data), str(init))
        assert "tensorflow imported: False" in done.stdout, done.stdout[-2000:]

    tensorflow("tf", 4)
    tensorflow("tf-then-jax", 2)
    jax(("jax", 4, False), ("jax-resumed", 2, False))
    shutil.copytree(tmp_path / "jax-resumed", tmp_path / "jax-then-tf")
    jax(("jax-resumed", 4, True), ("tf-then-jax", 4, True))
    tensorflow("jax-then-tf", 4, resume=True)

    expected, expected_validation = read_log(tmp_path / "tf")
    logs = {name: read_log(tmp_path / name) for name in ("jax", "jax-resumed", "tf-then-jax", "jax-then-tf")}
    print("TensorFlow:", expected, expected_validation, "\n", "\n".join(f"{n}: {log}" for n, log in logs.items()))
    for name, (losses, validation) in logs.items():
        assert sorted(losses) == [1, 2, 3, 4] and sorted(validation) == [2, 4], name
        np.testing.assert_allclose([losses[s] for s in range(1, 5)], [expected[s] for s in range(1, 5)], rtol=1e-3, err_msg=name)
        np.testing.assert_allclose([validation[2], validation[4]], [expected_validation[2], expected_validation[4]], rtol=1e-3)
    assert logs["jax-resumed"] == logs["jax"], "a resumed JAX run continues with exactly the same losses"

    # The JAX trainer's checkpoint keys are TensorFlow's, and the model folder holds the usual files.
    tf_keys = set(read_bundle(tmp_path / "tf" / "checkpoints" / "ckpt-4")) - {"save_counter/.ATTRIBUTES/VARIABLE_VALUE"}
    with np.load(tmp_path / "jax" / "checkpoints" / "ckpt-4.npz") as saved:
        assert set(saved.files) == tf_keys
    assert jax_checkpoint.latest(tmp_path / "jax-then-tf" / "checkpoints").backend == "tensorflow"
    for name in ("jax", "tf-then-jax"):
        assert {"config.json", "model.weights.h5", "train_log.csv", "logs"} <= {p.name for p in (tmp_path / name).iterdir()}


# -- the GPU benchmark -----------------------------------------------------------------------------

NO_DILATED_CONVOLUTIONS = """
import json, re
import numpy as np
from stemsep.config import ModelConfig, load_preset
from stemsep.separate.gpu.device import use_jax
from stemsep.separate.gpu.unets import build_model, compute_twin
from stemsep.train.jax_loop import DeviceState, TrainSteps

keras = use_jax()
cfg = ModelConfig.from_dict({**load_preset("4stems").raw, "T": 64, "F": 128}, "4stems, small")
counts = {}
for label in ("twin", "as built"):
    model = build_model(cfg)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    steps = TrainSteps(model, optimizer, rmse=False, forward=compute_twin(model, cfg) if label == "twin" else None)
    state = DeviceState(model, optimizer)
    mix = np.zeros((2, cfg.T, cfg.F, 2), np.float32)
    text = steps.train_step.lower(state.trainable, state.optimizer, state.fixed, mix, (mix,) * 4).as_text()
    convolutions = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    dilations = [re.search(r"lhs_dilate = \\[([0-9, ]+)\\]", line).group(1).replace(" ", "") for line in convolutions]
    counts[label] = [len(convolutions), sum(d != "1,1" for d in dilations)]
print(json.dumps(counts))
"""


def test_the_jax_training_step_has_no_input_dilated_convolution():
    """XLA's GPU backend runs input-dilated convolutions (transposed convolutions, and the input
    gradients of strided ones) tens of times slower than regular ones: the U-Nets' twin has none."""
    counts = json.loads(run_python(NO_DILATED_CONVOLUTIONS).stdout.strip().splitlines()[-1])
    print(counts)
    assert counts["as built"][1] > 0  # what the twin removes is there to remove
    assert counts["twin"][0] > 0 and counts["twin"][1] == 0


BARE = """
import runpy, sys
for name in ("av", "tensorflow", "typer", "onnxruntime", "tf2onnx", "onnx", "museval", "ray"):
    sys.modules[name] = None  # the GPU machine has none of them
sys.argv = ["bench_gpu.py", "--quick", "--json", sys.argv[1]]
runpy.run_path("benchmarks/bench_gpu.py", run_name="__main__")
"""


@pytest.mark.slow
def test_the_gpu_benchmark_runs_without_tensorflow_pyav_or_typer(tmp_path):
    """``benchmarks/bench_gpu.py --quick`` on JAX's CPU, importing what a bare GPU machine has (~2.3 min cold)."""
    done = run_python(BARE, str(tmp_path / "bench.json"))
    assert "| end to end, 2 x 3 s wav | 2stems | bf16 |" in done.stdout, done.stdout[-2000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    measures = {row["measure"] for row in result["rows"]}
    assert {"fp32 device stems vs CPU pipeline", "bf16 stems vs fp32 stems", "training, best batch"} <= measures
    device_vs_cpu = next(r for r in result["rows"] if r["measure"] == "fp32 device stems vs CPU pipeline")
    assert float(device_vs_cpu["value"].split()[0]) >= 60.0
