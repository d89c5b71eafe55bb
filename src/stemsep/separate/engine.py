"""What runs the U-Nets: one interface, one module per engine.

An engine takes magnitude segments ``[B, T, F, n_channels]`` and returns one
estimate ``[B, T, F, 2]`` per instrument (a mono model's estimates are stereo
too: ``ModelConfig.output_channels``); the pipeline (``separate.stream``)
does everything else. Engines, by ``--backend``:

- ``onnx`` (default) and ``litert``: ONNX Runtime or LiteRT, without
  TensorFlow. ``-p`` a preset, config or model folder: its first use converts
  the model once and caches the result (``separate.prepared``); ``-p`` a
  folder made by ``stemsep export``: its files as they are.
- ``keras``: the Keras U-Net as a compiled TensorFlow graph (``model.loader``).
- ``jax``: the Keras U-Net under ``jax.jit`` on a GPU (``--device gpu``) or
  JAX's CPU (``separate.gpu``); this engine also runs the STFT, masks and
  inverse STFT on its device (``stream_stems``), which ``Separator`` uses
  in place of ``separate.stream``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from stemsep.config import ModelConfig
from stemsep.errors import StemsepError

BACKENDS = ("onnx", "litert", "keras", "jax")
DEFAULT_BACKEND = "onnx"


class Engine(Protocol):
    config: ModelConfig

    def __call__(self, segments: np.ndarray) -> list[np.ndarray]:
        """[B, T, F, n_channels] float32 magnitudes -> one [B, T, F, 2] estimate per instrument."""
        ...


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise StemsepError(f"Unknown backend {backend!r}; choose {', '.join(BACKENDS)}.")


def load_engine(
    model: str,
    backend: str = DEFAULT_BACKEND,
    model_dir: Path | None = None,
    quantization: str | None = None,
    threads: int | None = None,
    precision: str = "fp32",
) -> Engine:
    """The engine that runs ``model`` (a preset, config, model folder or exported folder) on ``backend``."""
    check_backend(backend)
    from stemsep.runtime.exported import is_exported_folder, load_exported

    if is_exported_folder(Path(model)):
        if backend in ("keras", "jax"):
            raise StemsepError(f"{model} holds exported models: run it with --backend onnx or litert.")
        return load_exported(Path(model), backend, quantization, threads)
    if quantization not in (None, "none"):
        raise StemsepError("--quantization picks a file of a folder made by `stemsep export`; pass that folder with -p.")
    if backend == "jax":
        from stemsep.separate.gpu.engine import load_jax_engine

        return load_jax_engine(model, model_dir, precision)
    if backend == "keras":
        from stemsep.model.loader import load_model

        return load_model(model, model_dir)
    from stemsep.separate.prepared import prepare

    return load_exported(prepare(model, model_dir, backend), backend, None, threads, machine_tuned=True)
