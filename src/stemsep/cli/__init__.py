"""Command line: ``stemsep separate|batch|serve|evaluate|train|dataset|export|models|codecs|example``, Spleeter's options.

One module per group of commands, each registering on the one ``app`` (in the
order `stemsep --help` lists them); options several commands share are
declared once in ``cli.options``.
"""

# ruff: noqa: I001, F401  (the import order is the commands' order)
from stemsep.cli import separate
from stemsep.cli import batch
from stemsep.cli import serve
from stemsep.cli import training
from stemsep.cli import tools
from stemsep.cli.app import app, main

__all__ = ["app", "main"]
