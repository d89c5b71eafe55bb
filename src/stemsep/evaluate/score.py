"""Score one track's estimates with museval (BSSEval v4, 1 s windows and hops).

This runs in worker processes: it imports neither TensorFlow nor a model.
Scoring goes through ``museval.eval_mus_track``, the function behind the
MUSDB18 leaderboards, so targets are grouped exactly as there (vocals and
accompaniment form their own scenario; other targets are scored together).
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsep.errors import StemsepError
from stemsep.evaluate._museval import import_museval
from stemsep.files import write_text_atomically

METRICS = ("SDR", "SIR", "ISR", "SAR")
WINDOW_SECONDS = 1.0


@dataclass
class ScoreJob:
    track: str
    subset: str
    sample_rate: int
    references: dict[str, np.ndarray]  # instrument -> [n, 2]
    estimates: dict[str, np.ndarray]
    destination: Path | None  # the museval JSON to write, or None


def score_track(job: ScoreJob):
    """museval's TrackStore of the job's estimates against its references."""
    museval = import_museval()
    if not job.references:
        raise StemsepError(f"Track {job.track} has no reference stem for any of the model's instruments.")
    length = min(a.shape[0] for a in job.references.values())
    references = {name: np.asarray(a[:length], dtype=np.float64) for name, a in job.references.items()}
    estimates = {name: np.asarray(a, dtype=np.float64) for name, a in job.estimates.items() if name in references}
    track = types.SimpleNamespace(
        name=job.track,
        subset=job.subset,
        rate=job.sample_rate,
        targets={name: types.SimpleNamespace(audio=audio) for name, audio in references.items()},
    )
    store = museval.eval_mus_track(track, estimates, output_dir=None, mode="v4", win=WINDOW_SECONDS, hop=WINDOW_SECONDS)
    if not store.scores["targets"]:
        raise StemsepError(f"Track {job.track}: BSSEval needs at least two instruments with references.")
    store.validate()
    return store


def score_and_save(job: ScoreJob) -> dict[str, float]:
    """Score, write museval's per-track JSON atomically, return the median SDR per instrument."""
    store = score_track(job)
    if job.destination is not None:
        write_text_atomically(job.destination, store.json)
    return {t["name"]: float(np.nanmedian([float(f["metrics"]["SDR"]) for f in t["frames"]])) for t in store.scores["targets"]}


def is_complete(path: Path) -> bool:
    """A per-track JSON from an earlier run that parses and holds scores."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("targets"))
