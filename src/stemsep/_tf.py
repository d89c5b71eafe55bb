"""Import TensorFlow once, lazily and quietly.

TF 2.2x prints absl/oneDNN banners on stderr at import whatever
TF_CPP_MIN_LOG_LEVEL says; the CLI's stderr is for the user, so the import
runs with file descriptor 2 pointed at /dev/null.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from stemsep.errors import StemsepError


def import_tensorflow() -> ModuleType:
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow
            except ImportError as error:
                raise StemsepError(
                    f"TensorFlow is not installed or broken ({error}); install stemsep with its dependencies."
                ) from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow
