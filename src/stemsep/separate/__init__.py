"""Separation: ``Separator`` (arrays and files), the streaming pipeline (``stream``) and its engines (``engine``)."""

from stemsep.separate.engine import BACKENDS, DEFAULT_BACKEND, Engine, load_engine
from stemsep.separate.separator import DEFAULT_FILENAME_FORMAT, FILENAME_FIELDS, Separator

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_FILENAME_FORMAT", "FILENAME_FIELDS", "Engine", "Separator", "load_engine"]
