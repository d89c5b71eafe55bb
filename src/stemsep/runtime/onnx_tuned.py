"""ONNX Runtime sessions for prepared models, from a graph already optimized for this machine.

ONNX Runtime optimizes a graph each time a session starts. A prepared model is
stored after the portable ("extended") fusions only: what is left at load time
is the layout transformation into the CPU's blocked convolutions (NCHWc), which
on the 2stems model took 0.16-0.30 s of every run's start and made a reordered
second copy of the weights (RSS right after loading 172 MiB, peak after the
first segments 327-328 MiB). That result depends on the CPU (its vector width),
so it is stored per machine kind, in a folder beside the prepared model: written
by the first session that loads the model on such a machine, checked against
that session on a random input (>= 100 dB) and only then moved into place, graph
and weights together in one rename; later sessions load it as it is, without
optimizing again (measured: 0.01-0.03 s to start, 55 MiB after loading, 311 MiB
after the first segments; the U-Net as fast). Linux only, where the CPU's
instruction sets can be read to key the copy (elsewhere ONNX Runtime optimizes
at every start, as before).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stemsep.files import current_umask

PROVIDERS = ["CPUExecutionProvider"]
MIN_SNR_DB = 100.0
# The CPU flags that name instruction sets (x86's sse*/avx*/fma/amx..., ARM's asimd*/sve*...): not the
# mitigation, microcode and protection flags (smep...), which a kernel update may change.
INSTRUCTION_SETS = re.compile(
    r"(sse|ssse|avx|fma|f16c|amx|bmi|adx|v?aes|v?pclmul|gfni|popcnt|movbe|asimd|sve|sme(?!p)|fp|i8mm|bf16)"
)


def machine_key() -> str | None:
    """What ONNX Runtime's machine-specific optimizations depend on: its version, the architecture and the
    CPU's instruction sets; None where they cannot be read (not Linux)."""
    import onnxruntime

    if not sys.platform.startswith("linux"):
        return None
    features = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith(("flags", "Features")):  # x86, ARM
                features = sorted(flag for flag in line.split(":", 1)[1].split() if INSTRUCTION_SETS.match(flag))
                break
    if features is None:
        return None
    text = "|".join([onnxruntime.__version__, platform.machine(), *features])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tuned_folder(path: Path) -> Path | None:
    """The folder beside ``path`` that holds its copy optimized for this machine kind (None: no such copy here)."""
    key = machine_key()
    return None if key is None else path.with_name(f"{path.stem}.tuned-{key}")


def tuned_session(path: Path, make_options: Callable[[], object]):
    """A session for the .onnx file ``path``: from its machine-tuned copy when there is one, else from
    ``path`` (storing the tuned copy on the way). ``make_options``: fresh SessionOptions."""
    import onnxruntime

    folder = tuned_folder(path)
    if folder is None:
        return onnxruntime.InferenceSession(str(path), make_options(), providers=PROVIDERS)
    if (folder / path.name).is_file():
        options = make_options()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return onnxruntime.InferenceSession(str(folder / path.name), options, providers=PROVIDERS)
        except Exception:  # unreadable or incomplete (ONNX Runtime raises its own kinds): made again below
            shutil.rmtree(folder, ignore_errors=True)
    try:
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{folder.name}."))
    except OSError:  # a folder this user cannot write: optimize at every start, as ONNX Runtime does
        return onnxruntime.InferenceSession(str(path), make_options(), providers=PROVIDERS)
    try:
        options = make_options()  # ONNX Runtime's default level: every optimization, this machine's included
        options.log_severity_level = 3  # not its warning that the written graph is for this machine only
        options.optimized_model_filepath = str(staging / path.name)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{path.stem}.weights")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=PROVIDERS)
        except Exception:  # writing the copy failed (a full disk, say): the model itself loads as it always did
            return onnxruntime.InferenceSession(str(path), make_options(), providers=PROVIDERS)
        with contextlib.suppress(Exception):  # keeping the copy is an optimization, never an error
            if _computes_the_same(session, staging / path.name, make_options):
                os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
                os.replace(staging, folder)  # refused if another process's copy got there first: theirs stays
        return session
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _computes_the_same(session, written: Path, make_options: Callable[[], object]) -> bool:
    """Whether the graph ``written`` gives ``session``'s outputs, loaded as it is."""
    import onnxruntime

    options = make_options()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return same_outputs(session, onnxruntime.InferenceSession(str(written), options, providers=PROVIDERS))


def same_outputs(reference, candidate, min_snr_db: float = MIN_SNR_DB) -> bool:
    """Whether two ONNX Runtime sessions give the same outputs (>= ``min_snr_db``) on one random input."""
    feed = {i.name: np.random.default_rng(0).uniform(0, 2, i.shape).astype(np.float32) for i in reference.get_inputs()}
    for before, after in zip(reference.run(None, feed), candidate.run(None, feed)):
        signal = float(np.sum(before.astype(np.float64) ** 2))
        noise = float(np.sum((before.astype(np.float64) - after) ** 2))
        if 10 * np.log10(signal / max(noise, 1e-30)) < min_snr_db:
            return False
    return True
