"""`stemsep train`: the reference's training, as a TF2 custom loop under tf.distribute.

What is trained is exactly what separates: the Keras U-Net of
`stemsep.model.unet`, called with ``training=False`` as in the reference
(BatchNorm on its fixed moving statistics, dropout off: SPEC.md), loss the
sum over instruments of the mean |estimate - |STFT(source)|| (or RMSE with
``"loss": "rmse"``), Adam at ``learning_rate``.

``model_dir`` receives:

- ``checkpoints/``: TF checkpoints (model, optimizer, step) every
  ``save_checkpoints_steps``, the last ``keep`` kept. TensorFlow writes the
  data first and points ``checkpoints/checkpoint`` at it last, so a kill
  never leaves the latest pointer on a half-written checkpoint.
- ``config.json`` + ``model.weights.h5``: the model that `stemsep separate
  -p model_dir`, `export` and `evaluate` take, rewritten (atomically) at
  every checkpoint;
- ``train_log.csv``: step, loss, validation loss; ``logs/``: TensorBoard;
- at the end, ``saved_model/``: one SavedModel per instrument.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemsep.config import ModelConfig, TrainingConfig, load_config_file, without_ignored_keys
from stemsep.errors import StemsepError
from stemsep.files import write_text_atomically
from stemsep.train.dataset import (
    ChunkPlan,
    StepSampler,
    build_cache,
    read_dataset_csv,
    training_dataset,
    validation_arrays,
)

Report = Callable[[str], None]
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
LOG_NAME = "train_log.csv"
WEIGHTS_NAME = "model.weights.h5"
HELD_RUN = "{} already holds a training run: pass --resume to continue it, or another model_dir."


@dataclass
class TrainSettings:
    config_path: Path
    dataset_root: Path
    resume: bool = False
    init: str | None = None
    strategy: str = "auto"
    mixed_precision: bool = False
    max_steps: int | None = None  # overrides train_max_steps
    keep: int = 5
    export_savedmodel: bool = True


@dataclass
class TrainResult:
    model_dir: Path
    first_step: int
    last_step: int
    losses: list[tuple[int, float]]
    validation_losses: list[tuple[int, float]]
    seconds: float
    step_ends: list[float] = field(default_factory=list)  # perf_counter() after each step, for throughput


def resolve_path(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


class TrainingRun:
    """What a run reads and writes, for either trainer: config, training parameters, folders, data."""

    def __init__(self, settings: TrainSettings, cfg: ModelConfig, params: TrainingConfig) -> None:
        self.settings, self.cfg, self.params = settings, cfg, params
        self.model_dir = resolve_path(cfg.model_dir or "model", Path.cwd())
        self.checkpoints = self.model_dir / "checkpoints"
        self.max_steps = params.train_max_steps if settings.max_steps is None else settings.max_steps

    @classmethod
    def of(cls, settings: TrainSettings) -> TrainingRun:
        """The run ``settings`` describe: its config and training parameters read, nothing else."""
        cfg = load_config_file(settings.config_path)
        return cls(settings, cfg, TrainingConfig.from_dict(cfg.raw, cfg, str(settings.config_path)))

    @classmethod
    def prepare(cls, settings: TrainSettings, report: Report, holds_run: Callable[[Path], bool]) -> TrainingRun:
        """The run of ``settings``, its data loaded; ``holds_run(checkpoints)`` says whether a run is there
        already (what --resume continues and a new run must not overwrite)."""
        run = cls.of(settings)
        if not run.params.train_csv:
            raise StemsepError(
                f"{settings.config_path} has no train_csv: training needs the dataset CSV "
                f"({run.params.mix_name}_path, <instrument>_path..., duration)."
            )
        held = holds_run(run.checkpoints)
        if held and not settings.resume:
            raise StemsepError(HELD_RUN.format(run.model_dir))
        if settings.resume and not held:
            raise StemsepError(f"Nothing to resume in {run.model_dir}: it holds no checkpoint.")
        run.load_data(report)
        return run

    def load_data(self, report: Report) -> None:
        cfg, params, cwd, root = self.cfg, self.params, Path.cwd(), Path(self.settings.dataset_root)
        report("Preparing spectrograms (cached after the first run)...")
        entries = read_dataset_csv(resolve_path(params.train_csv, cwd), root, cfg.instruments, params.mix_name)
        training = build_cache(entries, cfg, resolve_path(params.training_cache, cwd), ChunkPlan.for_training(params), report)
        self.sampler = StepSampler(training, cfg, params.batch_size, params.random_seed)
        self.validation = None
        if params.validation_csv:
            entries = read_dataset_csv(resolve_path(params.validation_csv, cwd), root, cfg.instruments, params.mix_name)
            held_out = build_cache(entries, cfg, resolve_path(params.validation_cache, cwd), ChunkPlan.for_validation(), report)
            self.validation = validation_arrays(held_out, cfg)
        songs = 0 if self.validation is None else len(self.validation[0])
        report(f"{len(training)} training chunks, {songs} validation songs.")


def _make_strategy(name: str, tf):
    if name not in STRATEGIES:
        raise StemsepError(f"Unknown strategy {name!r}: use {', '.join(STRATEGIES)}.")
    if name == "multiworker":
        # Workers and their index come from $TF_CONFIG (see the README).
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train(settings: TrainSettings, report: Report = print) -> TrainResult:
    from stemsep._tf import import_tensorflow

    tf = import_tensorflow()
    import keras

    run = TrainingRun.prepare(settings, report, holds_run=lambda folder: (folder / "checkpoint").exists())
    cfg, params, model_dir, checkpoints, max_steps = run.cfg, run.params, run.model_dir, run.checkpoints, run.max_steps
    batch_size, seed, validation = params.batch_size, params.random_seed, run.validation

    if settings.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = _make_strategy(settings.strategy, tf)
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = _build_model(cfg, settings.init, keras)
        optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
        if settings.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoints), max_to_keep=settings.keep, checkpoint_name="ckpt")
    if settings.resume:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        report(f"Resumed from {manager.latest_checkpoint} at step {int(step.numpy())}.")
    first_step = int(step.numpy())
    model_dir.mkdir(parents=True, exist_ok=True)
    log = TrainLog(model_dir / LOG_NAME, first_step)
    if first_step == 0:
        save_model(model, cfg, model_dir)  # step 0 is a usable model too (the --init weights as they are)

    replicas = strategy.num_replicas_in_sync
    rmse = params.loss == "rmse"

    def compute_loss(mix, sources):
        # A mono model's estimates are stereo (its masks come in pairs, as the reference's): the
        # difference broadcasts against the mono source, as in the reference's loss.
        outputs = model(mix, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        total = 0.0
        for estimate, source in zip(outputs, sources):
            difference = tf.cast(estimate, tf.float32) - source
            total += tf.sqrt(tf.reduce_mean(tf.square(difference))) if rmse else tf.reduce_mean(tf.abs(difference))
        return total

    def replica_step(mix, sources):
        with tf.GradientTape() as tape:
            loss = compute_loss(mix, sources)
            scaled = loss / replicas  # the optimizer sums gradients over replicas
            if settings.mixed_precision:
                scaled = optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def train_step(batch):
        mix, sources = batch
        losses = strategy.run(replica_step, args=(mix, sources))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    @tf.function
    def validation_step(mix, sources):
        return compute_loss(mix, sources)

    def validation_loss() -> float | None:
        if validation is None:
            return None
        mix, *sources = validation
        values = [
            float(validation_step(mix[i : i + batch_size], tuple(s[i : i + batch_size] for s in sources)))
            for i in range(0, len(mix), batch_size)
        ]
        return float(np.mean(values))

    data = strategy.experimental_distribute_dataset(training_dataset(run.sampler, first_step, max_steps))
    summary_every = params.save_summary_steps
    checkpoint_every = params.save_checkpoints_steps
    writer = tf.summary.create_file_writer(str(model_dir / "logs"))
    result = TrainResult(model_dir, first_step, first_step, [], [], 0.0)
    started = time.perf_counter()
    window: list[float] = []
    batches = iter(data)
    with writer.as_default():
        # Exactly one batch per step: under multiworker, asking the iterator past its end runs one more
        # cross-worker "has data" all-reduce, which hung a worker whose peer had already left.
        for _ in range(first_step, max_steps):
            loss = float(train_step(next(batches)))
            current = int(step.assign_add(1).numpy())
            window.append(loss)
            result.losses.append((current, loss))
            result.step_ends.append(time.perf_counter())
            log.write(current, loss)
            if current % summary_every == 0 or current == max_steps:
                rate = (current - first_step) / (time.perf_counter() - started)
                report(f"step {current}/{max_steps}  loss {np.mean(window):.5f}  ({rate:.2f} steps/s)")
                _scalar(tf, "loss", np.mean(window), current)
                window = []
            if current % checkpoint_every == 0 or current == max_steps:
                val = validation_loss()
                if val is not None:
                    result.validation_losses.append((current, val))
                    log.write(current, None, val)
                    _scalar(tf, "validation_loss", val, current)
                    report(f"step {current}  validation loss {val:.5f}")
                manager.save(checkpoint_number=current)
                save_model(model, cfg, model_dir)
    result.last_step = int(step.numpy())
    result.seconds = time.perf_counter() - started
    if settings.export_savedmodel and result.last_step > first_step:
        _export_savedmodels(model_dir, report)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Workers leave together: one that exits while another still saves takes the cluster's
        # coordination service with it, and the other's collectives and exit then hang.
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
    return result


def _scalar(tf, tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar written with TensorFlow alone (tf.summary.scalar needs the tensorboard package)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=metadata.SerializeToString())


def _build_model(cfg: ModelConfig, init: str | None, keras):
    from stemsep.model.unet import build_unet_model, copy_weights_by_name

    model = build_unet_model(cfg)
    if init is None:
        return model
    from stemsep.model.loader import build_keras, resolve_source

    source = resolve_source(init)
    if source.config.instruments != cfg.instruments:
        raise StemsepError(
            f"--init {init} separates {', '.join(source.config.instruments)}; "
            f"the config trains {', '.join(cfg.instruments)}: they must be the same."
        )
    pretrained = build_keras(source)
    try:
        copy_weights_by_name(model, pretrained)
    except ValueError as error:
        raise StemsepError(f"--init {init}: {error}.") from None
    return model


def save_model(model, cfg: ModelConfig, model_dir: Path) -> None:
    """config.json (without the keys stemsep ignores) + model.weights.h5, each replaced atomically."""
    raw = without_ignored_keys(cfg.raw)
    raw["model_dir"] = "."
    weights_tmp = model_dir / ".model.part.weights.h5"  # Keras insists on the .weights.h5 suffix
    model.save_weights(weights_tmp)
    os.replace(weights_tmp, model_dir / WEIGHTS_NAME)
    write_text_atomically(model_dir / "config.json", json.dumps(raw, indent=2) + "\n")


def _export_savedmodels(model_dir: Path, report: Report) -> None:
    from stemsep.export.build import export_model

    written = export_model(str(model_dir), "savedmodel", model_dir / "saved_model")
    report(f"SavedModels: {', '.join(p.name for p in written)}")


class TrainLog:
    """train_log.csv: appended per step; on resume, rows past the checkpoint (lost work) are dropped."""

    def __init__(self, path: Path, first_step: int) -> None:
        self.path = path
        kept: list[list[str]] = []
        if path.exists() and first_step > 0:
            with open(path, newline="") as handle:
                kept = [row for row in list(csv.reader(handle))[1:] if row and int(row[0]) <= first_step]
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "loss", "validation_loss"])
            writer.writerows(kept)
        self.handle = open(path, "a", newline="")  # noqa: SIM115 (open for the whole run)
        self.writer = csv.writer(self.handle)

    def write(self, step: int, loss: float | None, validation: float | None = None) -> None:
        self.writer.writerow([step, "" if loss is None else f"{loss:.8g}", "" if validation is None else f"{validation:.8g}"])
        self.handle.flush()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.handle.close()
