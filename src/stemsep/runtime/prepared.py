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

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from stemsep.cache import cache_root
from stemsep.errors import StemsepError
from stemsep.export.metadata import select
from stemsep.model.loader import resolve_source, source_key

PREPARED_FORMAT = "1"  # bump when the export graph or its metadata changes
FORMATS = {"onnx": "onnx", "litert": "tflite"}
RUNTIME_NAMES = {"onnx": "ONNX Runtime", "litert": "LiteRT"}


def prepared_folder(descriptor: str, model_dir: Path | None, backend: str) -> Path:
    """Where the prepared copy of ``descriptor`` for ``backend`` lives (whether or not it exists yet)."""
    fmt = FORMATS[backend]
    source = resolve_source(descriptor, model_dir)
    return cache_root() / "prepared" / f"{fmt}-{source_key(source, PREPARED_FORMAT + fmt)}"


def is_prepared(folder: Path, backend: str) -> bool:
    try:
        select(folder, FORMATS[backend], None)
    except StemsepError:
        return False
    return True


def prepare(descriptor: str, model_dir: Path | None, backend: str) -> Path:
    """A folder holding ``descriptor``'s multi-instrument spectrogram model for ``backend``, made once."""
    folder = prepared_folder(descriptor, model_dir, backend)
    if is_prepared(folder, backend):
        return folder
    print(
        f"Preparing {descriptor} for {RUNTIME_NAMES[backend]} (once per model, about a minute; TensorFlow is loaded for it).",
        file=sys.stderr,
        flush=True,
    )
    staging = _staging_folder(folder)
    from stemsep.export.build import export_model

    try:
        export_model(descriptor, FORMATS[backend], staging, per_instrument=False, model_dir=model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if staging.parent != folder.parent:  # the cache is not writable: use the copy for this run
        return staging
    try:
        os.replace(staging, folder)
    except OSError:  # another process prepared it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
        if not is_prepared(folder, backend):
            raise StemsepError(f"Cannot store the prepared model in {folder}.") from None
    return folder


def _staging_folder(folder: Path) -> Path:
    """A hidden folder beside ``folder``, or, if the cache cannot be written, a temporary one removed at exit."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    except OSError as error:
        print(
            f"The cache {folder.parent} is not writable ({error.strerror or error}): the model is prepared again on every run.",
            file=sys.stderr,
        )
    staging = Path(tempfile.mkdtemp(prefix="stemsep-prepared-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    return staging
