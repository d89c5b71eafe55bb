"""Import of the official TF1 checkpoints into the Keras U-Net.

The reference builds its graph with unscoped Keras layers, so TF1 numbers the
variables in build order across instruments: instrument ``i`` owns
``conv2d_{7i..7i+6}``, ``conv2d_transpose_{6i..6i+5}`` and
``batch_normalization_{12i..12i+11}``. The variables are read with
``tf.train.load_checkpoint``; no TF1 graph is built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stemsep.errors import StemsepError

N_CONV, N_DECONV, N_BN = 7, 6, 12
# batch_normalization_{12i+5} (the 6th encoder block's) feeds nothing in the
# reference graph, so the Keras model has no layer for it.
UNUSED_BN = 5
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def _tf1_name(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def variable_map(instruments: tuple[str, ...]) -> dict[str, list[str]]:
    """Keras layer name -> checkpoint variable names, in the layer's weight order."""
    mapping: dict[str, list[str]] = {}
    for i, scope in enumerate(instruments):
        for k in range(N_CONV):
            name = _tf1_name("conv2d", N_CONV * i + k)
            mapping[f"{scope}_conv{k + 1}"] = [f"{name}/kernel", f"{name}/bias"]
        for k in range(N_DECONV):
            name = _tf1_name("conv2d_transpose", N_DECONV * i + k)
            mapping[f"{scope}_deconv{k + 1}"] = [f"{name}/kernel", f"{name}/bias"]
        for k in range(N_BN):
            if k == UNUSED_BN:
                continue
            name = _tf1_name("batch_normalization", N_BN * i + k)
            mapping[f"{scope}_bn{k + 1}"] = [f"{name}/{v}" for v in BN_VARIABLES]
    return mapping


def checkpoint_prefix(model_dir: Path) -> Path:
    """The checkpoint prefix in a Spleeter model folder (``model`` by default)."""
    index_files = sorted(model_dir.glob("*.index"))
    if not index_files:
        raise StemsepError(f"No TensorFlow checkpoint (*.index) in {model_dir}.")
    state = model_dir / "checkpoint"
    if state.is_file():
        for line in state.read_text(errors="replace").splitlines():
            if line.startswith("model_checkpoint_path:"):
                candidate = model_dir / line.split(":", 1)[1].strip().strip('"')
                if candidate.with_suffix(candidate.suffix + ".index").is_file():
                    return candidate
    return index_files[-1].with_suffix("")


def read_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint as numpy arrays."""
    from stemsep._tf import import_tensorflow

    tf = import_tensorflow()

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StemsepError(f"Checkpoint {prefix} is corrupt or unreadable ({first_line[:160]}).") from None


def assign_checkpoint(model, variables: dict[str, np.ndarray], instruments: tuple[str, ...], source: str) -> None:
    """Set every U-Net weight from the checkpoint; any missing or misshaped variable is an error."""
    for layer_name, names in variable_map(instruments).items():
        layer = model.get_layer(layer_name)
        missing = [n for n in names if n not in variables]
        if missing:
            raise StemsepError(f"Checkpoint {source} does not fit this model: variable {missing[0]} is missing.")
        values = [variables[n] for n in names]
        for weight, value, name in zip(layer.weights, values, names):
            if tuple(weight.shape) != value.shape:
                expected = tuple(weight.shape)
                problem = f"{name} has shape {value.shape}, expected {expected}"
                raise StemsepError(f"Checkpoint {source} does not fit this model: {problem}.")
        layer.set_weights(values)
