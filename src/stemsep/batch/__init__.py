"""Separating a catalogue: a manifest of songs, a resumable results table, Ray actors that each hold one model.

``manifest`` (which songs), ``results`` (``OUTPUT/batch.sqlite3``), ``summary``
and ``progress`` need no Ray; ``worker`` (the actor), ``pool`` (the actors)
and ``runner`` (``run_batch``, the driver) import it: install ``stemsep[batch]``.
"""

from stemsep.batch.manifest import Manifest, read_manifest
from stemsep.batch.results import TABLE_NAME, ResultsTable, Row
from stemsep.batch.summary import BatchSummary

__all__ = ["TABLE_NAME", "BatchSummary", "Manifest", "ResultsTable", "Row", "read_manifest"]
