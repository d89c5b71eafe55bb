"""Bad input through the CLI: one sentence on stderr, a non-zero exit, nothing written.

Issue 12 item 8: non-finite samples, files cut short, a cache that cannot be
written, broken evaluation folders, mismatched reference stems, a full disk
during export.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from stemsep.cli import app
from tests.helpers import music_like

runner = CliRunner()


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def assert_one_sentence(result, sentence: str) -> None:
    """Exit 1, no traceback, and ``sentence`` (a regex) is a whole ``Error:`` line of stderr."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert any(re.fullmatch(f"Error: {sentence}", line) for line in error_lines(result)), result.stderr


@pytest.fixture(scope="module")
def model_args(official_2stems):
    return ["-p", "spleeter:2stems", "--model-dir", str(official_2stems.parent)]


def test_nan_and_infinite_samples_are_refused_with_where_they_are(tmp_path, model_args):
    wave = music_like(3.0)
    wave[22050, 0], wave[22050, 1], wave[110250, 0] = np.nan, np.inf, -np.inf  # 0.5 s and 2.5 s
    song = tmp_path / "song.wav"
    soundfile.write(song, wave, 44100, subtype="FLOAT")
    out = tmp_path / "out"
    result = runner.invoke(app, ["separate", *model_args, "-o", str(out), str(song)])
    assert_one_sentence(
        result,
        f"{re.escape(str(song))} has 3 samples that are not finite numbers \\(NaN or infinity\\), "
        r"the first at 0\.500 s and the last at 2\.500 s; fix or re-export the file\.",
    )
    assert not out.exists() or list(out.rglob("*")) == []


def test_a_wav_cut_short_is_refused_before_separation(tmp_path, model_args):
    song = tmp_path / "song.wav"
    soundfile.write(song, music_like(60.0, 8000), 8000, subtype="PCM_16")
    data = song.read_bytes()
    song.write_bytes(data[: int(len(data) * 0.3)])
    out = tmp_path / "out"
    result = runner.invoke(app, ["separate", *model_args, "-o", str(out), str(song)])
    sentence = f"{re.escape(str(song))} is truncated: its header promises 60\\.0 s but the file holds 18\\.0 s\\."
    assert_one_sentence(result, sentence)
    assert not out.exists() or list(out.rglob("*")) == []


