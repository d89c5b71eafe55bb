"""U-Net structure and official checkpoint import."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from stemsep.config import PRESETS, load_config_file, load_preset
from stemsep.errors import StemsepError
from stemsep.model.checkpoint import UNUSED_BN, checkpoint_prefix, read_checkpoint, variable_map
from stemsep.model.loader import SeparationModel, build_keras, resolve_source
from stemsep.model.unet import build_unet_model


def test_presets_match_spleeter_configs():
    assert load_preset("2stems").instruments == ("vocals", "accompaniment")
    assert load_preset("4stems").instruments == ("vocals", "drums", "bass", "other")
    five = load_preset("5stems")
    assert five.instruments == ("vocals", "piano", "drums", "bass", "other") and five.model_type == "unet.softmax_unet"
    assert {load_preset(p).F for p in PRESETS} == {1024, 1536}
    assert load_preset("4stems-16kHz").F == 1536 and load_preset("4stems-16kHz").sample_rate == 44100
    with pytest.raises(StemsepError, match="Unknown model 'spleeter:3stems'"):
        load_preset("3stems")


def test_bad_config_is_one_sentence(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"instrument_list": ["a"]}')
    with pytest.raises(StemsepError, match="not a valid Spleeter configuration"):
        load_config_file(path)
    path.write_text("{oops")
    with pytest.raises(StemsepError, match="not valid JSON"):
        load_config_file(path)


def test_unet_has_spleeter_parameter_count():
    model = build_unet_model(load_preset("2stems"))
    # ~9.8 M per instrument; the dead 6th encoder BN (4 x 512) is not built.
    per_instrument = model.count_params() / 2
    assert 9.7e6 < per_instrument < 9.9e6
    assert [tuple(o.shape) for o in model.outputs] == [(None, 512, 1024, 2)] * 2


def test_every_official_variable_is_mapped(official_2stems):
    variables = read_checkpoint(checkpoint_prefix(official_2stems))
    mapped = {name for names in variable_map(("vocals", "accompaniment")).values() for name in names}
    unused = {
        f"batch_normalization_{12 * i + UNUSED_BN}/{v}"
        for i in range(2)
        for v in ("gamma", "beta", "moving_mean", "moving_variance")
    }
    assert mapped | unused == set(variables) - {"global_step"}
    # BN statistics of the official weights are the identity (see SPEC: BN is a learned affine).
    assert all(np.all(variables[n] == 0) for n in variables if n.endswith("moving_mean"))
    assert all(np.all(variables[n] == 1) for n in variables if n.endswith("moving_variance"))


def test_imported_weights_reproduce_checkpoint_values(official_2stems):
    variables = read_checkpoint(checkpoint_prefix(official_2stems))
    layer = build_keras(resolve_source("spleeter:2stems", official_2stems.parent)).get_layer("accompaniment_deconv3")
    np.testing.assert_array_equal(layer.get_weights()[0], variables["conv2d_transpose_8/kernel"])


def test_compiled_cache_gives_keras_numbers_and_is_reused(tmp_path, monkeypatch, official_2stems):
    monkeypatch.setenv("STEMSEP_CACHE", str(tmp_path))
    source = resolve_source("spleeter:2stems", official_2stems.parent)
    first = SeparationModel(source)  # builds the Keras model and saves the SavedModel
    assert len(list((tmp_path / "compiled").iterdir())) == 1
    keras_model = first.build_keras()
    monkeypatch.setattr(SeparationModel, "build_keras", lambda self: pytest.fail("compiled cache not used"))
    second = SeparationModel(source)  # loads the SavedModel
    segment = np.random.default_rng(0).uniform(0, 2, (1, 512, 1024, 2)).astype(np.float32)
    expected = [np.asarray(o) for o in keras_model(segment, training=False)]
    for reference, compiled in zip(expected, second(segment)):
        np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-6)


def test_corrupt_checkpoint_is_reported(tmp_path, official_2stems):
    broken = tmp_path / "2stems"
    shutil.copytree(official_2stems, broken)
    data = broken / "model.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(StemsepError, match="corrupt or unreadable"):
        SeparationModel(resolve_source("spleeter:2stems", tmp_path))


def test_unknown_descriptor_is_reported(tmp_path):
    with pytest.raises(StemsepError, match="Unknown model"):
        resolve_source("nonsense")
    with pytest.raises(StemsepError, match=r"has no config\.json"):
        resolve_source(str(tmp_path))


def test_a_model_folder_with_keras_weights_loads_like_the_preset(tmp_path, official_2stems, example_wave):
    """`-p folder` (config.json + model.weights.h5, what stemsep training writes) gives the preset's stems."""
    import json

    from stemsep.separate import Separator

    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(load_preset("2stems").raw))
    build_keras(resolve_source("spleeter:2stems", official_2stems.parent)).save_weights(folder / "model.weights.h5")
    ours = Separator(str(folder), backend="keras").separate(example_wave[:200_000], 44100)
    preset = Separator("spleeter:2stems", model_dir=official_2stems.parent, backend="keras").separate(
        example_wave[:200_000], 44100
    )
    for name in ("vocals", "accompaniment"):
        np.testing.assert_allclose(ours[name], preset[name], atol=1e-5)


