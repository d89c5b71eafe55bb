"""Import museval without the ffmpeg binary its dataset loader insists on.

``museval/__init__`` imports ``musdb``, whose audio backend ``stempeg`` raises
at import time when no ``ffmpeg``/``ffprobe`` is on PATH. stemsep decodes
MUSDB with PyAV and needs none of musdb: museval's metrics and stores only
use the name. So when musdb cannot be imported, museval is imported with a
placeholder in its place, and the placeholder is removed again at once so
that nothing else sees it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from stemsep.errors import StemsepError


def import_museval() -> Any:
    if "museval" in sys.modules:
        return sys.modules["museval"]
    try:
        import musdb  # noqa: F401
    except ImportError:
        raise StemsepError("Evaluation needs museval: pip install 'stemsep[eval]'.") from None
    except RuntimeError:  # stempeg: no ffmpeg binary on PATH
        for name in [n for n in sys.modules if n == "stempeg" or n.startswith(("stempeg.", "musdb"))]:
            del sys.modules[name]
        sys.modules["musdb"] = types.ModuleType("musdb")
        try:
            import museval
        finally:
            del sys.modules["musdb"]
        return museval
    import museval

    return museval
