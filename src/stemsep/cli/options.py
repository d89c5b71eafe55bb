"""Options several commands share (separate, batch, evaluate, export...), declared once, as Spleeter's options.py.

Only typer is imported here: the CLI's start-up stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ParamsOption = Annotated[
    str,
    typer.Option(
        "-p",
        "--params_filename",
        "--params-filename",
        help="spleeter:2stems|4stems|5stems[-16kHz], a config.json or a model folder.",
    ),
]
OutputOption = Annotated[Path, typer.Option("-o", "--output_path", "--output-path", help="Output folder.")]
ModelDirOption = Annotated[
    Path | None,
    typer.Option("--model-dir", help="Folder holding pretrained model folders (like $MODEL_PATH).", show_default=False),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="onnx or litert: no TensorFlow (a model's first use converts it once, or -p a folder made by `stemsep export`); "
        "keras: TensorFlow; jax: the JAX engine on JAX's default device.",
    ),
]
QuantizationOption = Annotated[
    str | None, typer.Option("--quantization", help="litert: none, fp16, int8, int8-dynamic; onnx: none.", show_default=False)
]
MwfOption = Annotated[bool, typer.Option("--mwf", help="Multichannel Wiener filtering instead of ratio masks.")]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        help="cpu: --backend's engine; gpu: the JAX engine on a GPU (pip install 'stemsep[gpu]'); "
        "auto: the GPU when JAX sees one.",
    ),
]
PrecisionOption = Annotated[str, typer.Option("--precision", help="The JAX engine's U-Nets: fp32 or bf16.")]
WorkersOption = Annotated[int | None, typer.Option("--workers", help="Processes [default: one per core].", show_default=False)]


CodecOption = Annotated[str, typer.Option("-c", "--codec", help="wav, flac, mp3, m4a, ogg, opus, wma or stem.mp4 (NI Stems).")]
BitrateOption = Annotated[str, typer.Option("-b", "--bitrate", help="Bitrate of lossy codecs.")]
FilenameFormatOption = Annotated[
    str | None,
    typer.Option(
        "-f",
        "--filename_format",
        "--filename-format",
        help="Placeholders: {filename} {foldername} {instrument} {codec} "
        "[default: {filename}/{instrument}.{codec}; stem.mp4: {filename}.{codec}].",
        show_default=False,
    ),
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace stems that already exist.")]
SkipExistingOption = Annotated[
    bool, typer.Option("--skip-existing", help="Skip songs whose stems all exist (a re-run finishes a batch).")
]
StemsOption = Annotated[
    str | None, typer.Option("--stems", help="Write only these instruments, e.g. vocals,drums.", show_default=False)
]
TwoStemsOption = Annotated[
    str | None,
    typer.Option("--two-stems", help="Write INSTRUMENT and no_INSTRUMENT (the sum of the others).", show_default=False),
]
BitsOption = Annotated[
    str | None,
    typer.Option("--bits", help="wav/flac: 16 (default), 24 or 32f; stem.mp4: 24 (ALAC instead of AAC).", show_default=False),
]
ClipOption = Annotated[
    str, typer.Option("--clip", help="Samples beyond full scale: clamp (counted), rescale (the whole stem) or none.")
]
KeepChannelsOption = Annotated[bool, typer.Option("--keep-channels", help="Mono input gives mono stems (default: stereo).")]
RecursiveOption = Annotated[bool, typer.Option("--recursive", "-r", help="Also separate the audio in subfolders.")]


def stems_list(text: str | None) -> tuple[str, ...] | None:
    """--stems vocals,drums -> ("vocals", "drums")."""
    return None if text is None else tuple(name.strip() for name in text.split(",") if name.strip())