def test_an_mp3_cut_short_is_refused_after_decoding(tmp_path, example_mp3, model_args):
    song = tmp_path / "cut.mp3"
    song.write_bytes(example_mp3.read_bytes()[:120_000])
    out = tmp_path / "out"
    result = runner.invoke(app, ["separate", *model_args, "-o", str(out), str(song)])
    assert_one_sentence(result, f"{re.escape(str(song))} is truncated: it declares 10\\.9 s but only \\d\\.\\d s decode\\.")
    assert not out.exists() or list(out.rglob("*")) == []


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A one-instrument model with random weights: converted for ONNX Runtime in seconds."""
    import json

    from stemsep.config import ModelConfig, load_preset
    from stemsep.model.unet import build_unet_model

    folder = tmp_path_factory.mktemp("small-model")
    raw = dict(load_preset("2stems").raw, instrument_list=["vocals"], T=64, F=256)
    (folder / "config.json").write_text(json.dumps(raw))
    build_unet_model(ModelConfig.from_dict(raw)).save_weights(folder / "model.weights.h5")
    return folder


@pytest.fixture(params=["a file", "a read-only folder"])
def unwritable_cache(request, tmp_path, monkeypatch):
    """$STEMSEP_CACHE naming a file, or a folder no file can be created in."""
    from stemsep.cache import unwritable_reason

    cache = tmp_path / "cache"
    if request.param == "a file":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        cache.chmod(0o555)
        request.addfinalizer(lambda: cache.chmod(0o755))
        if unwritable_reason(cache) is None:  # root ignores the mode: sysfs refuses new entries even to root
            cache = Path("/sys/kernel")
            if not cache.is_dir() or unwritable_reason(cache) is None:
                pytest.skip("no folder here is read-only for this user")
    monkeypatch.setenv("STEMSEP_CACHE", str(cache))
    return cache


UNWRITABLE = r"\((not a directory|permission denied|operation not permitted|read-only file system)\)"


@pytest.mark.parametrize("backend", ["onnx", "keras"])
def test_an_unwritable_cache_still_separates(tmp_path, small_model, unwritable_cache, backend):
    if backend == "onnx" and unwritable_cache.is_file():
        pytest.skip("test_engines prepares a model with a file as the cache")
    song = tmp_path / "song.wav"
    soundfile.write(song, music_like(1.0), 44100)
    out = tmp_path / "out"
    result = runner.invoke(app, ["separate", "-p", str(small_model), "--backend", backend, "-o", str(out), str(song)])
    assert result.exit_code == 0, result.stderr
    assert soundfile.info(out / "song" / "vocals.wav").frames == 44100
    if backend == "onnx":  # prepared in a temporary folder, and told once
        cache = re.escape(str(unwritable_cache))
        line = f"The cache {cache}/prepared is not writable {UNWRITABLE}: the model is prepared again on every run\\."
        assert [x for x in result.stderr.splitlines() if re.fullmatch(line, x)], result.stderr


def test_models_and_example_with_an_unwritable_cache(unwritable_cache):
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0 and "spleeter:4stems" in listed.stdout and listed.stderr == ""
    before = sorted(unwritable_cache.rglob("*")) if unwritable_cache.is_dir() else None
    example = runner.invoke(app, ["example"])
    cache = re.escape(str(unwritable_cache))
    sentence = f"Cannot store the example song in {cache}/assets {UNWRITABLE}; set STEMSEP_CACHE to a writable folder\\."
    assert_one_sentence(example, sentence)
    assert (sorted(unwritable_cache.rglob("*")) if unwritable_cache.is_dir() else None) == before


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two evaluation folders of two tracks each: one track scored in this process (vocals and
    accompaniment, the mixture as both estimates, 1 s), its JSON copied under the other name."""
    import json
    import shutil

    from stemsep.evaluate.score import ScoreJob, score_and_save
    from tests.test_evaluate import synthetic_stems

    root = tmp_path_factory.mktemp("runs")
    four = synthetic_stems(0, 1.0)
    stems = {"vocals": four["vocals"], "accompaniment": four["drums"] + four["bass"] + four["other"]}
    mixture = stems["vocals"] + stems["accompaniment"]
    run = root / "run1"
    score_and_save(ScoreJob("a", "test", 44100, stems, {k: mixture for k in stems}, run / "test" / "a.json"))
    shutil.copy(run / "test" / "a.json", run / "test" / "b.json")
    (run / "run.json").write_text(json.dumps({"label": "echo"}))
    shutil.copytree(run, root / "run2")
    return root


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[1, 2, 3]", 'a JSON list, not museval\'s object with "targets"'),
        ('{"targets": [{"name": "vocals", "frames": [', r"Expecting value at line 1"),
        ('{"note": "not scores"}', 'a JSON object without museval\'s "targets"'),
    ],
)
def test_compare_names_a_file_that_is_not_a_track_score(tmp_path, two_runs, content, problem):
    import shutil

    bad = tmp_path / "run3"
    shutil.copytree(two_runs / "run1", bad)
    (bad / "test" / "b.json").write_text(content)
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["evaluate", "--compare", str(two_runs / "run2"), str(bad), "-o", str(out)])
    kind = "is not valid JSON" if "Expecting" in problem else "is not a museval track score"
    sentence = (
        f"{re.escape(str(bad / 'test' / 'b.json'))} {kind} \\({problem}\\); "
        "re-run the evaluation to score that track again, or remove the file\\."
    )
    assert_one_sentence(result, sentence)
    assert not out.exists()


