"""Training: it separates (SDR vs the mixture), resumes exactly after SIGKILL, fine-tunes from
the official weights, runs under MirroredStrategy; Spleeter's own test_train config (mix_name,
chunk_duration, mono and stereo models) trains and its model separates; dataset synth and prepare."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemsep.data.synth import synth_track, write_synthetic_dataset, write_training_config

REPO = Path(__file__).resolve().parents[1]


def small_config(dataset: Path, model_dir: Path, **overrides) -> Path:
    """The synthetic training config with its paths and any overrides set."""
    config_path = write_training_config(dataset)
    config = json.loads(config_path.read_text())
    config.update({"model_dir": str(model_dir), **overrides})
    path = model_dir.parent / f"{model_dir.name}.json"
    path.write_text(json.dumps(config))
    return path


def read_log(model_dir: Path) -> dict[int, float]:
    with open(model_dir / "train_log.csv", newline="") as handle:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(handle) if r["loss"]}


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemsep.cli", *args], capture_output=True, text=True, cwd=REPO, **kwargs)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(root, train=10, test=4, validation=2, seconds=12.0, seed=0)
    return root


class MixtureAsEstimate:
    """The unprocessed mixture as every instrument's estimate: the baseline to beat."""

    def __init__(self, instruments, rate):
        self.instruments, self.mwf = instruments, False
        self.config = type("config", (), {"sample_rate": rate})

    def separate(self, waveform, rate):
        return {name: waveform.copy() for name in self.instruments}


