"""Training checkpoints that both backends read: TensorFlow's, and the JAX trainer's ``.npz``.

The TensorFlow trainer (``train.loop``) saves ``tf.train.Checkpoint(model,
optimizer, step)``: a tensor bundle whose keys are object paths, e.g.
``optimizer/_trainable_variables/7/.ATTRIBUTES/VARIABLE_VALUE`` (the 8th
weight), ``optimizer/_variables/9/...`` (an Adam moment),
``model/_operations/113/moving_mean/...`` (a BatchNorm statistic), ``step/...``.
Those paths name Keras attributes that are the same on every backend, so
``state_variables`` computes them for a Keras model and optimizer anywhere.

The JAX trainer writes the same keys and values with numpy into
``checkpoints/ckpt-<step>.npz`` (written beside and renamed: complete or
absent) and lists them in ``checkpoints/jax_checkpoint.json``; it resumes
from whichever backend's checkpoint is the latest, reading TensorFlow's with
``model.checkpoint.read_bundle`` (no TensorFlow). ``to_tensorflow`` turns the
latest JAX checkpoint into a TensorFlow one, so ``train.loop`` resumes a run
that JAX started.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsep.errors import StemsepError
from stemsep.files import write_text_atomically

POINTER = "jax_checkpoint.json"
TF_POINTER = "checkpoint"  # tf.train.CheckpointManager's state file
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_NON_TRAINABLE = ("moving_mean", "moving_variance")


@dataclass(frozen=True)
class Saved:
    """One checkpoint: its step, its path (an .npz file or a TensorFlow prefix) and which backend wrote it."""

    step: int
    path: Path
    backend: str  # "jax" or "tensorflow"

    def read(self) -> dict[str, np.ndarray]:
        if self.backend == "jax":
            try:
                with np.load(self.path) as data:
                    return {key: data[key] for key in data.files}
            except (OSError, ValueError) as error:
                raise StemsepError(f"Checkpoint {self.path} is corrupt or unreadable ({error}).") from None
        from stemsep.model.checkpoint import read_bundle

        return read_bundle(self.path)


def state_variables(model, optimizer) -> dict[str, object]:
    """Checkpoint key -> Keras variable, named as TensorFlow's checkpoint of (model, optimizer) names them:
    each variable under its shortest object path (the optimizer's lists before the model's layers)."""
    keys: dict[str, object] = {}
    for i, variable in enumerate(optimizer._trainable_variables):
        keys[f"optimizer/_trainable_variables/{i}"] = variable
    keys["optimizer/_iterations"] = optimizer._iterations
    keys["optimizer/_learning_rate"] = optimizer._learning_rate
    seen = {id(v) for v in keys.values()}
    for i, variable in enumerate(optimizer._variables):
        if id(variable) not in seen:
            keys[f"optimizer/_variables/{i}"] = variable
    for i, operation in enumerate(model._operations):
        for name in _NON_TRAINABLE:
            variable = getattr(operation, name, None)
            if variable is not None and id(variable) not in seen:
                keys[f"model/_operations/{i}/{name}"] = variable
    return {key + _VALUE: variable for key, variable in keys.items()}


def restore(arrays: dict[str, np.ndarray], variables: dict[str, object], source: str) -> int:
    """Assign every variable from ``arrays`` (one sentence if any is missing or misshaped); the step."""
    for key, variable in variables.items():
        value = arrays.get(key)
        if value is None or tuple(value.shape) != tuple(variable.shape):
            problem = "lacks" if value is None else f"has another shape for ({value.shape} vs {tuple(variable.shape)})"
            raise StemsepError(f"Checkpoint {source} {problem} {key.removesuffix(_VALUE)}: it was written for another model.")
        variable.assign(value)
    if STEP_KEY not in arrays:
        raise StemsepError(f"Checkpoint {source} holds no step.")
    return int(arrays[STEP_KEY])


def capture(variables: dict[str, object], step: int) -> dict[str, np.ndarray]:
    return {**{key: np.asarray(variable.value) for key, variable in variables.items()}, STEP_KEY: np.asarray(step, np.int64)}


def saved_checkpoints(folder: Path) -> list[Saved]:
    """Every checkpoint in ``folder`` that a pointer lists, both backends', oldest first."""
    found = []
    pointer = folder / POINTER
    if pointer.is_file():
        for name in json.loads(pointer.read_text())["all"]:
            found.append(Saved(_step_of(name), folder / name, "jax"))
    state = folder / TF_POINTER
    if state.is_file():
        for line in state.read_text(errors="replace").splitlines():
            if line.startswith("all_model_checkpoint_paths:"):
                name = line.split(":", 1)[1].strip().strip('"')
                found.append(Saved(_step_of(name), folder / name, "tensorflow"))
    return sorted(found, key=lambda saved: (saved.step, saved.backend == "jax"))


def latest(folder: Path) -> Saved | None:
    saved = saved_checkpoints(folder)
    return saved[-1] if saved else None


def write(folder: Path, arrays: dict[str, np.ndarray], keep: int) -> Path:
    """``ckpt-<step>.npz`` written beside and renamed, then the pointer; checkpoints past the last ``keep`` removed."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{int(arrays[STEP_KEY])}.npz"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temporary, folder / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    pointer = folder / POINTER
    names = json.loads(pointer.read_text())["all"] if pointer.is_file() else []
    names = [n for n in names if n != name] + [name]
    kept, dropped = names[-keep:], names[:-keep]
    write_text_atomically(pointer, json.dumps({"latest": name, "all": kept}) + "\n")
    for old in dropped:
        (folder / old).unlink(missing_ok=True)
    return folder / name


def _step_of(name: str) -> int:
    match = re.search(r"-(\d+)(\.npz)?$", name)
    if match is None:
        raise StemsepError(f"Cannot tell the step of checkpoint {name}.")
    return int(match.group(1))


def to_tensorflow(folder: Path, cfg, learning_rate: float, keep: int) -> Saved | None:
    """If the latest checkpoint in ``folder`` is a JAX one, save it again as the TensorFlow checkpoint
    that ``train.loop`` makes (the same model, Adam and step objects), so that its ``--resume`` continues it."""
    saved = latest(folder)
    if saved is None or saved.backend != "jax":
        return None
    from stemsep._tf import import_tensorflow

    tf = import_tensorflow()
    import keras

    from stemsep.model.unet import build_unet_model

    model = build_unet_model(cfg)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    step.assign(restore(saved.read(), state_variables(model, optimizer), str(saved.path)))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=keep, checkpoint_name="ckpt")
    manager.save(checkpoint_number=saved.step)
    return saved
