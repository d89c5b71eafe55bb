"""The end of a batch: songs, hours of audio, failures with their sentences, and throughput per node."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from stemsep.batch.manifest import Manifest
from stemsep.batch.results import DONE, FAILED, Row


@dataclass(frozen=True)
class NodeRate:
    """What one node separated in this run: ``realtime`` is its audio over the run's wall time."""

    node: str
    songs: int
    audio_s: float
    busy_s: float  # its workers' seconds on these songs, all together
    wall_s: float

    @property
    def realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def realtime_per_worker(self) -> float:
        return self.audio_s / self.busy_s if self.busy_s > 0 else 0.0


@dataclass(frozen=True)
class BatchSummary:
    """The whole manifest's state after this run, and this run's own work."""

    songs: int
    done: int
    audio_done_s: float  # every run's
    failures: list[tuple[Path, str]]
    pending: int
    run_songs: int  # separated (or skipped) by this run
    run_audio_s: float
    wall_s: float
    nodes: list[NodeRate]
    skipped_non_audio: int = 0
    duplicates: int = 0
    stalled: str | None = None  # why the run stopped with songs left

    @property
    def complete(self) -> bool:
        return not self.failures and not self.pending and self.stalled is None

    def lines(self) -> list[str]:
        ignored = [f"{self.skipped_non_audio} non-audio file(s) ignored"] * bool(self.skipped_non_audio)
        ignored += [f"{self.duplicates} duplicate(s) ignored"] * bool(self.duplicates)
        out = [
            f"{self.songs} song(s): {self.done} done ({self.audio_done_s / 3600:.2f} h of audio), "
            f"{len(self.failures)} failed, {self.pending} pending" + "".join(f", {part}" for part in ignored) + "."
        ]
        speed = self.run_audio_s / self.wall_s if self.wall_s > 0 else 0.0
        out.append(
            f"This run: {self.run_songs} separated, {self.run_audio_s / 3600:.3f} h of audio in {self.wall_s:.0f} s "
            f"({speed:.1f}x real time)."
        )
        if self.nodes:
            out.append(f"  {'node':24} {'songs':>6} {'audio h':>8} {'x real time':>12} {'per worker':>11}")
            for rate in self.nodes:
                out.append(
                    f"  {rate.node:24} {rate.songs:>6} {rate.audio_s / 3600:>8.3f} {rate.realtime:>11.1f}x "
                    f"{rate.realtime_per_worker:>10.1f}x"
                )
        if self.stalled:
            out.append(self.stalled)
        if self.pending and not self.stalled:
            out.append(f"{self.pending} song(s) pending: re-run to separate them.")
        if self.failures:
            out.append(f"{len(self.failures)} failure(s) (--retry-failed tries them again):")
            out += [f"  {reason if reason.startswith(str(path)) else f'{path}: {reason}'}" for path, reason in self.failures]
        return out


def summarize(rows: list[Row], manifest: Manifest, run: int, wall_s: float, stalled: str | None = None) -> BatchSummary:
    done = [row for row in rows if row.state == DONE]
    ours = [row for row in done if row.run == run]
    per_node: dict[str, list[Row]] = defaultdict(list)
    for row in ours:
        per_node[row.node or "?"].append(row)
    nodes = [
        NodeRate(node, len(got), sum(r.duration_s or 0.0 for r in got), sum(r.seconds or 0.0 for r in got), wall_s)
        for node, got in sorted(per_node.items())
    ]
    return BatchSummary(
        songs=len(rows),
        done=len(done),
        audio_done_s=sum(row.duration_s or 0.0 for row in done),
        failures=[(row.path, row.error or "unknown error") for row in rows if row.state == FAILED],
        pending=len(rows) - len(done) - sum(row.state == FAILED for row in rows),
        run_songs=len(ours),
        run_audio_s=sum(row.duration_s or 0.0 for row in ours),
        wall_s=wall_s,
        nodes=nodes,
        skipped_non_audio=manifest.skipped_non_audio,
        duplicates=manifest.duplicates,
        stalled=stalled,
    )
