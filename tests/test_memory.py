"""Peak memory of a whole `stemsep separate` process does not grow with the input's length."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tests.helpers import music_like

pytestmark = pytest.mark.slow

# Runs the CLI in-process and reports (peak RSS, peak anonymous RSS) in MiB. The
# anonymous part is sampled every 10 ms: it is the process's own memory, while
# the rest is shared-library pages whose residency depends on the page cache
# (a freshly installed TensorFlow maps ~100 MiB more of its .so files).
PEAK_RSS = """
import resource, runpy, sys, threading, time
peak_anon = 0
def sample():
    global peak_anon
    while True:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('RssAnon'):
                    peak_anon = max(peak_anon, int(line.split()[1]))
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()
sys.argv = ['stemsep', *sys.argv[1:]]
try:
    runpy.run_module('stemsep', run_name='__main__')
except SystemExit as e:
    assert not e.code, e.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, peak_anon // 1024)
"""


def _peaks_mb(args: list[str]) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    total, anonymous = result.stdout.strip().splitlines()[-1].split()
    return int(total), int(anonymous)


def test_peak_rss_is_flat_in_length(tmp_path, official_2stems):
    block = music_like(30.0, seed=7)
    peaks = {}
    for seconds in (30, 300):
        path = tmp_path / f"song{seconds}.wav"
        soundfile.write(path, np.tile(block, (seconds // 30, 1)), 44100, subtype="PCM_16")
        args = ["separate", "--model-dir", str(official_2stems.parent), "-o", str(tmp_path / "out"), str(path)]
        peaks[seconds] = _peaks_mb(args)
    print("peak RSS / anonymous RSS MiB:", peaks)
    assert peaks[300][1] - peaks[30][1] < 100  # 10x the audio, same memory
    assert peaks[300][0] - peaks[30][0] < 100
    assert peaks[300][1] < 700  # ~190 MiB of it is TensorFlow's own at import
