"""museval SDR of every backend against the reference's own stems, on the official example song.

usage: python benchmarks/sdr_exported.py [--exported benchmarks/results/exported-2stems] [--out DIR]
The reference stems come from spleeter 2.4.2 (tests/reference harness, cached);
the exported models from `python benchmarks/bench_export.py` (run it first).
Prints the `stemsep evaluate --compare` table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stemsep.assets import example_song  # noqa: E402
from stemsep.audio.decode import read_audio  # noqa: E402
from stemsep.evaluate.aggregate import compare_markdown, load_run  # noqa: E402
from stemsep.evaluate.run import evaluate  # noqa: E402
from stemsep.model.provider import resolve_pretrained  # noqa: E402
from tests.reference import harness  # noqa: E402

VARIANTS = [
    ("keras", None),
    ("litert", "none"),
    ("litert", "fp16"),
    ("litert", "int8"),
    ("litert", "int8-dynamic"),
    ("onnx", "none"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exported", type=Path, default=REPO / "benchmarks/results/exported-2stems")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/sdr-vs-reference")
    args = parser.parse_args()

    song = example_song()
    checkpoint = resolve_pretrained("2stems")
    data = args.out / "data" / "test" / "audio_example"
    if not (data / "mixture.wav").exists():
        data.mkdir(parents=True, exist_ok=True)
        for name, audio in harness.separate("spleeter:2stems", song, model_path=checkpoint.parent).items():
            sf.write(data / f"{name}.wav", audio, 44100, subtype="FLOAT")
        sf.write(data / "mixture.wav", read_audio(song, 44100), 44100, subtype="FLOAT")
    runs = []
    for backend, quantization in VARIANTS:
        model = "spleeter:2stems" if backend == "keras" else str(args.exported)
        folder = args.out / f"{backend}-{quantization or 'fp32'}"
        shutil.rmtree(folder, ignore_errors=True)  # evaluate() would keep last run's scores
        evaluate(model, args.out / "data", folder, backend=backend, quantization=quantization, workers=1)
        run = load_run(folder)
        run.label = f"{backend} {quantization or 'none'}".replace(" none", " fp32")
        runs.append(run)
    print(compare_markdown(runs))


if __name__ == "__main__":
    main()
