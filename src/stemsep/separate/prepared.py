"""Models prepared once for the TensorFlow-free runtimes.

The first separation with a model (preset, config or model folder) on the
``onnx`` or ``litert`` backend converts it: the Keras U-Net with its weights
is exported as one multi-instrument spectrogram file by ``stemsep export``'s
code (run and compared with Keras before it is kept) into
``<cache>/prepared/<format>-<key>/``, keyed like the compiled SavedModel by
the weights, the config and ``PREPARED_FORMAT``. TensorFlow is imported for
that conversion only: every later run loads the file with the runtime alone
(~0.3 s, where importing TensorFlow takes ~2.7 s and ~500 MiB).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from stemsep.cache import cache_root, writable_or_temporary
from stemsep.errors import StemsepError
from stemsep.export.metadata import select
from stemsep.files import current_umask
from stemsep.model.loader import resolve_source, source_key

PREPARED_FORMAT = "3"  # bump when the export graph, its optimization or its metadata changes
FORMATS = {"onnx": "onnx", "litert": "tflite"}
RUNTIME_NAMES = {"onnx": "ONNX Runtime", "litert": "LiteRT"}


def prepared_folder(descriptor: str, model_dir: Path | None, backend: str) -> Path:
    """Where the prepared copy of ``descriptor`` for ``backend`` lives (whether or not it exists yet)."""
    fmt = FORMATS[backend]
    source = resolve_source(descriptor, model_dir)
    # ONNX Runtime's optimized graph holds its own fused ops: it is remade for another version.
    runtime = _installed_version("onnxruntime") if backend == "onnx" else ""
    return cache_root() / "prepared" / f"{fmt}-{source_key(source, PREPARED_FORMAT + fmt + runtime)}"


def is_prepared(folder: Path, backend: str) -> bool:
    try:
        select(folder, FORMATS[backend], None)
    except (StemsepError, OSError):  # OSError: a cache folder that cannot be read
        return False
    return True


def prepare(descriptor: str, model_dir: Path | None, backend: str) -> Path:
    """A folder holding ``descriptor``'s multi-instrument spectrogram model for ``backend``, made once."""
    folder = prepared_folder(descriptor, model_dir, backend)
    if is_prepared(folder, backend):
        return folder
    if sys.stderr.isatty():  # like the download progress bar: for a person, not for a log
        runtime = RUNTIME_NAMES[backend]
        print(
            f"Preparing {descriptor} for {runtime}, once per model (about a minute; TensorFlow loads for it)...", file=sys.stderr
        )
    staging = _staging_folder(folder)
    try:
        try:
            from stemsep.export.build import export_model
        except StemsepError:  # an installation without TensorFlow
            raise StemsepError(
                f"{descriptor} is not prepared for {RUNTIME_NAMES[backend]} yet, which needs TensorFlow: install stemsep "
                "with its dependencies, or pass -p a folder made by `stemsep export`."
            ) from None
        export_model(descriptor, FORMATS[backend], staging, per_instrument=False, model_dir=model_dir)
        if backend == "onnx":
            optimize_for_onnxruntime(select(staging, "onnx", None).path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if staging.parent != folder.parent:  # the cache is not writable: use the copy for this run
        return staging
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
    try:
        os.replace(staging, folder)
    except OSError:  # another process prepared it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
        if not is_prepared(folder, backend):
            raise StemsepError(f"Cannot store the prepared model in {folder}.") from None
    return folder


def optimize_for_onnxruntime(path: Path) -> None:
    """Replace ``path`` by ONNX Runtime's own optimized graph (fusions that any CPU runs, not the
    machine-specific layouts) with the weights in a file beside it, when it computes the same.

    The wide transposed convolutions become one convolution per output phase first
    (``export.onnx_phases``: the U-Net 329 -> 282 ms per 2stems segment); if that graph does not
    compute the same, the exported one is optimized as it is. Measured on 2stems: session start
    0.40 -> 0.17 s, peak RSS ~75 MiB lower (the weights are read from their file instead of a
    second copy inside the parsed model).
    """
    import onnx
    import onnxruntime

    from stemsep.export.onnx_phases import split_transposed_convolutions
    from stemsep.runtime.onnx_tuned import same_outputs

    model = onnx.load(str(path))
    sources = [path]
    if split_transposed_convolutions(model):
        phased = path.with_name(path.stem + ".phases.onnx")
        onnx.save(model, str(phased))
        sources.insert(0, phased)
    del model
    exported = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    optimized = path.with_name(path.stem + ".optimized.onnx")
    weights = path.with_name(path.stem + ".weights")
    try:
        for source in sources:
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(optimized)
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name", weights.name)
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
            onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            rewritten = onnxruntime.InferenceSession(str(optimized), providers=["CPUExecutionProvider"])
            if same_outputs(exported, rewritten):
                os.replace(optimized, path)
                return
        optimized.unlink()  # keep the exported graph as it is
        weights.unlink(missing_ok=True)
    finally:
        for source in sources[:-1]:
            source.unlink()


def _installed_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def _staging_folder(folder: Path) -> Path:
    """A hidden folder beside ``folder``, or, if the cache cannot be written, a temporary one removed at exit."""
    target = writable_or_temporary(folder, "the model is prepared again on every run")
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{folder.name}."))
