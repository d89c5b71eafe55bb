"""`stemsep separate`: files, folders or stdin, into one file per stem (or one NI Stems file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from stemsep.cli.app import app, echo_error, tune_malloc_for_streaming
from stemsep.cli.options import (
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
    stems_list,
)
from stemsep.errors import StemsepError


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
        echo_error(str(error))
        raise typer.Exit(1) from None
    # After the model is loaded (or prepared: TensorFlow's conversion spent twice the system time with it).
    tune_malloc_for_streaming()
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
        echo_error(str(error))
        raise typer.Exit(1) from None
    _report("stdin", result)


def _separate_batch(separator, inputs, output_path: Path, output, offset: float, duration: float | None) -> None:
    from stemsep.errors import describe

    failures: list[tuple[Path, str]] = list(inputs.problems)
    for _, reason in failures:
        echo_error(reason)
    total = len(inputs.songs) + len(inputs.problems)
    skipped = 0
    for path, result in _separated(separator, inputs.songs, output_path, output, offset, duration):
        if isinstance(result, Exception):
            error = result
            reason = describe(error) if isinstance(error, StemsepError) else f"unexpected {describe(error)}"
            failures.append((path, reason))
            echo_error(reason if isinstance(error, StemsepError) else f"{path}: {reason}")
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
