"""The JSON written next to every exported model, read back by the runtimes (no TensorFlow needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemsep.config import ModelConfig
from stemsep.errors import StemsepError
from stemsep.files import write_text_atomically

FORMAT_VERSION = 1
EXTENSIONS = {"tflite": ".tflite", "onnx": ".onnx", "savedmodel": ".savedmodel"}


@dataclass(frozen=True)
class ExportedModel:
    """One exported model file and its metadata."""

    path: Path
    meta: dict[str, Any]

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.meta["config"], f"metadata of {self.path}")

    @property
    def instruments(self) -> list[str]:
        return list(self.meta["instruments"])


def write(path: Path, meta: dict[str, Any]) -> Path:
    target = path.with_name(path.name + ".json")  # model.tflite -> model.tflite.json
    write_text_atomically(target, json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2) + "\n")
    return target


def discover(folder: Path) -> list[ExportedModel]:
    """Every exported model described by a metadata JSON in ``folder``."""
    if not folder.is_dir():
        raise StemsepError(f"{folder} is not a folder of exported models.")
    found = []
    for meta_path in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or "format" not in meta:
            continue
        model_path = meta_path.with_name(meta_path.name.removesuffix(".json"))
        if model_path.exists():
            found.append(ExportedModel(model_path, meta))
    return found


def select(folder: Path, fmt: str, quantization: str | None) -> ExportedModel:
    """The multi-instrument spectrogram model of ``fmt`` in ``folder`` (fp32 unless asked otherwise)."""
    candidates = [m for m in discover(folder) if m.meta["format"] == fmt and m.meta["kind"] == "spectrogram" and m.meta["multi"]]
    if not candidates:
        raise StemsepError(f"{folder} holds no multi-instrument spectrogram model in {fmt} format (run stemsep export).")
    wanted = quantization or (
        "none" if any(m.meta["quantization"] == "none" for m in candidates) else candidates[0].meta["quantization"]
    )
    for model in candidates:
        if model.meta["quantization"] == wanted:
            return model
    have = ", ".join(sorted(m.meta["quantization"] for m in candidates))
    raise StemsepError(f"{folder} has no {fmt} model quantized as {wanted} (it has: {have}).")
