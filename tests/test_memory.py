"""Peak memory of a whole `stemsep separate` process does not grow with the input's length."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tests.helpers import music_like

pytestmark = pytest.mark.slow

PEAK_RSS = (
    "import resource, runpy, sys\n"
    "sys.argv = ['stemsep', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('stemsep', run_name='__main__')\n"
    "except SystemExit as e:\n    assert not e.code, e.code\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
)


def _peak_mb(args: list[str]) -> int:
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_peak_rss_is_flat_in_length(tmp_path, official_2stems):
    block = music_like(30.0, seed=7)
    peaks = {}
    for seconds in (30, 300):
        path = tmp_path / f"song{seconds}.wav"
        soundfile.write(path, np.tile(block, (seconds // 30, 1)), 44100, subtype="PCM_16")
        args = ["separate", "--model-dir", str(official_2stems.parent), "-o", str(tmp_path / "out"), str(path)]
        peaks[seconds] = _peak_mb(args)
    print("peak RSS MB:", peaks)
    assert peaks[300] < 1024
    assert peaks[300] - peaks[30] < 100  # 10x the audio, same memory
