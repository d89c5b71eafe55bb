"""Training throughput: steps/s of `stemsep train` at the reference's size (batch 4, 512x1024x2).

usage: python benchmarks/bench_train.py [--steps 30] [--presets 2stems 4stems] [--reference] [--strategy auto]
Writes a synthetic dataset (cached in the work folder), trains each preset's
config from scratch for --steps steps (the first 5 are warm-up and not timed:
tracing, cache), and prints a Markdown table. --reference also runs
`spleeter train` (2.4.2, the tests' reference venv) on the same data and
config and reads its global_step/sec. Run it on a GPU machine to get GPU
figures (add --mixed-precision there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

WARMUP_STEPS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--presets", nargs="+", default=["2stems", "4stems"])
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--reference", action="store_true", help="also time spleeter 2.4.2's `spleeter train`")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "stemsep-bench-train")
    args = parser.parse_args()

    from stemsep.config import load_preset
    from stemsep.data.synth import write_synthetic_dataset
    from stemsep.train.loop import TrainSettings, train

    data = args.work / "data"
    if not (data / "train.csv").exists():
        write_synthetic_dataset(data, train=4, test=1, validation=1, seconds=24.0, seed=0)
    csv_text = (data / "train.csv").read_text()
    (data / "train_accompaniment.csv").write_text(  # 2stems reads accompaniment_path: point it at other.wav
        csv_text.replace("other_path", "accompaniment_path", 1)
    )
    rows = []
    for preset in args.presets:
        config = dict(load_preset(preset).raw)
        model_dir = Path(tempfile.mkdtemp(prefix=f"{preset}-", dir=args.work))
        config.update(
            train_csv=str(data / ("train_accompaniment.csv" if "accompaniment" in config["instrument_list"] else "train.csv")),
            validation_csv="",
            model_dir=str(model_dir),
            training_cache=str(args.work / "cache"),
            n_chunks_per_song=2,
            save_summary_steps=10**9,
            save_checkpoints_steps=10**9,
        )
        path = model_dir.with_suffix(".json")
        path.write_text(json.dumps(config))
        result = train(
            TrainSettings(path, data, strategy=args.strategy, mixed_precision=args.mixed_precision, max_steps=args.steps,
                          export_savedmodel=False),
            report=lambda _: None,
        )  # fmt: skip
        ends = result.step_ends
        steady = (len(ends) - WARMUP_STEPS) / (ends[-1] - ends[WARMUP_STEPS - 1])
        rows.append((f"stemsep {preset}", len(config["instrument_list"]), steady))
        if args.reference:
            rows.append((f"spleeter 2.4.2 {preset}", len(config["instrument_list"]), reference_rate(config, data, args)))
    device = "GPU" if os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1") else platform.processor() or "CPU"
    print(f"\n{device}, {os.cpu_count()} cores, batch 4 of [512, 1024, 2], Adam, L1; {args.steps} steps\n")
    print(f"| model | instruments | steps/s (after {WARMUP_STEPS} warm-up steps) | s/step |")
    print("|---|---:|---:|---:|")
    for preset, instruments, rate in rows:
        print(f"| {preset} | {instruments} | {rate:.2f} | {1 / rate:.2f} |")


def reference_rate(config: dict, data: Path, args) -> float:
    """`spleeter train` on the same config and data: median of its global_step/sec readings after the first."""
    import re
    import statistics
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.reference import harness

    work = Path(tempfile.mkdtemp(prefix="reference-", dir=args.work))
    validation = data / "validation.csv"
    if "accompaniment" in config["instrument_list"]:
        text = validation.read_text()
        validation = data / "validation_accompaniment.csv"
        validation.write_text(text.replace("other_path", "accompaniment_path", 1))
    reference = dict(
        config,
        validation_csv=str(validation),
        model_dir=str(work / "model"),
        training_cache=str(work / "cache" / "train"),
        validation_cache=str(work / "cache" / "validation"),
        train_max_steps=max(args.steps, 45),
        save_summary_steps=1000,
        save_checkpoints_steps=1000,
        throttle_secs=10**6,
    )
    (work / "config.json").write_text(json.dumps(reference))
    env = dict(os.environ, PATH=f"{harness.ffmpeg_dir()}{os.pathsep}{os.environ['PATH']}")
    spleeter = harness.reference_venv() / "bin" / "spleeter"
    run = subprocess.run(
        [str(spleeter), "train", "-p", str(work / "config.json"), "-d", str(data), "--verbose"],
        capture_output=True, text=True, env=env, cwd=work,
    )  # fmt: skip
    rates = [float(r) for r in re.findall(r"global_step/sec: ([0-9.]+)", run.stdout + run.stderr)]
    if run.returncode != 0 or len(rates) < 2:
        raise SystemExit(f"spleeter train failed:\n{(run.stdout + run.stderr)[-3000:]}")
    return statistics.median(rates[1:])


if __name__ == "__main__":
    main()
