"""stemsep: Spleeter-exact music source separation on TensorFlow 2 / Keras 3.

``from stemsep import Separator`` is lazy: TensorFlow loads with the first model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["OutputOptions", "Separator", "StemsepError", "__version__"]

from stemsep.errors import StemsepError

if TYPE_CHECKING:
    from stemsep.separate import OutputOptions, Separator


def __getattr__(name: str) -> Any:
    if name in ("OutputOptions", "Separator"):
        import stemsep.separate

        return getattr(stemsep.separate, name)
    raise AttributeError(name)
