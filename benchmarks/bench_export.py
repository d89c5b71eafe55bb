"""Exported models vs the Keras path: file size, load time, per-segment latency, whole-song time.

usage: python benchmarks/bench_export.py [--seconds 180] [--out DIR]
Exports spleeter:2stems (tflite fp32/fp16/int8, onnx fp32) into DIR (kept for
--reuse), then times each backend in this process on the same song, after a
warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from timing import median_seconds

from stemsep.assets import example_song
from stemsep.audio.decode import stream_audio
from stemsep.export.build import export_model
from stemsep.separate import Separator

VARIANTS = [
    ("keras", None, None),
    ("litert", "tflite", "none"),
    ("litert", "tflite", "fp16"),
    ("litert", "tflite", "int8"),
    ("litert", "tflite", "int8-dynamic"),
    ("onnx", "onnx", "none"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/exported-2stems"))
    parser.add_argument("--reuse", action="store_true", help="keep models already in --out (only if made by this code)")
    args = parser.parse_args()
    for _, fmt, quantize in VARIANTS[1:]:
        stem = f"2stems-spectrogram-{'fp32' if quantize == 'none' else quantize}"
        if not (args.reuse and (args.out / f"{stem}.{'tflite' if fmt == 'tflite' else 'onnx'}").exists()):
            export_model("spleeter:2stems", fmt, args.out, quantize=quantize)
    song = np.concatenate(list(stream_audio(example_song(), 44100)))
    reps = -(-args.seconds * 44100 // song.shape[0])
    song = np.concatenate([song if k % 2 == 0 else song[::-1] for k in range(reps)])[: args.seconds * 44100]
    segment = np.random.default_rng(0).uniform(0, 1, (1, 512, 1024, 2)).astype(np.float32)
    rows = []
    for backend, _fmt, quantize in VARIANTS:
        start = time.perf_counter()
        if backend == "keras":
            separator = Separator("spleeter:2stems", backend="keras")
            size, label = None, "keras (TF, fp32)"
        else:
            separator = Separator(str(args.out), backend=backend, quantization=quantize)
            size = separator.model.exported.path.stat().st_size / 1e6
            label = f"{backend} {quantize if quantize != 'none' else 'fp32'}"
        load = time.perf_counter() - start
        latency = median_seconds(lambda s=separator: s.model(segment))
        t = time.perf_counter()
        separator.separate(song, 44100)
        whole = time.perf_counter() - t
        rows.append((label, size, load, latency * 1000, whole))
        print(f"{label}: done", flush=True)
    print(f"\n2stems, {args.seconds} s song, 2 threads; segment = [1, 512, 1024, 2], both instruments:\n")
    print("| backend | model file (both instruments) | load | per segment | whole song |")
    print("|---|---:|---:|---:|---:|")
    for label, size, load, ms, whole in rows:
        shown = "-" if size is None else f"{size:.1f} MB"
        print(f"| {label} | {shown} | {load:.2f} s | {ms:.0f} ms | {whole:.1f} s |")


if __name__ == "__main__":
    main()
