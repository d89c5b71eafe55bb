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
