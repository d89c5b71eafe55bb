"""Configurations as Spleeter accepts them: typed keys with one-sentence errors, unknown keys
ignored with a one-line notice, the training keys' Spleeter defaults, mono and stereo models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stemsep.config import TrainingConfig, load_config_file, load_preset, without_ignored_keys
from stemsep.errors import StemsepError


def write_config(tmp_path: Path, name: str = "config.json", **changes) -> Path:
    """The 2stems preset with ``changes`` (a value of None removes the key)."""
    raw = dict(load_preset("2stems").raw)
    raw.update(changes)
    path = tmp_path / name
    path.write_text(json.dumps({k: v for k, v in raw.items() if v is not None}))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(StemsepError) as caught:
        load_config_file(path)
    return str(caught.value)


def test_a_wrong_typed_value_is_one_sentence_naming_the_key_and_its_type(tmp_path):
    path = write_config(tmp_path, T="abc")
    assert error_of(path) == f'{path}: "T" must be an integer (got "abc").'
    path = write_config(tmp_path, instrument_list="vocals")
    assert error_of(path) == f'{path}: "instrument_list" must be a list of strings (got "vocals").'
    path = write_config(tmp_path, separation_exponent=True)
    assert error_of(path) == f'{path}: "separation_exponent" must be a number (got true).'
    path = write_config(tmp_path, model={"type": 5})
    assert error_of(path) == f'{path}: "model.type" must be a string (got 5).'
    path = write_config(tmp_path, sample_rate=None)
    assert error_of(path) == f'{path} is not a valid Spleeter configuration (missing key "sample_rate").'
    assert load_config_file(write_config(tmp_path, sample_rate=44100.0)).sample_rate == 44100  # an integral number


def test_training_keys_are_typed_too(tmp_path):
    model = load_preset("2stems")
    with pytest.raises(StemsepError) as caught:
        TrainingConfig.from_dict({**model.raw, "batch_size": "4"}, model, "config.json")
    assert str(caught.value) == 'config.json: "batch_size" must be an integer (got "4").'
    with pytest.raises(StemsepError) as caught:
        TrainingConfig.from_dict({**model.raw, "mix_name": ["mix"]}, model, "config.json")
    assert str(caught.value) == 'config.json: "mix_name" must be a string (got ["mix"]).'
    with pytest.raises(StemsepError, match='"loss" must be l1 or rmse'):
        TrainingConfig.from_dict({**model.raw, "loss": "l2"}, model, "config.json")


def test_unknown_keys_are_ignored_with_one_line_on_stderr(tmp_path, capsys):
    params = {"conv_activation": "ELU", "deconv_activation": "ELU", "conv_n_filters": [8, 16]}
    path = write_config(tmp_path, foo=1, optimizer="SGD", model={"type": "unet.unet", "params": params})
    cfg = load_config_file(path)
    assert cfg.model_params["conv_activation"] == "ELU"
    err = capsys.readouterr().err
    assert err == f'{path}: ignoring unknown key(s) "foo", "optimizer", "model.params.conv_n_filters".\n'
    load_config_file(path)
    assert capsys.readouterr().err == "", "once per file"
    kept = without_ignored_keys(cfg.raw)
    assert "foo" not in kept and kept["model"]["params"] == {"conv_activation": "ELU", "deconv_activation": "ELU"}
    # Every key of Spleeter's own configs is known: no notice for them.
    load_config_file(write_config(tmp_path, "preset.json", chunk_duration=4))
    load_preset("4stems")
    assert capsys.readouterr().err == ""


def test_training_keys_default_to_spleeters(tmp_path):
    model = load_preset("2stems")
    training = TrainingConfig.from_dict({"train_csv": "train.csv"}, model)
    assert (training.mix_name, training.chunk_duration, training.n_chunks_per_song) == ("mix", 20.0, 2)
    assert (training.random_seed, training.learning_rate) == (0, 1e-4)
    training = TrainingConfig.from_dict({"mix_name": "mixture", "chunk_duration": 12}, model)
    assert (training.mix_name, training.chunk_duration) == ("mixture", 12.0)


def test_chunk_duration_shorter_than_t_frames_is_refused_as_the_reference_does(tmp_path):
    model = load_preset("2stems")  # T=512 frames of hop 1024 at 44.1 kHz: chunks of at least 11.98 s
    assert TrainingConfig.from_dict({"chunk_duration": 11.982}, model).chunk_duration == 11.982
    with pytest.raises(StemsepError) as caught:
        TrainingConfig.from_dict({"chunk_duration": 11}, model, "config.json")
    assert str(caught.value) == (
        'config.json: "chunk_duration" 11 s is too short for T=512 frames '
        "(at least (T * frame_step + frame_length) / sample_rate = 11.982 s)."
    )
    with pytest.raises(StemsepError, match='"chunk_duration" must be positive'):
        TrainingConfig.from_dict({"chunk_duration": 0}, model, "config.json")


def test_n_channels_is_1_or_2(tmp_path):
    assert load_config_file(write_config(tmp_path, n_channels=1)).n_channels == 1
    mono = load_config_file(write_config(tmp_path, n_channels=1))
    assert mono.output_channels == 2, "a mono model's masks come in pairs, as the reference's"
    assert "n_channels must be 1 (mono) or 2 (stereo), not 3" in error_of(write_config(tmp_path, n_channels=3))
