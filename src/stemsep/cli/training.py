"""`stemsep dataset|train|evaluate`: data, training and museval scoring."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from stemsep.cli.app import app, echo_error
from stemsep.cli.options import (
    BackendOption,
    DeviceOption,
    ModelDirOption,
    MwfOption,
    ParamsOption,
    PrecisionOption,
    QuantizationOption,
    WorkersOption,
)
from stemsep.errors import StemsepError


@app.command()
def evaluate(
    runs: Annotated[
        list[Path] | None, typer.Argument(help="With --compare: evaluation folders to put side by side.", show_default=False)
    ] = None,
    params_filename: ParamsOption = "spleeter:4stems",
    mus_dir: Annotated[
        Path | None,
        typer.Option(
            "--mus_dir", "--mus-dir", help="MUSDB18 (.stem.mp4), MUSDB18-HQ folders or a prepared dataset.", show_default=False
        ),
    ] = None,
    subset: Annotated[str, typer.Option("--subset", help="Subset folder or CSV name: test, train, validation...")] = "test",
    output_path: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output_path", "--output-path", help="Output folder [default: evaluation, or comparison].", show_default=False
        ),
    ] = None,
    backend: BackendOption = "onnx",
    quantization: QuantizationOption = None,
    mwf: MwfOption = False,
    workers: WorkersOption = None,
    model_dir: ModelDirOption = None,
    compare: Annotated[bool, typer.Option("--compare", help="Compare finished evaluation folders instead.")] = False,
) -> None:
    """Score a model with museval (BSSEval v4) on MUSDB18-shaped data, or --compare finished runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if compare:
            _compare(runs or [], output_path or Path("comparison"))
            return
        output_path = output_path or Path("evaluation")
        if runs:
            raise StemsepError("Positional folders are only taken with --compare; give the dataset with --mus_dir.")
        if mus_dir is None:
            raise StemsepError("Give the dataset with --mus_dir ROOT.")
        from stemsep.evaluate.run import evaluate as run_evaluation

        result = run_evaluation(
            params_filename,
            mus_dir,
            output_path,
            subset=subset,
            backend=backend,
            mwf=mwf,
            workers=workers,
            quantization=quantization,
            model_dir=model_dir,
            report=lambda line: typer.echo(line, err=True),
        )
    except StemsepError as error:
        echo_error(str(error))
        raise typer.Exit(1) from None
    if result.reports:
        typer.echo(result.reports["markdown"].read_text())
        typer.echo(f"Scores in {output_path}: {', '.join(p.name for p in result.reports.values())}, per-track JSON in {subset}/")
    if result.failed:
        typer.echo(f"{len(result.failed)} track(s) failed:", err=True)
        for name, reason in result.failed.items():
            typer.echo(f"  {name}: {reason}", err=True)
        raise typer.Exit(1)


def _compare(folders: list[Path], output_path: Path) -> None:
    from stemsep.evaluate.aggregate import load_run, write_comparison

    if len(folders) < 2:
        raise StemsepError("--compare needs at least two evaluation folders.")
    table = write_comparison([load_run(folder) for folder in folders], output_path)
    typer.echo(table)
    typer.echo(f"Written to {output_path}: compare.md, compare.csv, compare_sdr_boxplot.png")


dataset_app = typer.Typer(no_args_is_help=True, help="Prepare MUSDB18 for training, or make a synthetic MUSDB-shaped dataset.")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("prepare")
def dataset_prepare(
    musdb_root: Annotated[Path, typer.Argument(help="MUSDB18 (train/, test/ of .stem.mp4) or MUSDB18-HQ folder.")],
    output_path: Annotated[Path | None, typer.Option("-o", "--output", help="Output folder [default: MUSDB_ROOT].")] = None,
    small: Annotated[int | None, typer.Option("--small", help="Also write *_small.csv with N tracks.")] = None,
    workers: WorkersOption = None,
) -> None:
    """Decode and check every track, write per-track wavs and train/validation/test CSVs."""
    from stemsep.data.prepare import prepare

    output = output_path or musdb_root
    try:
        result = prepare(musdb_root, output, small, workers, report=lambda line: typer.echo(line, err=True))
    except StemsepError as error:
        echo_error(str(error))
        raise typer.Exit(1) from None
    typer.echo(f"{len(result.prepared)} track(s) ready in {output}; CSVs: {', '.join(p.name for p in result.csvs)}")
    if result.failed:
        typer.echo(f"{len(result.failed)} track(s) skipped:", err=True)
        for name, reason in result.failed.items():
            typer.echo(f"  {name}: {reason}", err=True)
        raise typer.Exit(1)


