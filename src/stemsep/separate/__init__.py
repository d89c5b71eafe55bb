"""Separation: ``Separator`` (arrays and files), the streaming pipeline (``stream``) and its engines (``engine``)."""

from stemsep.separate.engine import BACKENDS, DEFAULT_BACKEND, Engine, load_engine
from stemsep.separate.output import DEFAULT_FILENAME_FORMAT, FILENAME_FIELDS, OutputOptions
from stemsep.separate.separator import SeparatedFile, Separator

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_FILENAME_FORMAT",
    "FILENAME_FIELDS",
    "Engine",
    "OutputOptions",
    "SeparatedFile",
    "Separator",
    "load_engine",
]
