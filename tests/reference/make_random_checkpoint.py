"""Run inside the reference venv: write a checkpoint with random weights from Spleeter's own graph code.

usage: python make_random_checkpoint.py CONFIG.json OUT_DIR SEED

Builds the U-Nets with spleeter's EstimatorSpecBuilder (so variable names and
order are exactly the reference's), sets every variable, BN statistics
included, from a seeded numpy generator and saves OUT_DIR/model.*.
"""

import json
import sys

import numpy as np
import tensorflow as tf
from spleeter.model import EstimatorSpecBuilder


def random_value(name: str, shape: list, rng: np.random.Generator) -> np.ndarray:
    if name.endswith("/kernel"):
        fan_in = np.prod(shape[:2]) * (shape[3] if "conv2d_transpose" in name else shape[2])
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, shape)
    if name.endswith("/bias"):
        return rng.normal(0.0, 0.05, shape)
    if name.endswith("/gamma"):
        return rng.uniform(0.7, 1.3, shape)
    if name.endswith("/beta"):
        return rng.normal(0.0, 0.1, shape)
    if name.endswith("/moving_mean"):
        return rng.normal(0.0, 0.1, shape)
    if name.endswith("/moving_variance"):
        return rng.uniform(0.5, 1.5, shape)
    raise ValueError(f"unexpected variable {name}")


def main() -> None:
    config_path, out_dir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(config_path) as stream:
        params = json.load(stream)
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default():
        features = {
            "waveform": tf.compat.v1.placeholder(tf.float32, (None, params["n_channels"]), name="waveform"),
            "audio_id": tf.compat.v1.placeholder(tf.string, name="audio_id"),
        }
        builder = EstimatorSpecBuilder(features, params)
        _ = builder.outputs  # builds STFT, U-Nets, masks and iSTFT as in prediction
        model_variables = tf.compat.v1.global_variables()
        # The Estimator restores global_step too.
        global_step = tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable in model_variables:
                name = variable.op.name
                value = random_value(name, variable.shape.as_list(), rng).astype(np.float32)
                variable.load(value, session)
            tf.compat.v1.train.Saver([*model_variables, global_step]).save(session, f"{out_dir}/model")
    print(len(model_variables), "variables written")


if __name__ == "__main__":
    main()
