"""Spleeter-compatible JSON configurations and the bundled presets.

Every key is read with its type checked, and a wrong one is a single sentence
naming the key and what it must be (``config.json: "T" must be an integer
(got "abc").``). Keys that stemsep does not use are ignored, as Spleeter
ignores them, but named in one line on stderr: a misspelt key otherwise
changes nothing without a word.

``ModelConfig`` holds what separation needs, ``TrainingConfig`` what training
adds (Spleeter's defaults where it has them: ``mix_name`` "mix",
``chunk_duration`` 20 s, ``n_chunks_per_song`` 2).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from stemsep.errors import StemsepError

PRESET_PREFIX = "spleeter:"
PRESETS = ("2stems", "4stems", "5stems", "2stems-16kHz", "4stems-16kHz", "5stems-16kHz")
MODEL_TYPES = ("unet.unet", "unet.softmax_unet")
MASK_EXTENSIONS = ("zeros", "average")
CHANNEL_COUNTS = (1, 2)
# The reference's last U-Net convolution has 2 filters whatever n_channels (SPEC.md); with a
# mono input its two masks multiply the one input channel (broadcast), so estimates are stereo.
OUTPUT_CHANNELS = 2
LOSSES = ("l1", "rmse")
VALIDATION_SECONDS = 12.0  # the reference's validation chunk, whatever chunk_duration
MODEL_PARAMS = ("conv_activation", "deconv_activation")
# Spleeter's evaluation interval: validation here runs at every checkpoint instead.
UNUSED_SPLEETER_KEYS = ("throttle_secs",)

_ABSENT = object()
_KINDS = {
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "object": lambda v: isinstance(v, dict),
}
_ARTICLES = {"integer": "an integer", "object": "a JSON object"}
_CONVERT = {"integer": int, "number": float, "string": str, "list of strings": tuple, "object": dict}


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Typed access to the raw dict: each error names the key and what it must be."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw, self.source = raw, source

    def __call__(self, key: str, kind: str, default: Any = _ABSENT, within: dict[str, Any] | None = None) -> Any:
        container = self.raw if within is None else within
        value = container.get(key.rsplit(".", 1)[-1])
        if value is None:  # absent, or null: the default
            if default is _ABSENT:
                raise StemsepError(f'{self.source} is not a valid Spleeter configuration (missing key "{key}").')
            return default
        if not _KINDS[kind](value):
            what = _ARTICLES.get(kind, f"a {kind}")
            raise StemsepError(f'{self.source}: "{key}" must be {what} (got {_shown(value)}).')
        return _CONVERT[kind](value)


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

    @property
    def output_channels(self) -> int:
        """Channels of every estimate and stem: 2, a mono model's too (see ``OUTPUT_CHANNELS``)."""
        return OUTPUT_CHANNELS

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> ModelConfig:
        read = _Reader(raw, source)
        model = read("model", "object", {})
        cfg = cls(
            instruments=read("instrument_list", "list of strings"),
            sample_rate=read("sample_rate", "integer"),
            frame_length=read("frame_length", "integer"),
            frame_step=read("frame_step", "integer"),
            T=read("T", "integer"),
            F=read("F", "integer"),
            n_channels=read("n_channels", "integer", 2),
            separation_exponent=read("separation_exponent", "number"),
            mask_extension=read("mask_extension", "string", "zeros"),
            model_type=read("model.type", "string", "unet.unet", within=model),
            model_params=read("model.params", "object", {}, within=model),
            model_dir=read("model_dir", "string", ""),
            raw=raw,
        )
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
        if self.frame_length < 2 or not 0 < self.frame_step <= self.frame_length or self.sample_rate <= 0:
            problems.append("sample_rate, frame_length and frame_step must be positive, frame_step at most frame_length")
        if not 0 < self.F <= self.n_bins:
            problems.append(f"F={self.F} must be between 1 and frame_length/2+1={self.n_bins}")
        if self.F % 64 or self.T % 64 or self.T <= 0:
            problems.append("T and F must be positive multiples of 64 (six stride-2 convolutions)")
        if self.n_channels not in CHANNEL_COUNTS:
            problems.append(f"n_channels must be 1 (mono) or 2 (stereo), not {self.n_channels}")
        if problems:
            raise StemsepError(f"{source} is not usable: {'; '.join(problems)}.")


