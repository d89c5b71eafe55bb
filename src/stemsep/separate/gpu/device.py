"""Which device runs a model: ``--device auto|cpu|gpu`` and ``--precision fp32|bf16``.

``cpu`` runs the CPU engines (``--backend`` onnx, litert or keras/TensorFlow),
``gpu`` the JAX engine on a GPU, ``auto`` the GPU when JAX sees one, else the
CPU. ``--backend jax`` runs the JAX engine on whatever JAX's default device is
(its CPU where there is no GPU: how the tests run it).

Keras chooses its backend once, when it is first imported, for the whole
process; ``use_jax`` sets ``KERAS_BACKEND=jax`` before that and refuses when
Keras is already loaded on TensorFlow. ``auto`` asks JAX for a GPU only when a
JAX GPU plugin is installed, so a default installation never imports JAX.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.metadata import entry_points
from types import ModuleType

from stemsep.errors import StemsepError

DEVICES = ("auto", "cpu", "gpu")
DEFAULT_DEVICE = "auto"
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"
JAX_BACKEND = "jax"
_GPU_PLUGINS = ("jax_cuda13_plugin", "jax_cuda12_plugin", "jax_rocm7_plugin", "jax_rocm60_plugin")


def check_choices(device: str | None, precision: str) -> None:
    if device is not None and device not in DEVICES:
        raise StemsepError(f"Unknown device {device!r}; choose {', '.join(DEVICES)}.")
    if precision not in PRECISIONS:
        raise StemsepError(f"Unknown precision {precision!r}; choose {', '.join(PRECISIONS)}.")


def resolve_backend(device: str | None, backend: str, precision: str = DEFAULT_PRECISION) -> str:
    """The engine ``backend`` becomes on ``device``: ``jax`` for a GPU, else ``backend`` as it is
    (``None``: ``backend`` as it is, the JAX engine on JAX's default device)."""
    check_choices(device, precision)
    if device == "gpu":
        require_gpu()
        return JAX_BACKEND
    if device == "auto" and backend != JAX_BACKEND and gpu_visible():
        return JAX_BACKEND
    if device == "cpu" and backend == JAX_BACKEND:
        os.environ["JAX_PLATFORMS"] = "cpu"  # read when JAX initializes its backends
    if precision != DEFAULT_PRECISION and backend != JAX_BACKEND:
        raise StemsepError("--precision bf16 applies to the JAX engine: add --device gpu (or --backend jax).")
    return backend


def gpu_plugin_installed() -> bool:
    """Whether a JAX GPU plugin is installed (found without importing JAX)."""
    if any(importlib.util.find_spec(name) is not None for name in _GPU_PLUGINS):
        return True
    return any(point.name.startswith(("xla_cuda", "xla_rocm")) for point in entry_points(group="jax_plugins"))


def gpu_visible() -> bool:
    """Whether JAX is installed with a GPU plugin and sees a GPU."""
    if not gpu_plugin_installed():
        return False
    return bool(_gpu_devices())


def require_gpu() -> None:
    if importlib.util.find_spec("jax") is None:
        raise StemsepError("--device gpu needs JAX with CUDA: pip install 'stemsep[gpu]'.")
    if not _gpu_devices():
        raise StemsepError(
            "--device gpu: JAX sees no GPU (is a CUDA build of JAX installed, pip install 'stemsep[gpu]', and a driver?)."
        )


def _gpu_devices() -> list:
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend could be initialized
        return []


def use_jax() -> ModuleType:
    """Keras on its JAX backend (imported now if it is not yet); refuses if Keras already runs on another."""
    keras = sys.modules.get("keras")
    if keras is not None:
        current = keras.backend.backend()
        if current != JAX_BACKEND:
            raise StemsepError(
                f"Keras is already loaded on its {current} backend in this process, and a process has one backend: "
                "run the JAX engine in a new process (or set KERAS_BACKEND=jax before importing stemsep)."
            )
        return keras
    os.environ["KERAS_BACKEND"] = JAX_BACKEND
    import jax
    import keras

    # float32 means float32: XLA otherwise runs float32 convolutions and matmuls in TF32 on Ampere and
    # later GPUs (10-bit mantissa). bf16 is the fast choice; --precision says which.
    jax.config.update("jax_default_matmul_precision", "highest")
    _use_compilation_cache()
    return keras


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow (Keras seeds ``tf.random`` too
    whenever TensorFlow is installed, importing it: ~2.7 s and ~500 MiB the JAX path does without)."""
    keras = use_jax()
    absent = object()
    saved = sys.modules.get("tensorflow", absent)
    sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError: Keras skips it
    try:
        keras.utils.set_random_seed(seed)
    finally:
        if saved is absent:
            del sys.modules["tensorflow"]
        else:
            sys.modules["tensorflow"] = saved


def _use_compilation_cache() -> None:
    """Compiled device programs persist in ``<cache>/jax``: a model compiles once per machine, not per run."""
    import jax

    from stemsep.cache import cache_root

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
