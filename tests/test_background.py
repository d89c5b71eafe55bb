"""Low-priority reconstruction beside the engine: nice 19 on Linux, turn-taking once starved, same stems."""

import os
import sys
import threading
import time

import numpy as np
import pytest

from stemsep.separate.background import LOW_PRIORITY, Background

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own priority is Linux's")


def _where(pool) -> tuple[int, int]:
    thread = threading.get_native_id()
    return thread, os.getpriority(os.PRIO_PROCESS, thread)


@pytest.fixture(autouse=True)
def _not_yet_starved(monkeypatch):
    monkeypatch.setattr(Background, "starved", False)


@linux_only
def test_work_runs_at_nice_19_on_another_thread():
    with Background(2) as background:
        thread, nice = background.finish(background.start(_where), patience=10.0)
    assert thread != threading.get_native_id()
    assert nice == LOW_PRIORITY
    assert background.overlapping


@linux_only
def test_starved_work_is_collected_and_the_rest_takes_turns_at_normal_priority():
    def slow(pool):
        time.sleep(0.3)
        return "done"

    with Background(2) as background:
        assert background.finish(background.start(slow), patience=0.05) == "done"
        assert not background.overlapping
        future = background.start(_where)
        assert future.done()  # ran here and now
        thread, nice = future.result()
    assert thread == threading.get_native_id()
    assert nice == os.getpriority(os.PRIO_PROCESS, 0)
    with Background(2) as later:  # the next file in this process takes turns from the start
        assert not later.overlapping


def test_overlapping_gives_the_same_stems_as_taking_turns(separator_2stems, example_wave, monkeypatch):
    # Two chunks and a shorter last one, so a chunk is reconstructed while the engine runs the next.
    wave = np.concatenate([example_wave, example_wave[::-1], example_wave[:100_000]])
    patient = Background.finish
    monkeypatch.setattr(Background, "finish", lambda self, future, patience: patient(self, future, 60.0))
    overlapped = separator_2stems.separate(wave, 44100)  # overlapped to the end, however busy the machine
    assert not Background.starved
    monkeypatch.setattr(Background, "__init__", _turn_taking_init(Background.__init__))
    taking_turns = separator_2stems.separate(wave, 44100)
    for name in overlapped:
        np.testing.assert_array_equal(overlapped[name], taking_turns[name])


def _turn_taking_init(init):
    def turn_taking(self, workers):
        init(self, workers)
        self.overlapping = False

    return turn_taking
