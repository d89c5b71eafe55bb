"""Aggregate per-track museval JSONs the paper's way, and write tables and box plots.

Median over a track's 1 s frames, then median over tracks, per instrument
and metric (museval's EvalStore with its defaults, as SiSEC 2018 and the
Spleeter paper report). Frames where a metric is undefined (silent
reference) are NaN in the JSON and left out of the medians.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from stemsep.errors import StemsepError
from stemsep.evaluate._museval import import_museval
from stemsep.evaluate.score import METRICS
from stemsep.files import write_text_atomically

RUN_FILE = "run.json"
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
BOXPLOT_PNG = "sdr_boxplot.png"

# Spleeter paper (Hennequin et al., JOSS 2020), 4stems on MUSDB18 test, SDR in dB.
PAPER_SDR = {
    "vocals": (6.55, 6.86),  # (ratio masks, MWF)
    "bass": (5.10, 5.51),
    "drums": (5.93, 6.71),
    "other": (4.24, 4.55),
}
INSTRUMENT_ORDER = ("vocals", "accompaniment", "drums", "bass", "piano", "other")


@dataclass
class RunScores:
    """One evaluation folder: its label and museval's frame-level table."""

    folder: Path
    label: str
    frames: object  # pandas DataFrame: track, target, metric, time, score

    @property
    def tracks(self) -> int:
        """How many tracks this run scored."""
        return int(self.frames["track"].nunique())

    @cached_property
    def _store(self):
        store = import_museval().EvalStore(frames_agg="median", tracks_agg="median")
        store.add_track(self.frames)
        return store

    def per_track(self):
        """Median over frames: Series indexed by (track, target, metric)."""
        return self._store.agg_frames_scores()

    def summary(self):
        """Median over frames then tracks: DataFrame instrument x metric, plus a tracks column."""
        per_track = self.per_track().reset_index()
        table = self._store.agg_frames_tracks_scores().unstack("metric")
        table = table.reindex(columns=list(METRICS))
        table["tracks"] = per_track.groupby("target")["track"].nunique()
        return table.loc[sorted(table.index, key=_instrument_rank)]


def _instrument_rank(name: str) -> tuple[int, str]:
    return (INSTRUMENT_ORDER.index(name) if name in INSTRUMENT_ORDER else len(INSTRUMENT_ORDER), name)


def load_run(folder: Path, leave_out: Collection[str] = ()) -> RunScores:
    """Every per-track JSON under ``folder/<subset>/`` as one table; StemsepError naming a file
    that is not a museval track score. ``leave_out``: tracks whose file is not this run's (they failed)."""
    import pandas as pd

    folder = Path(folder)
    frames = [_track_frame(path) for path in sorted(folder.glob("*/*.json")) if path.stem not in leave_out]
    if not frames:
        raise StemsepError(f"{folder} holds no museval scores (expected {folder}/<subset>/<track>.json).")
    return RunScores(folder, run_label(folder), pd.concat(frames, ignore_index=True))


def _track_frame(path: Path):
    """museval's frame table of one per-track JSON."""
    remedy = "re-run the evaluation to score that track again, or remove the file"
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise StemsepError(f"{path} cannot be read ({(error.strerror or str(error)).lower()}).") from None
    except json.JSONDecodeError as error:  # cut short, most often
        raise StemsepError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); {remedy}.") from None
    except UnicodeDecodeError:
        raise StemsepError(f"{path} is not valid JSON (it is not UTF-8 text); {remedy}.") from None
    if not isinstance(data, dict):
        kind = {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(data), "number")
        problem = f'a JSON {kind}, not museval\'s object with "targets"'
    elif not isinstance(data.get("targets"), list) or not data["targets"]:
        problem = 'a JSON object without museval\'s "targets"'
    else:
        try:
            return import_museval().aggregate.json2df(data, path.stem)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            problem = f"{type(error).__name__} while reading its scores"
    raise StemsepError(f"{path} is not a museval track score ({problem}); {remedy}.")


def run_label(folder: Path) -> str:
    try:
        return str(json.loads((Path(folder) / RUN_FILE).read_text())["label"])
    except (OSError, ValueError, KeyError):
        return Path(folder).name


def write_reports(run: RunScores) -> dict[str, Path]:
    """results.csv, results.md and sdr_boxplot.png in the run's folder."""
    table = run.summary()
    paths = {"csv": run.folder / RESULTS_CSV, "markdown": run.folder / RESULTS_MD, "plot": run.folder / BOXPLOT_PNG}
    write_text_atomically(paths["csv"], table.rename_axis("instrument").to_csv(float_format="%.3f"))
    write_text_atomically(paths["markdown"], results_markdown(run))
    boxplot([run], paths["plot"])
    return paths