@pytest.mark.slow
def test_250_cpu_training_steps_beat_the_mixture_by_3_db_on_held_out_tracks(synthetic, tmp_path):
    from stemsep.evaluate.aggregate import load_run
    from stemsep.evaluate.run import evaluate
    from stemsep.train.loop import TrainSettings, train

    # How long this takes is measured by benchmarks/bench_train.py, not asserted here. The worst
    # instrument's margin over the 3 dB asked, measured every 50 steps: 3.1 dB at 150, 3.5 at 200,
    # 3.8 at 250 (drums; the others 4.4-6.7), 4.1 at 300. 250 steps take ~5 minutes on 2 cores.
    config = small_config(synthetic, tmp_path / "model", train_max_steps=250)
    result = train(TrainSettings(config, synthetic, keep=1, export_savedmodel=False), report=print)
    assert result.last_step == 250

    evaluate(str(tmp_path / "model"), synthetic, tmp_path / "eval", subset="test", backend="keras", workers=2)
    baseline = MixtureAsEstimate(("vocals", "drums", "bass", "other"), 44100)
    evaluate("mixture", synthetic, tmp_path / "baseline", subset="test", workers=2, separator=baseline)
    trained = load_run(tmp_path / "eval").summary()["SDR"]
    mixture = load_run(tmp_path / "baseline").summary()["SDR"]
    print(
        "median SDR (dB) on held-out synthetic tracks\n",
        "trained:",
        trained.round(2).to_dict(),
        "\n mixture:",
        mixture.round(2).to_dict(),
    )
    for instrument in ("vocals", "drums", "bass", "other"):
        assert trained[instrument] >= mixture[instrument] + 3.0, instrument


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_same_losses(synthetic, tmp_path):
    steps, every = 24, 8  # checkpoints at 8, 16, 24: the kill lands after 16
    overrides = {"train_max_steps": steps, "save_checkpoints_steps": every, "save_summary_steps": every // 2}

    def train_args(config: Path, *extra: str) -> list[str]:
        # --keep 2: a 4stems checkpoint with its Adam moments is ~470 MB
        return ["train", "-p", str(config), "-d", str(synthetic), "--no-savedmodel", "--keep", "2", *extra]

    straight = small_config(synthetic, tmp_path / "straight", **overrides)
    done = run_cli(*train_args(straight))
    assert done.returncode == 0, done.stderr
    expected = read_log(tmp_path / "straight")

    killed = small_config(synthetic, tmp_path / "killed", **overrides)
    process = subprocess.Popen([sys.executable, "-m", "stemsep.cli", *train_args(killed)], cwd=REPO)
    log = tmp_path / "killed" / "train_log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if log.exists() and max(read_log(tmp_path / "killed"), default=0) > 2 * every:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    progress = max(read_log(tmp_path / "killed"))
    assert 2 * every < progress < steps, "the kill must land mid-run"

    again = run_cli(*train_args(killed))
    assert again.returncode == 1 and "already holds a training run" in again.stderr
    resumed = run_cli(*train_args(killed, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    restart = int(resumed.stdout.split("at step ")[1].split(".")[0])
    assert restart == 2 * every  # the last checkpoint before the kill
    losses = read_log(tmp_path / "killed")
    every_step = list(range(1, steps + 1))
    assert sorted(losses) == every_step, "every step logged once, lost steps redone"
    np.testing.assert_allclose([losses[s] for s in every_step], [expected[s] for s in every_step], rtol=2e-4)
    import tensorflow as tf

    for prefix in tf.train.get_checkpoint_state(str(tmp_path / "killed" / "checkpoints")).all_model_checkpoint_paths:
        reader = tf.train.load_checkpoint(prefix)  # every kept checkpoint opens and holds the step
        assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == int(prefix.rsplit("-", 1)[1])


def test_init_from_official_2stems_gives_its_outputs_at_step_0(tmp_path, official_2stems, example_wave):
    from stemsep.separate import Separator
    from stemsep.train.loop import TrainSettings, train

    root = tmp_path / "data"
    write_synthetic_dataset(root, train=2, test=1, validation=1, seconds=21.0, seed=1)
    with open(root / "train.csv") as handle:  # vocals + accompaniment columns for a 2stems config
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["accompaniment_path"] = row["other_path"]
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0].keys()])
        writer.writeheader()
        writer.writerows(rows)
    config = json.loads((REPO / "src" / "stemsep" / "resources" / "2stems.json").read_text())
    cache = tmp_path / "cache"
    config.update(
        train_csv=str(root / "train.csv"),
        validation_csv="",
        model_dir=str(tmp_path / "finetuned"),
        training_cache=str(cache),
        n_chunks_per_song=1,
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    settings = TrainSettings(tmp_path / "config.json", root, init="spleeter:2stems", max_steps=0, export_savedmodel=False)
    result = train(settings)  # the official checkpoint: the official_2stems fixture put it in the cache
    assert result.last_step == 0
    # The TensorFlow engine on both sides: what is checked is the weights training starts from.
    finetuned = Separator(str(tmp_path / "finetuned"), backend="keras").separate(example_wave[: 44100 * 6], 44100)
    official = Separator("spleeter:2stems", model_dir=official_2stems.parent, backend="keras")
    official = official.separate(example_wave[: 44100 * 6], 44100)
    for name in ("vocals", "accompaniment"):
        np.testing.assert_array_equal(finetuned[name], official[name])


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(synthetic, tmp_path):
    script = f"""
import json, sys
import tensorflow as tf
devices = int(sys.argv[1])
if devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
from pathlib import Path
from stemsep.train.loop import TrainSettings, train
r = train(TrainSettings(Path(sys.argv[2]), Path({str(synthetic)!r}), strategy="mirrored" if devices > 1 else "default",
                        export_savedmodel=False), report=lambda s: None)
print(json.dumps(r.losses))
"""
    overrides = {"train_max_steps": 8, "save_checkpoints_steps": 8, "save_summary_steps": 4}
    losses = {}
    for devices in (1, 2):
        config = small_config(synthetic, tmp_path / f"model{devices}", **overrides)
        out = subprocess.run([sys.executable, "-c", script, str(devices), str(config)], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr[-2000:]
        losses[devices] = [loss for _, loss in json.loads(out.stdout.strip().splitlines()[-1])]
    print("1 device:", np.round(losses[1], 5), "\n2 devices:", np.round(losses[2], 5))
    np.testing.assert_allclose(losses[2], losses[1], rtol=5e-3)  # all-reduce order: ~1e-3 apart after 8 steps


# Spleeter's tests/test_train.py TRAIN_CONFIG (run there with n_channels 1 and 2).
SPLEETER_TRAIN_CONFIG = {
    "mix_name": "mix",
    "instrument_list": ["vocals", "other"],
    "sample_rate": 44100,
    "frame_length": 4096,
    "frame_step": 1024,
    "T": 128,
    "F": 128,
    "n_channels": 2,
    "chunk_duration": 4,
    "n_chunks_per_song": 1,
    "separation_exponent": 2,
    "mask_extension": "zeros",
    "learning_rate": 1e-4,
    "batch_size": 2,
    "train_max_steps": 10,
    "throttle_secs": 20,
    "save_checkpoints_steps": 100,
    "save_summary_steps": 5,
    "random_seed": 0,
    "model": {"type": "unet.unet", "params": {"conv_activation": "ELU", "deconv_activation": "ELU"}},
}
SONG_SECONDS = 6


def write_spleeter_test_dataset(root: Path, n_channels: int, songs: int = 2) -> Path:
    """Spleeter's test_train dataset layout (train/song<i>/<name>.wav, train/train.csv with mix_path,
    <instrument>_path..., duration), synthetic music instead of noise; returns the CSV."""
    rows = []
    for song in range(songs):
        stems = synth_track(100 + song, SONG_SECONDS)
        sources = {"mix": stems["vocals"] + stems["other"], "vocals": stems["vocals"], "other": stems["other"]}
        folder = root / "train" / f"song{song}"
        folder.mkdir(parents=True, exist_ok=True)
        row = {"duration": SONG_SECONDS}
        for name, audio in sources.items():
            sf.write(folder / f"{name}.wav", audio if n_channels == 2 else audio.mean(axis=1), 44100, subtype="FLOAT")
            row[f"{name}_path"] = f"train/song{song}/{name}.wav"
        rows.append(row)
    path = root / "train" / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["mix_path", "vocals_path", "other_path", "duration"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def spleeter_test_config(root: Path, n_channels: int, **changes) -> Path:
    """SPLEETER_TRAIN_CONFIG with paths under ``root``, as Spleeter's test_train sets them."""
    config = dict(SPLEETER_TRAIN_CONFIG, n_channels=n_channels, **changes)
    config.update(
        train_csv=str(root / "train" / "train.csv"),
        validation_csv=str(root / "train" / "train.csv"),
        model_dir=str(root / f"model_{n_channels}"),
        training_cache=str(root / f"cache_{n_channels}" / "training"),
        validation_cache=str(root / f"cache_{n_channels}" / "validation"),
    )
    path = root / f"config_{n_channels}.json"
    path.write_text(json.dumps(config))
    return path


def test_chunk_duration_is_the_training_chunk_length_as_in_the_reference(tmp_path):
    from stemsep.config import ModelConfig, TrainingConfig
    from stemsep.train.dataset import ChunkPlan, build_cache, chunk_starts, read_dataset_csv

    csv_path = write_spleeter_test_dataset(tmp_path, 2)
    raw = json.loads(spleeter_test_config(tmp_path, 2).read_text())
    cfg = ModelConfig.from_dict(raw)
    entries = read_dataset_csv(csv_path, tmp_path, cfg.instruments, "mix")
    frames = {}
    for seconds in (4, 20):  # 20 s is the reference's default; these songs last 6 s
        plan = ChunkPlan.for_training(TrainingConfig.from_dict(dict(raw, chunk_duration=seconds), cfg))
        assert plan == ChunkPlan(float(seconds), 1)
        data = build_cache(entries, cfg, tmp_path / "cache", plan, pytest.fail)
        frames[seconds] = data.lengths.tolist()
    # One centre chunk per song: 4 s give 1 + (4 * 44100 - 4096) // 1024 frames; 20 s the whole song.
    assert frames == {4: [169, 169], 20: [255, 255]}
    validation = build_cache(entries, cfg, tmp_path / "cache", ChunkPlan.for_validation(), pytest.fail)
    assert validation.lengths.tolist() == [cfg.T, cfg.T]  # the centre T frames of 12 s centre chunks
    # Starts as the reference's: k * (duration - chunk - 2 * 0.5) / (n - 1) + 0.5, or the centre one.
    assert chunk_starts(60.0, 3, 4.0) == [0.5, 28.0, 55.5]
    assert chunk_starts(60.0, 1, 4.0) == [28.0]


def test_mix_name_names_the_mixture_column(tmp_path):
    from stemsep.errors import StemsepError
    from stemsep.train.dataset import read_dataset_csv

    csv_path = write_spleeter_test_dataset(tmp_path, 2, songs=1)
    csv_path.write_text(csv_path.read_text().replace("mix_path", "mixture_path", 1))
    [entry] = read_dataset_csv(csv_path, tmp_path, ("vocals", "other"), "mixture")
    assert entry.mix == tmp_path / "train" / "song0" / "mix.wav"
    with pytest.raises(StemsepError, match="lacks the column\\(s\\) mix_path that the config's mix_name and instruments"):
        read_dataset_csv(csv_path, tmp_path, ("vocals", "other"), "mix")


def test_a_mono_model_learns_from_the_mean_of_the_channels():
    from stemsep.config import ModelConfig
    from stemsep.dsp.stft import periodic_hann
    from stemsep.train.dataset import magnitude

    mono = ModelConfig.from_dict(dict(SPLEETER_TRAIN_CONFIG, n_channels=1))
    stereo = synth_track(7, 1.0)["mixture"]
    window = periodic_hann(4096)
    spectrogram = magnitude(stereo, mono, window)
    assert spectrogram.shape == (1 + (44100 - 4096) // 1024, 128, 1)
    np.testing.assert_array_equal(spectrogram, magnitude(stereo.mean(axis=1, keepdims=True), mono, window))


@pytest.mark.parametrize("n_channels", [1, 2])
def test_spleeter_test_train_config_trains_then_its_model_separates(n_channels, tmp_path, monkeypatch):
    """Spleeter's test_train, then separation with the model: Separator and `stemsep separate -p config.json`."""
    from typer.testing import CliRunner

    from stemsep.cli import app
    from stemsep.separate import Separator
    from stemsep.train.loop import TrainSettings, train

    monkeypatch.setenv("STEMSEP_CACHE", str(tmp_path / "stemsep-cache"))
    write_spleeter_test_dataset(tmp_path, n_channels)
    config = spleeter_test_config(tmp_path, n_channels, train_max_steps=2)  # the reference runs 10: ~1 s each here
    result = train(TrainSettings(config, tmp_path, export_savedmodel=False), report=lambda line: None)
    model_dir = tmp_path / f"model_{n_channels}"
    assert result.last_step == 2 and (model_dir / "model.weights.h5").is_file()
    assert len(result.validation_losses) == 1 and np.isfinite([loss for _, loss in result.losses]).all()

    # The default engine (ONNX) for the mono model, Keras for the stereo one (and for a mono model in
    # test_model's reference test); the config names the model, as `-p config.json` does. Stems are
    # stereo either way: the reference's U-Net makes two masks.
    backend = "onnx" if n_channels == 1 else "keras"
    song = synth_track(42, 3.0)["mixture"]
    separator = Separator(str(config), backend=backend)
    assert separator.config.n_channels == n_channels
    for wave in (song, song[:, 0]):
        stems = separator.separate(wave, 44100)
        assert {name: s.shape for name, s in stems.items()} == {"vocals": (len(song), 2), "other": (len(song), 2)}
        assert all(np.isfinite(s).all() and np.abs(s).max() > 1e-3 for s in stems.values())

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    sf.write(inputs / "stereo.wav", song, 44100, subtype="FLOAT")
    sf.write(inputs / "mono.wav", song[:, 0], 44100, subtype="FLOAT")
    args = ["separate", "-p", str(config), "-o", str(tmp_path / "out"), "--backend", backend]
    ran = CliRunner().invoke(app, [*args, str(inputs / "stereo.wav"), str(inputs / "mono.wav")])
    assert ran.exit_code == 0, ran.output
    for name in ("stereo", "mono"):
        for instrument in ("vocals", "other"):
            stem, rate = sf.read(tmp_path / "out" / name / f"{instrument}.wav")
            assert rate == 44100 and stem.shape == (len(song), 2), (name, instrument)
