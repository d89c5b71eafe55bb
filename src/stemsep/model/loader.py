"""Turn a model descriptor (``spleeter:4stems``, a config.json, a model folder) into a ready U-Net.

Official TF1 checkpoints are converted to Keras weights once and cached under
``<cache>/converted/`` keyed by the checkpoint's index file (which holds a
CRC of every tensor) and data sizes, so later runs skip the conversion.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsep.cache import cache_root
from stemsep.config import ModelConfig, load_config_file, load_preset, preset_name
from stemsep.errors import StemsepError
from stemsep.model.provider import has_checkpoint, resolve_pretrained

KERAS_WEIGHTS = "model.weights.h5"
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


class SeparationModel:
    """The U-Net of every instrument behind one compiled call on [B, T, F, 2] magnitudes."""

    def __init__(self, source: ModelSource) -> None:
        from stemsep._tf import import_tensorflow

        tf = import_tensorflow()

        from stemsep.model.unet import build_unet_model

        self.source = source
        self.config = source.config
        self.keras_model = build_unet_model(self.config)
        self._load_weights()
        spec = tf.TensorSpec([None, self.config.T, self.config.F, self.config.n_channels], tf.float32)
        self._call = tf.function(lambda x: self.keras_model(x, training=False), input_signature=[spec], jit_compile=False)

    def _load_weights(self) -> None:
        from stemsep.model.checkpoint import assign_checkpoint, checkpoint_prefix, read_checkpoint

        weights = self.source.weights
        if weights.is_file():
            self._load_keras_weights(weights)
            return
        cached = cache_root() / "converted" / f"{_checkpoint_key(weights)}.weights.h5"
        if cached.is_file():
            try:
                self._load_keras_weights(cached)
                return
            except StemsepError:
                cached.unlink(missing_ok=True)  # a stale or broken conversion: redo it
        prefix = checkpoint_prefix(weights)
        assign_checkpoint(self.keras_model, read_checkpoint(prefix), self.config.instruments, str(prefix))
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}.weights.h5")
            self.keras_model.save_weights(tmp)
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only cache only costs the conversion next time

    def _load_keras_weights(self, path: Path) -> None:
        try:
            self.keras_model.load_weights(path)
        except Exception as error:
            raise StemsepError(f"Weights file {path} is corrupt or does not fit this model ({type(error).__name__}).") from None

    def __call__(self, segments: np.ndarray) -> list[np.ndarray]:
        """[B, T, F, 2] float32 -> one [B, T, F, 2] estimate per instrument."""
        outputs = self._call(segments)
        return [np.asarray(o) for o in outputs]


def load_model(descriptor: str, model_dir: Path | None = None) -> SeparationModel:
    return SeparationModel(resolve_source(descriptor, model_dir))