def results_markdown(run: RunScores) -> str:
    table = run.summary()
    lines = [
        f"# {run.label}",
        "",
        "museval BSSEval v4, 1 s windows; median over frames, then median over tracks (dB).",
        "",
        "| instrument | SDR | SIR | SAR | ISR | tracks | paper SDR | paper SDR (MWF) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in table.iterrows():
        paper = PAPER_SDR.get(name)
        cells = [f"{row[m]:.2f}" for m in ("SDR", "SIR", "SAR", "ISR")]
        papers = [f"{paper[0]:.2f}", f"{paper[1]:.2f}"] if paper else ["-", "-"]
        lines.append(f"| {name} | {' | '.join(cells)} | {int(row['tracks'])} | {' | '.join(papers)} |")
    lines += [
        "",
        "Paper figures: Spleeter 4stems on the MUSDB18 test set (Hennequin et al. 2020),",
        "comparable only when this run scored the same 50 test tracks.",
        "",
    ]
    return "\n".join(lines)


def compare_markdown(runs: list[RunScores]) -> str:
    summaries = [run.summary() for run in runs]
    instruments = sorted({name for s in summaries for name in s.index}, key=_instrument_rank)
    lines = [
        "museval BSSEval v4; median over frames, then median over tracks (dB).",
        "",
    ]
    if len({run.tracks for run in runs}) > 1:
        counts = ", ".join(f"{run.label} {run.tracks}" for run in runs)
        lines += [f"The runs scored different numbers of tracks ({counts}): their medians are not over the same songs.", ""]
    for metric in METRICS:
        lines += [
            f"## {metric}",
            "",
            "| instrument | " + " | ".join(run.label for run in runs) + " |",
            "|---|" + "---:|" * len(runs),
            "| tracks | " + " | ".join(str(run.tracks) for run in runs) + " |",
        ]
        for name in instruments:
            cells = [f"{s.loc[name, metric]:.2f}" if name in s.index else "-" for s in summaries]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(runs: list[RunScores], output: Path) -> str:
    """compare.md, compare.csv and compare_sdr_boxplot.png in ``output``; returns the Markdown table.
    Runs with the same label are told apart by their folder's name."""
    labels = [run.label for run in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({run.folder.name})"
    table = compare_markdown(runs)
    try:
        write_text_atomically(output / "compare.md", table)
        write_text_atomically(output / "compare.csv", compare_csv(runs))
        boxplot(runs, output / "compare_sdr_boxplot.png")
    except OSError as error:
        raise StemsepError(f"Cannot write the comparison to {output} ({(error.strerror or str(error)).lower()}).") from None
    return table


def compare_csv(runs: list[RunScores]) -> str:
    import pandas as pd

    frames = []
    for run in runs:
        summary = run.summary().rename_axis("instrument").reset_index()
        summary.insert(0, "run", run.label)
        frames.append(summary)
    return pd.concat(frames, ignore_index=True).to_csv(index=False, float_format="%.3f")


def boxplot(runs: list[RunScores], path: Path) -> list[int]:
    """Per-track SDR (median over frames), one box per instrument, grouped by run; returns boxes drawn per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_track = [run.per_track().xs("SDR", level="metric") for run in runs]
    instruments = sorted({t for p in per_track for t in p.index.get_level_values("target")}, key=_instrument_rank)
    width = 0.8 / len(runs)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(instruments) * max(1, len(runs) / 2)), 4.5), dpi=120)
    colors = plt.get_cmap("tab10").colors
    drawn = []
    for k, (run, scores) in enumerate(zip(runs, per_track)):
        positions, data = [], []
        for i, name in enumerate(instruments):
            values = (
                scores.xs(name, level="target").dropna().to_numpy() if name in scores.index.get_level_values("target") else []
            )
            if len(values):
                positions.append(i + (k - (len(runs) - 1) / 2) * width)
                data.append(values)
        boxes = axes.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True, showfliers=True)
        drawn.append(len(boxes["boxes"]))
        for patch in boxes["boxes"]:
            patch.set_facecolor(colors[k % len(colors)])
            patch.set_alpha(0.6)
        axes.plot([], [], color=colors[k % len(colors)], linewidth=8, alpha=0.6, label=run.label)
    axes.set_xticks(range(len(instruments)), instruments)
    axes.set_ylabel("SDR per track (dB, median over 1 s frames)")
    axes.grid(axis="y", alpha=0.3)
    if len(runs) > 1:
        axes.legend(loc="best", fontsize="small")
    else:
        axes.set_title(runs[0].label)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part.png")
    figure.savefig(temporary)
    plt.close(figure)
    temporary.replace(path)
    return drawn
