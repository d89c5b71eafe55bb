"""Batch throughput on a local Ray cluster: files/s and x real time with 1 and 2 nodes of one CPU each.

usage: python benchmarks/bench_batch.py [--songs 12] [--seconds 20] [--nodes 1 2] [--work DIR]

Writes the songs once (music-like, 44.1 kHz stereo WAV), then for each node
count starts a cluster with `ray start` (loopback, one CPU per node, each
node pinned to its own core with taskset), runs `stemsep batch --ray` on the
same songs with the official 2stems model, and reads the times from the
results table: the separation span (first song sent .. last song answered)
leaves out the cluster's start and the workers' model loading, which a
catalogue of 100,000 songs pays once. Prints a Markdown table and the
scaling ratio (2 nodes' files/s over 1 node's).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import music_like, write_audio
from tests.test_batch import RAY_ENV, LocalCluster  # the tests' loopback cluster

SONG_MINUTES = 3.5  # the catalogue on paper: 100,000 songs of 3.5 min


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "stemsep-bench-batch")
    args = parser.parse_args()

    from stemsep.model.provider import resolve_pretrained

    model_dir = resolve_pretrained("2stems").parent
    songs = args.work / "songs"
    songs.mkdir(parents=True, exist_ok=True)
    for i in range(args.songs):
        path = songs / f"song{i:03d}.wav"
        if not path.exists():
            write_audio(path, music_like(args.seconds, seed=i), 44100)
    # The ONNX model is prepared once, outside the timed runs.
    subprocess.run([sys.executable, "-m", "stemsep.cli", "separate", str(songs / "song000.wav"), "-o", str(args.work / "warm"),
                    "--model-dir", str(model_dir), "--overwrite"], check=True, capture_output=True)  # fmt: skip

    rows = []
    for nodes in args.nodes:
        rows.append(run(nodes, songs, args.work / f"out{nodes}", model_dir))
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.songs} songs of {args.seconds:g} s\n")
    print("| nodes (1 CPU each) | files/s | x real time | per node | span s | wall s (with start) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for nodes, files_s, realtime, span, wall in rows:
        print(f"| {nodes} | {files_s:.3f} | {realtime:.1f}x | {realtime / nodes:.1f}x | {span:.1f} | {wall:.1f} |")
    if len(rows) > 1:
        print(f"\nscaling {rows[-1][0]} nodes / {rows[0][0]} node: {rows[-1][1] / rows[0][1]:.2f}x files/s")
    per_node = rows[0][2] / rows[0][0]
    audio_h = 100_000 * SONG_MINUTES / 60
    print(f"\n100,000 songs of {SONG_MINUTES} min = {audio_h:,.0f} h of audio; at {per_node:.1f}x real time per CPU:")
    for cpus in (16, 64, 256, 1024):
        print(f"  {cpus:5} CPUs (e.g. {cpus // 16} nodes of 16): {audio_h / (per_node * cpus):,.1f} h")


def run(nodes: int, songs: Path, output: Path, model_dir: Path) -> tuple[int, float, float, float, float]:
    """(nodes, files/s, x real time, separation span s, wall s) of one `stemsep batch` on a fresh cluster."""
    shutil.rmtree(output, ignore_errors=True)  # a fresh results table: nothing done yet
    cluster = LocalCluster(workers=nodes - 1, pin_cores=True)
    try:
        cluster.start()
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "stemsep.cli", "batch", str(songs), "-o", str(output), "--ray", cluster.address,
             "--model-dir", str(model_dir)],
            capture_output=True, text=True, env=RAY_ENV,
        )  # fmt: skip
        wall = time.perf_counter() - started
    finally:
        cluster.stop()
    print(done.stdout, done.stderr[-2000:] if done.returncode else "")
    if done.returncode:
        raise SystemExit(f"stemsep batch failed on {nodes} node(s)")
    with sqlite3.connect(output / "batch.sqlite3") as db:
        first, last, count, audio = db.execute(
            "SELECT MIN(started_at), MAX(finished_at), COUNT(*), SUM(duration_s) FROM files WHERE state = 'done'"
        ).fetchone()
    span = last - first
    return nodes, count / span, audio / span, span, wall


if __name__ == "__main__":
    main()
