"""Turn a model descriptor (``spleeter:4stems``, a config.json, a model folder) into a ready U-Net.

Official TF1 checkpoints are converted once: the Keras U-Net with the
imported weights is saved as a SavedModel under ``<cache>/compiled/``, keyed
by the checkpoint's index file (which holds a CRC of every tensor), its data
sizes and the config, so later runs skip the build, import and tracing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsep.cache import cache_root
from stemsep.config import ModelConfig, load_config_file, load_preset, preset_name
from stemsep.errors import StemsepError
from stemsep.model.provider import has_checkpoint, resolve_pretrained

KERAS_WEIGHTS = "model.weights.h5"  # what a model trained by stemsep holds
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ModelSource:
    """A config and where its weights are: a Keras weights file or a TF1 checkpoint folder."""

    config: ModelConfig
    weights: Path
    label: str


def _checkpoint_key(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.index")) + sorted(folder.glob("*.data-*")):
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
        if path.suffix == ".index":
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _weights_in(folder: Path, label: str) -> Path:
    if (folder / KERAS_WEIGHTS).is_file():
        return folder / KERAS_WEIGHTS
    if has_checkpoint(folder):
        return folder
    raise StemsepError(f"{label} holds neither {KERAS_WEIGHTS} nor a TensorFlow checkpoint.")


def _model_dir_of_config(cfg: ModelConfig, config_path: Path) -> Path:
    """Spleeter resolves model_dir from the working folder or $MODEL_PATH; we also try beside the config."""
    raw = Path(cfg.model_dir)
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, config_path.parent / raw]
    if not raw.is_absolute() and os.environ.get("MODEL_PATH"):
        candidates.append(Path(os.environ["MODEL_PATH"]) / raw)
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise StemsepError(f"The model_dir {cfg.model_dir!r} of {config_path} does not exist.")


def resolve_source(descriptor: str, model_dir: Path | None = None) -> ModelSource:
    name = preset_name(descriptor)
    if name is not None:
        cfg = load_preset(name)
        return ModelSource(cfg, resolve_pretrained(name, model_dir), descriptor)
    path = Path(descriptor)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise StemsepError(f"Model folder {path} has no {CONFIG_NAME}.")
        return ModelSource(load_config_file(path / CONFIG_NAME), _weights_in(path, f"Model folder {path}"), str(path))
    if path.suffix == ".json" and path.is_file():
        cfg = load_config_file(path)
        folder = _model_dir_of_config(cfg, path)
        return ModelSource(cfg, _weights_in(folder, f"Model folder {folder}"), str(path))
    if path.suffix == ".json":
        raise StemsepError(f"Configuration {path} does not exist.")
    raise StemsepError(
        f"Unknown model {descriptor!r}: use spleeter:2stems|4stems|5stems[-16kHz], a config.json or a model folder."
    )


def source_key(source: ModelSource, salt: str) -> str:
    """A cache key for what is made from ``source``: its weights, its config and ``salt`` (the
    maker's format version). A checkpoint is keyed by its index file, which holds a CRC of every
    tensor, and its data files' sizes; a Keras weights file by its path, size and mtime."""
    weights = source.weights
    digest = hashlib.sha256(salt.encode())
    digest.update(json.dumps(source.config.raw, sort_keys=True, default=str).encode())
    if weights.is_file():
        stat = weights.stat()
        digest.update(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        digest.update(_checkpoint_key(weights).encode())
    return digest.hexdigest()[:24]


def build_keras(source: ModelSource):
    """The Keras U-Net of ``source`` with its weights (Keras file or imported TF1 checkpoint)."""
    from stemsep._tf import import_tensorflow

    import_tensorflow()
    from stemsep.model.unet import build_unet_model

    model = build_unet_model(source.config)
    load_weights(model, source)
    return model


def load_weights(model, source: ModelSource) -> None:
    """Fill ``model`` (a U-Net of ``source.config``, either backend) from ``source``'s weights file or TF1
    checkpoint (read without TensorFlow); one sentence if they do not fit."""
    weights = source.weights
    if weights.is_file():
        try:
            model.load_weights(weights)
        except Exception as error:  # h5py/keras raise many types for a bad file
            problem = f"is corrupt or does not fit this model ({type(error).__name__})"
            raise StemsepError(f"Weights file {weights} {problem}.") from None
        return
    from stemsep.model.checkpoint import assign_checkpoint, checkpoint_prefix, read_bundle

    prefix = checkpoint_prefix(weights)
    assign_checkpoint(model, read_bundle(prefix), source.config.instruments, str(prefix))


def weights_sha256(source: ModelSource) -> str:
    """sha256 of the weights a model was made from (all checkpoint files, in name order)."""
    files = (
        [source.weights]
        if source.weights.is_file()
        else sorted(p for p in source.weights.iterdir() if p.name.startswith(checkpoint_prefix_name(source.weights)))
    )
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def checkpoint_prefix_name(folder: Path) -> str:
    from stemsep.model.checkpoint import checkpoint_prefix

    return checkpoint_prefix(folder).name + "."


class SeparationModel:
    """The U-Net of every instrument behind one compiled call on [B, T, F, n_channels] magnitudes.

    The first use of a model builds the Keras U-Net, imports its weights and
    saves the inference function as a SavedModel in ``<cache>/compiled/``;
    later runs load that graph directly (no Keras build, no tracing: ~1 s
    less start-up). The cache key covers the weights, the config and
    ``COMPILED_FORMAT``, which changes whenever the graph code does.
    """

    COMPILED_FORMAT = "1"

    def __init__(self, source: ModelSource) -> None:
        from stemsep._tf import import_tensorflow

        self._tf = import_tensorflow()
        self.source = source
        self.config = source.config
        self._call = self._load_compiled()

    def build_keras(self):
        """The Keras U-Net with the source's weights."""
        return build_keras(self.source)

    def _load_compiled(self):
        tf = self._tf
        folder = cache_root() / "compiled" / source_key(self.source, self.COMPILED_FORMAT)
        if (folder / "saved_model.pb").is_file():
            try:
                # Keep the loaded object: its variables die with it.
                self._module = tf.saved_model.load(str(folder))
                return self._module.separate
            except Exception:  # a broken cache entry is rebuilt below
                shutil.rmtree(folder, ignore_errors=True)
        model = self.build_keras()
        spec = tf.TensorSpec([None, self.config.T, self.config.F, self.config.n_channels], tf.float32, name="magnitude")
        module = tf.Module()
        module.weights = model.weights
        module.separate = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._module = module
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        except OSError:
            return module.separate  # a read-only cache only costs this build next time
        try:
            tf.saved_model.save(module, str(staging))
            os.replace(staging, folder)
        except (OSError, tf.errors.OpError):  # a full disk, or another process stored it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
        return module.separate

    def __call__(self, segments: np.ndarray) -> list[np.ndarray]:
        """[B, T, F, n_channels] float32 -> one [B, T, F, 2] estimate per instrument.

        One segment per call: activations of a batch cost ~100 MB per segment, and batch 1 is as fast on CPU.
        """
        per_segment = []
        for i in range(segments.shape[0]):
            outputs = self._call(segments[i : i + 1])
            if not isinstance(outputs, (list, tuple)):  # a one-instrument model's output comes back bare
                outputs = [outputs]
            per_segment.append([np.asarray(o) for o in outputs])
        return [np.concatenate(outs) for outs in zip(*per_segment)]


def load_model(descriptor: str, model_dir: Path | None = None) -> SeparationModel:
    return SeparationModel(resolve_source(descriptor, model_dir))
