"""stemsep: Spleeter-exact music source separation on TensorFlow 2 / Keras 3.

``from stemsep import Separator`` is lazy: TensorFlow loads with the first model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Separator", "StemsepError", "__version__"]

from stemsep.errors import StemsepError

if TYPE_CHECKING:
    from stemsep.separate import Separator


def __getattr__(name: str) -> Any:
    if name == "Separator":
        from stemsep.separate import Separator

        return Separator
    raise AttributeError(name)