def test_a_one_instrument_model_separates(tmp_path):
    """Keras hands a one-output model's result back bare; the pipeline still gets one estimate."""
    import json

    from stemsep.config import ModelConfig
    from stemsep.separate import Separator

    raw = dict(load_preset("2stems").raw, instrument_list=["vocals"], T=64, F=256)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    build_unet_model(ModelConfig.from_dict(raw)).save_weights(tmp_path / "model.weights.h5")
    wave = 0.1 * np.random.default_rng(0).standard_normal((44100 * 3, 2)).astype(np.float32)
    stems = Separator(str(tmp_path)).separate(wave, 44100)
    assert list(stems) == ["vocals"] and stems["vocals"].shape == wave.shape


@pytest.mark.parametrize("parts", [(8,), (8, 4)])
def test_subpixel_transposed_convolution_equals_keras(parts):
    """SubPixelConv2DTranspose (export graph) computes Conv2DTranspose(5, strides=2, "same"),
    also when its input comes as the parts a concatenation would have joined."""
    import keras

    from stemsep.model.unet import SubPixelConv2DTranspose

    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(1, 6, 10, c)).astype(np.float32) for c in parts]
    reference = keras.layers.Conv2DTranspose(3, (5, 5), strides=2, padding="same")
    reference.build((1, 6, 10, sum(parts)))
    reference.bias.assign(rng.normal(size=3).astype(np.float32))
    subpixel = SubPixelConv2DTranspose(3)
    subpixel.build([x.shape for x in inputs] if len(inputs) > 1 else inputs[0].shape)
    subpixel.set_weights(reference.get_weights())
    expected = reference(np.concatenate(inputs, axis=-1)).numpy()
    got = subpixel(inputs if len(inputs) > 1 else inputs[0]).numpy()
    assert got.shape == expected.shape == (1, 12, 20, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_space_to_depth_convolution_equals_keras():
    """SpaceToDepthConv2D (the JAX twin's encoder) computes Conv2D(5, strides=2, "same"); odd sizes are refused."""
    import keras

    from stemsep.model.unet import SpaceToDepthConv2D

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
    reference = keras.layers.Conv2D(4, (5, 5), strides=2, padding="same")
    reference.build(x.shape)
    reference.bias.assign(rng.normal(size=4).astype(np.float32))
    blocks = SpaceToDepthConv2D(4)
    blocks.build(x.shape)
    blocks.set_weights(reference.get_weights())
    got, expected = blocks(x).numpy(), reference(x).numpy()
    assert got.shape == expected.shape == (2, 4, 6, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="even height and width"):
        SpaceToDepthConv2D(4).build((1, 7, 12, 3))


# The reference graph of a mono model fed a mono waveform directly: its Separator makes every
# input stereo first, which a one-channel model's graph refuses (ValueError in tf.concat).
REFERENCE_MONO_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
from spleeter.model import EstimatorSpecBuilder

config, wave, out = sys.argv[1:4]
params = json.load(open(config))
with tf.Graph().as_default():
    features = {"waveform": tf.compat.v1.placeholder(tf.float32, (None, 1)), "audio_id": tf.compat.v1.placeholder(tf.string)}
    outputs = EstimatorSpecBuilder(features, params).outputs
    with tf.compat.v1.Session() as session:
        tf.compat.v1.train.Saver().restore(session, tf.train.latest_checkpoint(params["model_dir"]))
        stems = session.run(outputs, {features["waveform"]: np.load(wave), features["audio_id"]: ""})
np.savez(out, **{k: v for k, v in stems.items() if k != "audio_id"})
"""


@pytest.mark.slow
def test_a_mono_model_separates_as_the_reference_graph(tmp_path, monkeypatch):
    """A mono (n_channels 1) checkpoint written by the reference imports as it is and gives the
    reference graph's stems: stereo, one mask per channel on the one mixture channel."""
    import json
    import subprocess

    from stemsep.data.synth import synth_track
    from stemsep.separate import Separator
    from tests.helpers import snr_db
    from tests.reference import harness

    monkeypatch.setenv("STEMSEP_CACHE", str(tmp_path / "cache"))
    config = dict(json.loads(Path(__file__).parents[1].joinpath("src/stemsep/resources/2stems.json").read_text()))
    config.update(n_channels=1, T=128, F=128, model={"type": "unet.unet", "params": {"conv_activation": "ELU"}})
    descriptor = harness.random_model(config, harness.root() / "random-models" / "2stems-mono-T128-seed11", 11)
    mono = synth_track(9, 8.0)["mixture"].mean(axis=1, keepdims=True)
    np.save(tmp_path / "wave.npy", mono)
    python = harness.reference_venv() / "bin" / "python"
    args = [str(python), "-c", REFERENCE_MONO_SCRIPT, str(descriptor), str(tmp_path / "wave.npy"), str(tmp_path / "ref.npz")]
    done = subprocess.run(args, capture_output=True, text=True, env=harness.reference_env(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = dict(np.load(tmp_path / "ref.npz"))
    assert {k: v.shape for k, v in reference.items()} == {"vocals": (len(mono), 2), "accompaniment": (len(mono), 2)}
    separator = Separator(str(descriptor), backend="keras")  # ONNX = Keras for mono models: test_train
    for wave in (mono[:, 0], np.repeat(mono, 2, axis=1)):  # a mono file, and one decoded as stereo
        ours = separator.separate(wave, 44100)
        for name, stem in reference.items():
            assert ours[name].shape == stem.shape and snr_db(stem, ours[name]) > 90, name
