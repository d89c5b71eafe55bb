"""Spleeter-compatible JSON configurations and the bundled presets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stemsep.errors import StemsepError

PRESET_PREFIX = "spleeter:"
PRESETS = ("2stems", "4stems", "5stems", "2stems-16kHz", "4stems-16kHz", "5stems-16kHz")
MODEL_TYPES = ("unet.unet", "unet.softmax_unet")
MASK_EXTENSIONS = ("zeros", "average")


@dataclass(frozen=True)
class ModelConfig:
    """The parts of a Spleeter config that separation needs, plus the raw dict."""

    instruments: tuple[str, ...]
    sample_rate: int
    frame_length: int
    frame_step: int
    T: int
    F: int
    n_channels: int
    separation_exponent: float
    mask_extension: str
    model_type: str
    model_params: dict[str, Any]
    model_dir: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def n_bins(self) -> int:
        """Number of STFT bins (the mask is extended from F up to this)."""
        return self.frame_length // 2 + 1

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> ModelConfig:
        try:
            model = raw.get("model") or {}
            cfg = cls(
                instruments=tuple(raw["instrument_list"]),
                sample_rate=int(raw["sample_rate"]),
                frame_length=int(raw["frame_length"]),
                frame_step=int(raw["frame_step"]),
                T=int(raw["T"]),
                F=int(raw["F"]),
                n_channels=int(raw.get("n_channels", 2)),
                separation_exponent=float(raw["separation_exponent"]),
                mask_extension=str(raw.get("mask_extension", "zeros")),
                model_type=str(model.get("type", "unet.unet")),
                model_params=dict(model.get("params") or {}),
                model_dir=str(raw.get("model_dir", "")),
                raw=raw,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StemsepError(f"{source} is not a valid Spleeter configuration (bad or missing key {error}).") from None
        cfg.validate(source)
        return cfg

    def validate(self, source: str) -> None:
        problems = []
        if not self.instruments:
            problems.append("instrument_list is empty")
        if self.model_type not in MODEL_TYPES:
            problems.append(f"model.type {self.model_type!r} is not one of {', '.join(MODEL_TYPES)}")
        if self.mask_extension not in MASK_EXTENSIONS:
            problems.append(f"mask_extension {self.mask_extension!r} is not one of {', '.join(MASK_EXTENSIONS)}")
        if not 0 < self.F <= self.n_bins:
            problems.append(f"F={self.F} must be between 1 and frame_length/2+1={self.n_bins}")
        if self.F % 64 or self.T % 64:
            problems.append("T and F must be multiples of 64 (six stride-2 convolutions)")
        if self.n_channels != 2:
            problems.append("n_channels must be 2")
        if problems:
            raise StemsepError(f"{source} is not usable: {'; '.join(problems)}.")


def preset_name(descriptor: str) -> str | None:
    """``spleeter:4stems`` -> ``4stems``; None when it is not a preset descriptor."""
    if descriptor.startswith(PRESET_PREFIX):
        return descriptor[len(PRESET_PREFIX) :]
    return None


def load_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise StemsepError(f"Unknown model 'spleeter:{name}'; known presets are {', '.join('spleeter:' + p for p in PRESETS)}.")
    text = resources.files("stemsep.resources").joinpath(f"{name}.json").read_text()
    return ModelConfig.from_dict(json.loads(text), f"preset spleeter:{name}")


def load_config_file(path: Path) -> ModelConfig:
    try:
        raw = json.loads(path.read_text())
    except OSError as error:
        raise StemsepError(f"Cannot read configuration {path}: {error.strerror}.") from None
    except json.JSONDecodeError as error:
        raise StemsepError(f"Configuration {path} is not valid JSON (line {error.lineno}: {error.msg}).") from None
    if not isinstance(raw, dict):
        raise StemsepError(f"Configuration {path} must hold a JSON object.")
    return ModelConfig.from_dict(raw, f"configuration {path}")