@dataset_app.command("synth")
def dataset_synth(
    output_path: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")] = Path("synthetic-musdb"),
    train_tracks: Annotated[int, typer.Option("--train", help="Train tracks (validation included).")] = 8,
    validation_tracks: Annotated[int, typer.Option("--validation", help="Of which validation.")] = 2,
    test_tracks: Annotated[int, typer.Option("--test", help="Test tracks.")] = 3,
    seconds: Annotated[float, typer.Option("--seconds", help="Track length.")] = 12.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    layout: Annotated[
        str, typer.Option("--layout", help="wav (MUSDB18-HQ folders + CSVs + a training config) or stem (.stem.mp4).")
    ] = "wav",
) -> None:
    """Write a seeded synthetic dataset in MUSDB18's layout."""
    from stemsep.data.synth import write_synthetic_dataset, write_training_config

    try:
        written = write_synthetic_dataset(output_path, train_tracks, test_tracks, validation_tracks, seconds, seed, layout)
        config = write_training_config(output_path) if layout == "wav" else None
    except StemsepError as error:
        echo_error(str(error))
        raise typer.Exit(1) from None
    typer.echo(
        f"{len(written)} tracks in {output_path}"
        + (f"; train with: stemsep train -p {config} -d {output_path}" if config else "")
    )


@app.command()
def train(
    params_filename: Annotated[Path, typer.Option("-p", "--params_filename", "--params-filename", help="Training config.json.")],
    data: Annotated[Path, typer.Option("-d", "--data", help="Dataset root: the CSVs' paths are relative to it.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in model_dir from its last checkpoint.")] = False,
    init: Annotated[
        str | None, typer.Option("--init", help="Start from a model's weights, e.g. spleeter:2stems.", show_default=False)
    ] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="auto, default, mirrored or multiworker ($TF_CONFIG).")] = "auto",
    mixed_precision: Annotated[bool, typer.Option("--mixed-precision", help="float16 compute (GPU).")] = False,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Override train_max_steps.", show_default=False)] = None,
    keep: Annotated[int, typer.Option("--keep", help="Checkpoints kept.")] = 5,
    export_savedmodel: Annotated[
        bool, typer.Option("--savedmodel/--no-savedmodel", help="Export SavedModels at the end.")
    ] = True,
    device: DeviceOption = "auto",
    backend: Annotated[str, typer.Option("--backend", help="keras (TensorFlow) or jax (JAX's default device).")] = "keras",
    precision: PrecisionOption = "fp32",
) -> None:
    """Train (or fine-tune) a U-Net on a dataset in the reference's CSV format."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from stemsep.train.jax_loop import train_on
    from stemsep.train.loop import TrainSettings

    settings = TrainSettings(params_filename, data, resume, init, strategy, mixed_precision, max_steps, keep, export_savedmodel)
    try:
        if backend not in ("keras", "jax"):
            raise StemsepError(f"Unknown training backend {backend!r}; choose keras or jax.")
        result = train_on(settings, device, backend, precision, report=typer.echo)
    except StemsepError as error:
        echo_error(str(error))
        raise typer.Exit(1) from None
    typer.echo(f"Trained steps {result.first_step}..{result.last_step} in {result.seconds:.0f} s; model in {result.model_dir}")