def test_compare_shows_how_many_tracks_each_run_scored(tmp_path, two_runs):
    import shutil

    short = tmp_path / "short"
    shutil.copytree(two_runs / "run1", short)
    (short / "test" / "b.json").unlink()
    result = runner.invoke(app, ["evaluate", "--compare", str(two_runs / "run2"), str(short), "-o", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("| tracks | 2 | 1 |") == 4  # one row per metric table
    sentence = (
        "The runs scored different numbers of tracks (echo (run2) 2, echo (short) 1): their medians are not over the same songs."
    )
    assert sentence in result.stdout.splitlines()


def test_evaluate_refuses_a_track_whose_stem_is_shorter_than_the_mixture(tmp_path, official_2stems):
    from tests.test_evaluate import synthetic_stems, write_hq_track

    root = tmp_path / "data"
    write_hq_track(root / "test" / "good", synthetic_stems(0, 2.0))
    write_hq_track(root / "test" / "cut", synthetic_stems(1, 2.0))
    drums = root / "test" / "cut" / "drums.wav"
    audio, rate = soundfile.read(drums, dtype="float32")
    soundfile.write(drums, audio[: len(audio) // 2], rate, subtype="FLOAT")
    out = tmp_path / "out"
    args = ["evaluate", "-p", "spleeter:2stems", "--model-dir", str(official_2stems.parent), "--workers", "1"]
    result = runner.invoke(app, [*args, "--mus_dir", str(root), "-o", str(out)])
    assert result.exit_code == 1, result.output
    sentence = (
        r"Track cut: drums\.wav lasts 1\.00 s but mixture\.wav lasts 2\.00 s; "
        r"every reference stem must be as long as the mixture\."
    )
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if re.fullmatch(f"  cut: {sentence}", line)], result.stderr
    assert "1 track(s) failed:" in result.stderr
    assert sorted(p.name for p in (out / "test").iterdir()) == ["good.json"]


def _writes_to_dev_full(*args, **kwargs):
    """What a writer meets on a full disk: the real ENOSPC of /dev/full, through TensorFlow's file system."""
    import tensorflow as tf

    with tf.io.gfile.GFile("/dev/full", "wb") as out:
        out.write(b"\\0" * (1 << 20))


def _python_writes_to_dev_full(*args, **kwargs):
    with open("/dev/full", "wb") as out:
        out.write(b"\\0" * (1 << 20))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_export_onto_a_full_disk_is_one_sentence_and_leaves_nothing(tmp_path, small_model, monkeypatch, fmt):
    import keras
    import tf2onnx

    # ExportArchive() makes an instance of its backend's subclass: the writer is that class's.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", _writes_to_dev_full)
    monkeypatch.setattr(tf2onnx.convert, "from_function", _python_writes_to_dev_full)
    out = tmp_path / "new" / "exported"
    if fmt == "onnx":  # an existing folder keeps what it held
        out.mkdir(parents=True)
        (out / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["export", "-p", str(small_model), "--format", fmt, "-o", str(out)])
    assert_one_sentence(result, f"Cannot write the exported model to {re.escape(str(out))}: no space left on device\\.")
    if fmt == "onnx":
        assert [p.name for p in out.iterdir()] == ["mine.txt"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_export_into_a_folder_that_refuses_writes_is_one_sentence(tmp_path, small_model, unwritable_cache):
    if unwritable_cache.is_file():
        out = unwritable_cache / "exported"
        reason = "not a directory"
    else:
        out = unwritable_cache / "exported"
        reason = "(permission denied|operation not permitted|read-only file system)"
    result = runner.invoke(app, ["export", "-p", str(small_model), "--format", "tflite", "-o", str(out)])
    assert_one_sentence(result, f"Cannot write the exported model to {re.escape(str(out))}: {reason}\\.")
    assert not out.exists()


def test_evaluation_and_comparison_folders_that_cannot_be_written_are_one_sentence(tmp_path, two_runs):
    from stemsep.errors import StemsepError
    from stemsep.evaluate.aggregate import load_run, write_comparison
    from tests.test_evaluate import synthetic_stems, write_hq_track

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    write_hq_track(tmp_path / "data" / "test" / "t", synthetic_stems(0, 1.0))
    result = runner.invoke(app, ["evaluate", "--mus_dir", str(tmp_path / "data"), "-o", str(blocker / "out")])
    assert_one_sentence(result, f"Cannot write the evaluation to {re.escape(str(blocker / 'out'))} \\(not a directory\\)\\.")
    runs = [load_run(two_runs / "run1"), load_run(two_runs / "run2")]
    sentence = f"^Cannot write the comparison to {re.escape(str(blocker / 'cmp'))} \\(not a directory\\)\\.$"
    with pytest.raises(StemsepError, match=sentence):
        write_comparison(runs, blocker / "cmp")
    table = write_comparison(runs, tmp_path / "cmp")
    assert "| instrument | echo (run1) | echo (run2) |" in table
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["compare.csv", "compare.md", "compare_sdr_boxplot.png"]
    compared = runner.invoke(
        app, ["evaluate", "--compare", str(two_runs / "run1"), str(two_runs / "run2"), "-o", str(blocker / "c")]
    )
    assert_one_sentence(compared, f"Cannot write the comparison to {re.escape(str(blocker / 'c'))} \\(not a directory\\)\\.")


def test_a_waveform_with_nan_is_refused_by_the_python_api(separator_2stems):
    from stemsep.errors import StemsepError

    wave = music_like(1.0)
    wave[22050, 1] = np.nan
    sentence = (
        r"^The waveform has 1 sample that is not a finite number \(NaN or infinity\), at 0\.500 s; "
        r"replace them before separating \(np\.nan_to_num, for example\)\.$"
    )
    with pytest.raises(StemsepError, match=sentence):
        separator_2stems.separate(wave, 44100)


def test_a_model_dir_folder_without_a_checkpoint_stops_instead_of_falling_back(tmp_path, official_2stems):
    import shutil

    broken = tmp_path / "models" / "2stems"
    shutil.copytree(official_2stems, broken)
    for index in broken.glob("*.index"):
        index.unlink()
    song = tmp_path / "song.wav"
    soundfile.write(song, music_like(1.0), 44100)
    result = runner.invoke(app, ["separate", "--model-dir", str(broken.parent), "-o", str(tmp_path / "out"), str(song)])
    assert_one_sentence(
        result,
        re.escape(
            f"{broken} (from --model-dir) holds no checkpoint (no model.index); complete or remove it, "
            "or drop --model-dir to use the official 2stems model."
        ),
    )
    assert not (tmp_path / "out").exists()