@dataclass(frozen=True)
class TrainingConfig:
    """The training keys of a config; defaults are Spleeter's, batch_size the paper's 4."""

    train_csv: str = ""
    validation_csv: str = ""
    mix_name: str = "mix"  # the dataset CSV's mixture column is <mix_name>_path
    chunk_duration: float = 20.0  # seconds of each training chunk (validation: 12 s centre chunks)
    n_chunks_per_song: int = 2
    learning_rate: float = 1e-4
    batch_size: int = 4
    training_cache: str = "training_cache"
    validation_cache: str = "validation_cache"
    train_max_steps: int = 200_000
    random_seed: int = 0
    save_checkpoints_steps: int = 1000
    save_summary_steps: int = 100
    loss: str = "l1"  # stemsep's: l1 (the reference's) or rmse

    @classmethod
    def from_dict(cls, raw: dict[str, Any], model: ModelConfig, source: str = "config") -> TrainingConfig:
        read = _Reader(raw, source)
        kinds = {int: "integer", float: "number", str: "string"}
        values = {f.name: read(f.name, kinds[type(f.default)], f.default) for f in fields(cls)}
        cfg = cls(**values)
        cfg.validate(model, source)
        return cfg

    def validate(self, model: ModelConfig, source: str) -> None:
        if self.loss not in LOSSES:
            raise StemsepError(f'{source}: "loss" must be {" or ".join(LOSSES)} (got {_shown(self.loss)}).')
        for key in ("n_chunks_per_song", "batch_size", "save_checkpoints_steps", "save_summary_steps", "chunk_duration"):
            if getattr(self, key) <= 0:
                raise StemsepError(f'{source}: "{key}" must be positive (got {_shown(getattr(self, key))}).')
        if self.train_max_steps < 0:
            raise StemsepError(f'{source}: "train_max_steps" must be 0 or more (got {self.train_max_steps}).')
        # The reference's check (DatasetBuilder.check_parameters_compatibility): a chunk must give T frames.
        shortest = (model.T * model.frame_step + model.frame_length) / model.sample_rate
        shown = f"{math.ceil(shortest * 1000) / 1000:.3f} s"  # rounded up: that value passes
        if self.chunk_duration < shortest:
            raise StemsepError(
                f'{source}: "chunk_duration" {self.chunk_duration:g} s is too short for T={model.T} frames '
                f"(at least (T * frame_step + frame_length) / sample_rate = {shown})."
            )
        if self.validation_csv and shortest > VALIDATION_SECONDS:
            raise StemsepError(
                f"{source}: T={model.T} frames do not fit in the reference's {VALIDATION_SECONDS:g} s validation chunks "
                f'(they need {shown}): lower "T" or "frame_step", or leave "validation_csv" empty.'
            )


def ignored_keys(raw: dict[str, Any]) -> list[str]:
    """Keys of ``raw`` that stemsep does not read (``model.params.x`` for nested ones), in file order."""
    known = {
        "instrument_list", "sample_rate", "frame_length", "frame_step", "T", "F", "n_channels",
        "separation_exponent", "mask_extension", "model", "model_dir",
        *(f.name for f in fields(TrainingConfig)), *UNUSED_SPLEETER_KEYS,
    }  # fmt: skip
    ignored = [key for key in raw if key not in known]
    model = raw.get("model")
    if isinstance(model, dict):
        ignored += [f"model.{key}" for key in model if key not in ("type", "params")]
        params = model.get("params")
        if isinstance(params, dict):
            ignored += [f"model.params.{key}" for key in params if key not in MODEL_PARAMS]
    return ignored


def without_ignored_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` holding only the keys stemsep reads."""
    ignored = set(ignored_keys(raw))
    kept = {key: value for key, value in raw.items() if key not in ignored}
    if isinstance(kept.get("model"), dict):
        model = {key: value for key, value in kept["model"].items() if f"model.{key}" not in ignored}
        if isinstance(model.get("params"), dict):
            model["params"] = {k: v for k, v in model["params"].items() if f"model.params.{k}" not in ignored}
        kept["model"] = model
    return kept


_noticed: set[tuple[str, tuple[str, ...]]] = set()


def notice_ignored_keys(raw: dict[str, Any], source: str) -> None:
    """One line on stderr naming the keys stemsep ignores (once per file and process)."""
    keys = tuple(ignored_keys(raw))
    if keys and (source, keys) not in _noticed:
        _noticed.add((source, keys))
        print(f"{source}: ignoring unknown key(s) {', '.join(json.dumps(k) for k in keys)}.", file=sys.stderr)


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


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; StemsepError when it cannot be read or is not an object."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as error:
        raise StemsepError(f"Cannot read configuration {path}: {error.strerror}.") from None
    except json.JSONDecodeError as error:
        raise StemsepError(f"Configuration {path} is not valid JSON (line {error.lineno}: {error.msg}).") from None
    if not isinstance(raw, dict):
        raise StemsepError(f"Configuration {path} must hold a JSON object.")
    return raw


def load_config_file(path: Path) -> ModelConfig:
    raw = read_config_file(path)
    cfg = ModelConfig.from_dict(raw, str(path))
    notice_ignored_keys(raw, str(path))
    return cfg
