"""Parity with the reference spleeter==2.4.2 (built in its own venv by the fixtures).

Each stem must match the reference's to >= 60 dB SNR (>= 40 dB with --mwf).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemsep.audio.decode import stream_audio
from stemsep.separate import Separator
from tests.helpers import snr_db
from tests.reference import harness

pytestmark = pytest.mark.slow


def _ours(separator: Separator, path: Path) -> dict[str, np.ndarray]:
    """Our file pipeline (decode + streamed separation), in float."""
    blocks = stream_audio(path, separator.config.sample_rate)
    parts = [[] for _ in separator.instruments]
    for pieces in separator.stream(blocks):
        for acc, piece in zip(parts, pieces):
            acc.append(piece)
    return {name: np.concatenate(acc) for name, acc in zip(separator.instruments, parts)}


def _assert_parity(reference, ours, instruments, minimum_db):
    report = {name: snr_db(reference[name], ours[name]) for name in instruments}
    print("SNR vs reference (dB):", {k: round(v, 1) for k, v in report.items()})
    for name in instruments:
        assert ours[name].shape == reference[name].shape
        assert report[name] >= minimum_db, report


@pytest.fixture(scope="module")
def example_wav(example_mp3, tmp_path_factory) -> Path:
    """The example song decoded once and stored as float32 wav."""
    wave = np.concatenate(list(stream_audio(example_mp3, 44100)))
    path = tmp_path_factory.mktemp("wav") / "audio_example.wav"
    soundfile.write(path, wave, 44100, subtype="FLOAT")
    return path


@pytest.mark.parametrize("source", ["mp3", "wav"])
@pytest.mark.parametrize(("mwf", "minimum_db"), [(False, 60.0), (True, 40.0)])
def test_official_2stems_matches_reference(source, mwf, minimum_db, example_mp3, example_wav, official_2stems):
    audio = example_mp3 if source == "mp3" else example_wav
    reference = harness.separate("spleeter:2stems", audio, mwf=mwf, model_path=official_2stems.parent)
    ours = _ours(Separator("spleeter:2stems", mwf=mwf, model_dir=official_2stems.parent), audio)
    # Same decoder (FFmpeg) on both sides: the inputs are bit-identical.
    np.testing.assert_array_equal(np.concatenate(list(stream_audio(audio, 44100))), reference["input"])
    _assert_parity(reference, ours, ("vocals", "accompaniment"), minimum_db)


def test_cli_wav_output_matches_reference(tmp_path, example_mp3, official_2stems):
    from typer.testing import CliRunner

    from stemsep.cli import app

    reference = harness.separate("spleeter:2stems", example_mp3, model_path=official_2stems.parent)
    args = ["separate", "--model-dir", str(official_2stems.parent), "-o", str(tmp_path), str(example_mp3)]
    assert CliRunner().invoke(app, args).exit_code == 0
    ours = {
        name: soundfile.read(tmp_path / "audio_example" / f"{name}.wav", dtype="float32")[0]
        for name in ("vocals", "accompaniment")
    }
    _assert_parity(reference, ours, ("vocals", "accompaniment"), 60.0)  # limited by 16-bit wav


@pytest.mark.parametrize(("preset", "seed"), [("4stems", 4), ("5stems", 5)])
def test_random_weights_written_by_reference_graph_match(preset, seed, example_mp3, tmp_path_factory):
    preset_config = json.loads((Path(__file__).parents[1] / "src" / "stemsep" / "resources" / f"{preset}.json").read_text())
    folder = harness.root() / "random-models" / f"{preset}-seed{seed}"
    config_path = harness.random_model(preset_config, folder, seed)
    reference = harness.separate(str(config_path), example_mp3)
    separator = Separator(str(config_path))
    assert separator.instruments == tuple(preset_config["instrument_list"])
    _assert_parity(reference, _ours(separator, example_mp3), separator.instruments, 60.0)
