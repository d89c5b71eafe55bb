"""Exported spectrogram models behind the same call as the Keras model: [B, T, F, 2] -> estimates.

Only numpy and the runtime (``ai-edge-litert`` or ``onnxruntime``) are imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stemsep.errors import StemsepError
from stemsep.export.metadata import ExportedModel, discover, select

BACKEND_FORMATS = {"litert": "tflite", "onnx": "onnx"}


def tflite_runner(path: Path, threads: int) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """input array -> {output name: array} for a .tflite file's (single) signature."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise StemsepError("The litert backend needs ai-edge-litert: pip install ai-edge-litert.") from None
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))
    (input_name,) = runner.get_input_details()
    return lambda x: runner(**{input_name: x})


def onnx_runner(path: Path, threads: int, machine_tuned: bool = False) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """input array -> {output name: array} for a .onnx file with one input. ``machine_tuned``: keep and
    load ONNX Runtime's graph optimized for this machine beside ``path`` (``runtime.onnx_tuned``; for
    stemsep's own prepared models, not for a user's folder)."""
    try:
        import onnxruntime
    except ImportError:
        raise StemsepError("The onnx backend needs onnxruntime: pip install onnxruntime.") from None

    def make_options() -> onnxruntime.SessionOptions:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # Flush denormals to zero as TensorFlow does (measured 5-10% faster on real music).
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        # Idle pool threads sleep instead of spinning: between runs the pipeline's own threads need the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Activations from the arena as each is needed rather than one block planned for the whole graph:
        # 2stems, one segment, 2 threads: peak RSS 329-344 MiB instead of 349-364, no slower (measured).
        options.enable_mem_pattern = False
        return options

    if machine_tuned:
        from stemsep.runtime.onnx_tuned import tuned_session

        session = tuned_session(path, make_options)
    else:
        session = onnxruntime.InferenceSession(str(path), make_options(), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name.split(":")[0] for o in session.get_outputs()]
    return lambda x: dict(zip(names, session.run(None, {input_name: x})))


class ExportedSpectrogramModel:
    """An exported multi-instrument spectrogram model, called one segment at a time (batch-1 files)."""

    def __init__(self, exported: ExportedModel, backend: str, threads: int, machine_tuned: bool = False) -> None:
        self.exported = exported
        self.config = exported.config
        if backend == "onnx":
            self._run = onnx_runner(exported.path, threads, machine_tuned)
        else:
            self._run = tflite_runner(exported.path, threads)

    def __call__(self, segments: np.ndarray) -> list[np.ndarray]:
        outputs = [self._run(segments[i : i + 1]) for i in range(segments.shape[0])]
        if len(outputs) == 1:
            return [outputs[0][name] for name in self.config.instruments]
        return [np.concatenate([o[name] for o in outputs]) for name in self.config.instruments]


def is_exported_folder(path: Path) -> bool:
    """A folder made by ``stemsep export`` (metadata JSONs beside model files), not a model folder."""
    return path.is_dir() and not (path / "config.json").is_file() and bool(discover(path))


def load_exported(
    folder: Path, backend: str, quantization: str | None = None, threads: int | None = None, machine_tuned: bool = False
):
    """The multi-instrument spectrogram model in ``folder`` for ``backend`` (litert or onnx); ``machine_tuned``:
    see ``onnx_runner``."""
    if backend not in BACKEND_FORMATS:
        raise StemsepError(f"Unknown backend {backend!r}; choose keras, litert or onnx.")
    exported = select(folder, BACKEND_FORMATS[backend], quantization)
    return ExportedSpectrogramModel(exported, backend, threads or os.cpu_count() or 1, machine_tuned)
