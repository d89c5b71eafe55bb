"""Whole-process wall time and peak RSS of `stemsep separate` vs the reference spleeter 2.4.2.

Same machine, same run, same inputs: the official example song and 180 s /
600 s files made from it. Also the U-Net's achieved GFLOP/s against a numpy
matmul on this machine. Prints a Markdown table.

usage: python benchmarks/bench_separate.py [--repeat N] [--lengths 180,600]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).parent))

from timing import median_seconds  # noqa: E402

from tests.reference import harness  # noqa: E402 - the reference venv and its FFmpeg


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one whole process and its children."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def make_inputs(example: Path, folder: Path, lengths: list[int]) -> dict[str, Path]:
    from stemsep.audio.decode import stream_audio

    song = np.concatenate(list(stream_audio(example, 44100)))
    inputs = {f"example ({song.shape[0] / 44100:.1f} s mp3)": example}
    for seconds in lengths:
        path = folder / f"song_{seconds}s.wav"
        reps = -(-seconds * 44100 // song.shape[0])
        # Alternate forward and reversed copies so no two chunks are identical.
        tiled = np.concatenate([song if k % 2 == 0 else song[::-1] for k in range(reps)])[: seconds * 44100]
        soundfile.write(path, tiled, 44100, subtype="PCM_16")
        inputs[f"{seconds} s wav"] = path
    return inputs


def unet_flops(model) -> float:
    """Multiply-adds x 2 of every (transposed) convolution for one [1, T, F, 2] segment."""
    flops = 0.0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Conv2DTranspose"):
            continue
        kh, kw, *_ = layer.kernel.shape
        c_in = layer.input.shape[-1]
        spatial = layer.output.shape[1:3] if kind == "Conv2D" else layer.input.shape[1:3]
        flops += 2.0 * spatial[0] * spatial[1] * kh * kw * c_in * layer.filters
    return flops


def compute_rates() -> tuple[float, float, float]:
    """(U-Net ms per segment, U-Net GFLOP/s, numpy matmul GFLOP/s)."""
    from stemsep.separate import Separator

    separator = Separator("spleeter:2stems")
    cfg = separator.config
    segment = np.random.default_rng(0).random((1, cfg.T, cfg.F, 2), dtype=np.float32)
    per_segment = median_seconds(lambda: separator.model(segment), warmup=3, runs=10)
    a = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    matmul = 2 * 2048**3 * 10 / (time.perf_counter() - start) / 1e9
    return per_segment * 1000, unet_flops(separator.model.build_keras()) / per_segment / 1e9, matmul


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lengths", default="180,600")
    args = parser.parse_args()

    from stemsep.assets import example_song
    from stemsep.model.provider import resolve_pretrained

    model_path = resolve_pretrained("2stems").parent
    reference_bin = harness.reference_venv() / "bin" / "spleeter"
    reference_env = harness.reference_env(model_path)
    ours_env = {**os.environ, "MODEL_PATH": str(model_path)}
    ours_bin = Path(sys.executable).with_name("stemsep")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(example_song(), Path(tmp), [int(x) for x in args.lengths.split(",") if x])
        for label, path in inputs.items():
            results = {}
            ours_cmd = [str(ours_bin), "separate", "-p", "spleeter:2stems", "-o", f"{tmp}/ours", "--overwrite", str(path)]
            reference_cmd = [str(reference_bin), "separate", "-p", "spleeter:2stems", "-o", f"{tmp}/ref", str(path)]
            for name, command, env in (("stemsep", ours_cmd, ours_env), ("spleeter 2.4.2", reference_cmd, reference_env)):
                runs = [run_measured(command, env) for _ in range(args.repeat)]
                results[name] = (statistics.median(w for w, _ in runs), max(m for _, m in runs))
                print(f"{label:24} {name:15} wall {results[name][0]:6.1f} s  peak {results[name][1]:6.0f} MiB", file=sys.stderr)
            rows.append((label, results["stemsep"], results["spleeter 2.4.2"]))
    ms, unet_rate, matmul_rate = compute_rates()

    print(f"\n2stems on {os.cpu_count()} cores, median of {args.repeat} runs (wall) / max (peak RSS), whole process:\n")
    print("| input | stemsep wall | spleeter wall | wall ratio | stemsep peak RSS | spleeter peak RSS | RSS ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, (ow, om), (rw, rm) in rows:
        print(f"| {label} | {ow:.1f} s | {rw:.1f} s | {ow / rw:.2f} | {om:.0f} MiB | {rm:.0f} MiB | {om / rm:.2f} |")
    print(
        f"\nU-Net (2 instruments) per [1, 512, 1024, 2] segment: {ms:.0f} ms = {unet_rate:.0f} GFLOP/s; "
        f"numpy float32 matmul 2048^3: {matmul_rate:.0f} GFLOP/s ({unet_rate / matmul_rate:.0%})."
    )


if __name__ == "__main__":
    main()
