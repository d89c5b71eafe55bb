"""Training throughput: steps/s of `stemsep train` at the reference's size (batch 4, 512x1024x2).

usage: python benchmarks/bench_train.py [--steps 30] [--presets 2stems 4stems] [--strategy auto]
Writes a synthetic dataset (cached in the work folder), trains each preset's
config from scratch for --steps steps (the first 5 are warm-up and not timed:
tracing, cache), and prints a Markdown table. Run it on a GPU machine to get
GPU figures (add --mixed-precision there).
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
        rows.append((preset, len(config["instrument_list"]), steady))
    device = "GPU" if os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1") else platform.processor() or "CPU"
    print(f"\n{device}, {os.cpu_count()} cores, batch 4 of [512, 1024, 2], Adam, L1; {args.steps} steps\n")
    print(f"| model | instruments | steps/s (after {WARMUP_STEPS} warm-up steps) | s/step |")
    print("|---|---:|---:|---:|")
    for preset, instruments, rate in rows:
        print(f"| {preset} | {instruments} | {rate:.2f} | {1 / rate:.2f} |")


if __name__ == "__main__":
    main()
