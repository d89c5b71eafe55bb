"""Whole-process `stemsep separate` against the reference spleeter 2.4.2, and against its own U-Net.

Same machine, same run, same inputs: the official example song and 180 s /
600 s files made from it, 2stems, with and without --mwf. Runs are paired
and alternate (stemsep, spleeter, stemsep, ...) so that a busy moment of the
machine hits both; each row gives medians over the pairs and the median of
the per-pair ratios. The U-Net's own compute time for each input is measured
in the same run, right before each stemsep run (the engine alone on real
segments, times the file's segment count; wall / U-Net is the median of the
per-run ratios), as is the machine's float32 matmul peak, at
the start and at the end (numpy, with OpenBLAS's
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for that measurement only, and the
kernel threadpoolctl names). Prints a Markdown table.

usage: python benchmarks/bench_separate.py [--pairs N] [--lengths 180,600] [--no-mwf] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import math
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

MATMUL_PEAK = """
import json, time, numpy as np, threadpoolctl
a = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
a @ a
best = min((lambda s: (a @ a, time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(10))
info = threadpoolctl.threadpool_info()
kernel = ", ".join(f"{i['internal_api']} {i.get('architecture')} x{i['num_threads']}" for i in info if i["user_api"] == "blas")
print(json.dumps({"gflops": 2 * 2048**3 / best / 1e9, "kernel": kernel}))
"""


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


def make_inputs(example: str, folder: str, lengths: str) -> dict[str, str]:
    """The example and files of ``lengths`` ("180,600") seconds made from it; {label: path}."""
    from stemsep.audio.decode import stream_audio

    song = np.concatenate(list(stream_audio(Path(example), 44100)))
    inputs = {f"example ({song.shape[0] / 44100:.1f} s mp3)": example}
    folder = Path(folder)
    for seconds in [int(x) for x in lengths.split(",") if x]:
        path = folder / f"song_{seconds}s.wav"
        reps = -(-seconds * 44100 // song.shape[0])
        # Alternate forward and reversed copies so no two chunks are identical.
        tiled = np.concatenate([song if k % 2 == 0 else song[::-1] for k in range(reps)])[: seconds * 44100]
        soundfile.write(path, tiled, 44100, subtype="PCM_16")
        inputs[f"{seconds} s wav"] = str(path)
    return inputs


def segments_of(path: Path, cfg) -> int:
    """U-Net segments the pipeline runs for a file: T-frame chunks of its frames (4096 leading zeros, pad_end)."""
    from stemsep.audio.decode import probe

    samples = round((probe(path).duration or 0.0) * cfg.sample_rate)
    return math.ceil(math.ceil((samples + cfg.frame_length) / cfg.frame_step) / cfg.T)


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


IN_SUBPROCESS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import bench_separate
print(json.dumps(getattr(bench_separate, sys.argv[2])(*json.loads(sys.argv[3]))))
"""


def in_subprocess(function: str, *args):
    """``function(*args)`` of this module in a process of its own, so that this one stays small: a child's
    peak RSS (what the table reports) starts from its parent's."""
    command = [sys.executable, "-c", IN_SUBPROCESS, str(Path(__file__).parent), function, json.dumps([str(a) for a in args])]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{function} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def unet_seconds_per_segment(song: str) -> float:
    """Median seconds per segment of the default engine on real segments of ``song``."""
    from stemsep.audio.decode import read_audio
    from stemsep.dsp.stft import periodic_hann, stft_frames
    from stemsep.separate import Separator

    separator = Separator("spleeter:2stems")
    cfg = separator.config
    wave = read_audio(Path(song), cfg.sample_rate)
    chunk = (cfg.T - 1) * cfg.frame_step + cfg.frame_length
    segments = []
    wave = np.concatenate([wave, np.zeros((max(chunk - wave.shape[0], 0), 2), np.float32)])
    for start in range(0, min(4, wave.shape[0] // chunk) * chunk, chunk):
        spectrum = stft_frames(wave[start:], cfg.frame_length, cfg.frame_step, cfg.T, periodic_hann(cfg.frame_length))
        segments.append(np.ascontiguousarray(np.abs(spectrum[:, :, : cfg.F]).transpose(1, 2, 0)[None]))
    per_segment = median_seconds(lambda: [separator.model(s) for s in segments], warmup=1, runs=5) / len(segments)
    return per_segment


def unet_flops_2stems() -> float:
    """FLOPs of one 2stems segment (builds the Keras model: TensorFlow, once per benchmark)."""
    from stemsep.model.loader import build_keras, resolve_source

    return unet_flops(build_keras(resolve_source("spleeter:2stems")))


def matmul_peak() -> dict:
    """numpy float32 matmul GFLOP/s and BLAS kernel, with OpenBLAS's core-type overrides unset for this command only."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", MATMUL_PEAK], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--lengths", default="180,600")
    parser.add_argument("--no-mwf", action="store_true", help="Skip the --mwf rows.")
    parser.add_argument("--no-reference", action="store_true", help="stemsep only (no spleeter venv).")
    args = parser.parse_args()

    from stemsep.assets import example_song
    from stemsep.config import load_preset
    from stemsep.model.provider import resolve_pretrained

    model_path = resolve_pretrained("2stems").parent
    # Python writes stemsep's bytecode caches as on a user's machine (installed packages, the
    # reference's included, have theirs from pip): an environment that forbids it (this project's
    # sandbox sets PYTHONDONTWRITEBYTECODE) would recompile stemsep's modules in every run (~0.1 s).
    ours_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"MODEL_PATH": str(model_path)}
    ours_bin = Path(sys.executable).with_name("stemsep")
    reference_bin = reference_env = None
    if not args.no_reference:
        reference_bin = harness.reference_venv() / "bin" / "spleeter"
        reference_env = harness.reference_env(model_path)
    cfg = load_preset("2stems")
    # The model's first use prepares it (once per machine): not what is measured.
    prepare = [str(ours_bin), "separate", "-o", tempfile.mkdtemp(), str(example_song())]
    subprocess.run(prepare, env=ours_env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {label: Path(p) for label, p in in_subprocess("make_inputs", example_song(), tmp, args.lengths).items()}
        peaks = [matmul_peak()]
        flops = in_subprocess("unet_flops_2stems")
        per_segments = []
        for mwf in (False,) if args.no_mwf else (False, True):
            for label, path in inputs.items():
                flag = ["--mwf"] if mwf else []
                common = ["separate", "-p", "spleeter:2stems", *flag]
                ours_cmd = [str(ours_bin), *common, "-o", f"{tmp}/ours", "--overwrite", str(path)]
                ref_cmd = [str(reference_bin), *common, "-o", f"{tmp}/ref", str(path)]
                pairs, unets = [], []
                for _ in range(args.pairs):
                    # The U-Net's time right before each stemsep run: this machine's speed drifts within a row
                    # (a stemsep run that follows Spleeter's 11 GiB on 600 s measured ~20% slower than one before).
                    per_segment = in_subprocess("unet_seconds_per_segment", inputs[list(inputs)[-1]])
                    per_segments.append(per_segment)
                    unets.append(segments_of(path, cfg) * per_segment)
                    ours = run_measured(ours_cmd, ours_env)
                    reference = (math.nan, math.nan)
                    if reference_bin:
                        try:
                            reference = run_measured(ref_cmd, reference_env)
                        except RuntimeError as error:  # e.g. killed for memory: the row says so
                            print(f"spleeter failed: {str(error)[-300:]}", file=sys.stderr)
                    pairs.append((ours, reference))
                    print(
                        f"{label:22} mwf={mwf!s:5} stemsep {ours[0]:5.1f} s (U-Net {unets[-1]:5.2f} s)  "
                        f"spleeter {reference[0]:5.1f} s",
                        file=sys.stderr,
                    )
                rows.append((label + (" --mwf" if mwf else ""), pairs, unets))

        peaks.append(matmul_peak())

    print(f"\n2stems on {os.cpu_count()} cores, {args.pairs} alternating pairs of whole processes (medians; peak RSS: max):\n")
    print(
        "| input | stemsep wall | U-Net compute | wall / U-Net | spleeter wall | ratio to spleeter "
        "| stemsep peak RSS | spleeter peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, pairs, unets in rows:
        ours_wall = statistics.median(o[0] for o, _ in pairs)
        ref_wall = statistics.median(r[0] for _, r in pairs)
        ratio = statistics.median(o[0] / r[0] for o, r in pairs)
        unet, over_unet = statistics.median(unets), statistics.median(o[0] / u for (o, _), u in zip(pairs, unets))
        print(
            f"| {label} | {ours_wall:.2f} s | {unet:.2f} s | {over_unet:.2f} | {ref_wall:.1f} s | {ratio:.2f} "
            f"| {max(o[1] for o, _ in pairs):.0f} MiB | {max(r[1] for _, r in pairs):.0f} MiB |"
        )
    per_segment = statistics.median(per_segments)
    rate = flops / per_segment / 1e9
    best = max(peak["gflops"] for peak in peaks)
    print(
        f"\nU-Net (2 instruments, default engine) per [1, 512, 1024, 2] segment of real music, measured before each "
        f"stemsep run: {' / '.join(f'{t * 1000:.0f}' for t in per_segments)} ms, median {per_segment * 1000:.0f} ms = "
        f"{rate:.0f} GFLOP/s; numpy float32 matmul 2048^3 peak at the start / end: "
        f"{' / '.join(format(peak['gflops'], '.0f') for peak in peaks)} GFLOP/s ({peaks[0]['kernel']}), "
        f"U-Net at {rate / best:.0%} of the higher."
    )


if __name__ == "__main__":
    main()
