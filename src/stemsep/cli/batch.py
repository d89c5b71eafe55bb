"""`stemsep batch`: a catalogue on a Ray cluster (the library is ``stemsep.batch``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from stemsep.cli.app import app, echo_error
from stemsep.cli.options import (
    BackendOption,
    BitrateOption,
    BitsOption,
    ClipOption,
    CodecOption,
    FilenameFormatOption,
    KeepChannelsOption,
    ModelDirOption,
    MwfOption,
    OutputOption,
    OverwriteOption,
    ParamsOption,
    QuantizationOption,
    SkipExistingOption,
    StemsOption,
    TwoStemsOption,
    stems_list,
)
from stemsep.errors import StemsepError


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
        echo_error(str(error))
        raise typer.Exit(1) from None
    for line in summary.lines():
        typer.echo(line)
    if not summary.complete:
        raise typer.Exit(1)
