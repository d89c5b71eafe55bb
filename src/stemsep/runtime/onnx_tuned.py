"""ONNX Runtime sessions for prepared models, from a graph already optimized for this machine.

ONNX Runtime optimizes a graph each time a session starts. A prepared model is
stored after the portable ("extended") fusions only: what is left at load time
is the layout transformation into the CPU's blocked convolutions (NCHWc), which
on the 2stems model took 0.16-0.30 s of every run's start and made a reordered
second copy of the weights (RSS right after loading 172 MiB, peak after the
first segments 327-328 MiB). That result depends on the CPU (its vector width),
so it is stored per machine kind, beside the prepared model: written by the
first session that loads the model on such a machine, checked against that
session on a random input (>= 100 dB) and only then kept; later sessions load
it as it is, without optimizing again (measured: 0.01-0.03 s to start, 55 MiB
after loading, 311 MiB after the first segments; the U-Net as fast).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

PROVIDERS = ["CPUExecutionProvider"]
MIN_SNR_DB = 100.0


def machine_key() -> str:
    """What ONNX Runtime's machine-specific optimizations depend on: its version, the architecture and
    the CPU's feature flags (Linux; elsewhere the processor's name)."""
    import onnxruntime

    features = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith(("flags", "Features")):  # x86, ARM
                features = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    text = "|".join([onnxruntime.__version__, platform.machine(), features or platform.processor()])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tuned_path(path: Path) -> Path:
    """Where the copy of ``path`` optimized for this machine kind lives (its weights beside it)."""
    return path.with_name(f"{path.stem}.{machine_key()}{path.suffix}")


def tuned_session(path: Path, make_options: Callable[[], object]):
    """A session for the .onnx file ``path``: from its machine-tuned copy when there is one, else from
    ``path`` (storing the tuned copy on the way). ``make_options``: fresh SessionOptions."""
    import onnxruntime

    tuned = tuned_path(path)
    if tuned.is_file():
        options = make_options()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return onnxruntime.InferenceSession(str(tuned), options, providers=PROVIDERS)
        except Exception:  # unreadable or incomplete (ONNX Runtime raises its own kinds): made again
            pass
    try:
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{tuned.name}."))
    except OSError:  # a folder this user cannot write: optimize at every start, as ONNX Runtime does
        return onnxruntime.InferenceSession(str(path), make_options(), providers=PROVIDERS)
    try:
        options = make_options()  # ONNX Runtime's default level: every optimization, this machine's included
        options.optimized_model_filepath = str(staging / tuned.name)
        weights = tuned.with_suffix(".weights").name
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", weights)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        session = onnxruntime.InferenceSession(str(path), options, providers=PROVIDERS)
        with contextlib.suppress(Exception):  # keeping the copy is an optimization, never an error
            _keep_if_same(session, staging / tuned.name, make_options, tuned, weights)
        return session
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _keep_if_same(session, written: Path, make_options: Callable[[], object], tuned: Path, weights: str) -> None:
    """Move the written copy into place if it computes what ``session`` computes; the weights first, so
    that the graph, whose presence is what later sessions check, never names a missing file."""
    import onnxruntime

    options = make_options()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    candidate = onnxruntime.InferenceSession(str(written), options, providers=PROVIDERS)
    feed = {i.name: np.random.default_rng(0).uniform(0, 2, i.shape).astype(np.float32) for i in session.get_inputs()}
    for before, after in zip(session.run(None, feed), candidate.run(None, feed)):
        error = float(np.sum((before - after) ** 2, dtype=np.float64))
        if error > float(np.sum(before**2, dtype=np.float64)) * 10 ** (-MIN_SNR_DB / 10):
            return
    del candidate
    os.replace(written.with_name(weights), tuned.with_name(weights))
    os.replace(written, tuned)
