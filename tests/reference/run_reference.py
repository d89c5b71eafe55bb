"""Run inside the reference venv (spleeter==2.4.2): separate files, save float stems.

usage: python run_reference.py CONFIG OUT.npz [--mwf] INPUT [INPUT ...]
CONFIG is a Spleeter descriptor (spleeter:2stems, resolved through $MODEL_PATH)
or a JSON config path. Writes one npz per input: OUT.npz gets the input index
appended when several inputs are given.
"""

import sys

import numpy as np
from spleeter.audio.adapter import AudioAdapter
from spleeter.separator import Separator


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--mwf"]
    config, out, inputs = args[0], args[1], args[2:]
    separator = Separator(config, MWF="--mwf" in sys.argv, multiprocess=False)
    adapter = AudioAdapter.default()
    for i, path in enumerate(inputs):
        waveform, _ = adapter.load(path, offset=0, duration=600.0, sample_rate=separator._sample_rate)
        stems = separator.separate(waveform, path)
        target = out if len(inputs) == 1 else out.replace(".npz", f".{i}.npz")
        np.savez(target, **{k: np.asarray(v, dtype=np.float32) for k, v in stems.items()}, input=waveform)


if __name__ == "__main__":
    main()
