"""`stemsep train` on Keras 3's JAX backend (``--device gpu`` or ``--backend jax``), without TensorFlow.

The same run as ``train.loop``: the same config keys, CSVs and spectrogram
cache (``train.dataset``), the batch of step s drawn from (random_seed, s),
the U-Net called with ``training=False``, the loss summed over instruments,
Adam at ``learning_rate``; the same ``model_dir`` (``config.json`` +
``model.weights.h5`` at every checkpoint, ``train_log.csv``, TensorBoard
scalars in ``logs/``). What differs is the step: one ``jax.jit`` of
``stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply``,
the weights and Adam's moments donated (updated in place on the device),
batches made ahead by CPU threads (``train.jax_data``), and each step's loss
read one step later so the host never stalls the device.

Checkpoints are ``.npz`` files keyed as TensorFlow's (``train.jax_checkpoint``):
a run resumes from the latest checkpoint of either backend. From scratch, the
first weights come from each backend's own random generator (they differ
between backends); with ``--init`` both start from the same weights, and
their losses agree (tests/test_jax_backend.py). ``bf16`` computes the U-Nets
in bfloat16 with float32 weights (Keras' ``mixed_bfloat16``).
"""

from __future__ import annotations

import time

import numpy as np

from stemsep.config import ModelConfig
from stemsep.errors import StemsepError
from stemsep.separate.gpu.device import JAX_BACKEND, resolve_backend, set_random_seed, use_jax
from stemsep.train import jax_checkpoint
from stemsep.train.jax_data import device_batches
from stemsep.train.jax_events import EventWriter
from stemsep.train.loop import (
    HELD_RUN,
    LOG_NAME,
    Report,
    TrainingRun,
    TrainLog,
    TrainResult,
    TrainSettings,
    save_model,
)


def train_on(settings: TrainSettings, device: str, backend: str, precision: str, report: Report = print) -> TrainResult:
    """Train on the engine ``device`` and ``backend`` choose: JAX, or TensorFlow (``train.loop``)."""
    backend = resolve_backend(device, backend if backend == JAX_BACKEND else "keras", precision)
    if backend == JAX_BACKEND:
        return train(settings, precision, report)
    from stemsep.train.loop import train as train_tensorflow

    run = TrainingRun.of(settings)
    checkpoints = run.checkpoints
    if not settings.resume and (checkpoints / jax_checkpoint.POINTER).exists():
        raise StemsepError(HELD_RUN.format(run.model_dir))
    if settings.resume:  # a run the JAX trainer saved last continues from its checkpoint
        converted = jax_checkpoint.to_tensorflow(checkpoints, run.cfg, run.params.learning_rate, settings.keep)
        if converted is not None:
            report(f"Converted {converted.path.name} (JAX) to a TensorFlow checkpoint.")
    return train_tensorflow(settings, report)


def train(settings: TrainSettings, precision: str = "fp32", report: Report = print) -> TrainResult:
    """``train.loop.train`` on the JAX backend (JAX's default device: a GPU when there is one)."""
    if settings.strategy not in ("auto", "default"):
        raise StemsepError(f"--strategy {settings.strategy} is TensorFlow's; the JAX trainer runs on one device.")
    if settings.mixed_precision:
        raise StemsepError("--mixed-precision is TensorFlow's float16; the JAX trainer takes --precision bf16.")
    keras = use_jax()
    from stemsep.separate.gpu.unets import compute_twin

    run = TrainingRun.prepare(settings, report, holds_run=lambda folder: jax_checkpoint.latest(folder) is not None)
    set_random_seed(run.params.random_seed)
    model = _build_model(run.cfg, settings.init, precision)
    optimizer = keras.optimizers.Adam(learning_rate=run.params.learning_rate)
    optimizer.build(model.trainable_variables)
    variables = jax_checkpoint.state_variables(model, optimizer)
    first_step = 0
    if settings.resume:
        saved = jax_checkpoint.latest(run.checkpoints)
        first_step = jax_checkpoint.restore(saved.read(), variables, str(saved.path))
        report(f"Resumed from {saved.path} at step {first_step}.")
    run.model_dir.mkdir(parents=True, exist_ok=True)
    log = TrainLog(run.model_dir / LOG_NAME, first_step)
    if first_step == 0:
        save_model(model, run.cfg, run.model_dir)  # step 0 is a usable model too (the --init weights as they are)
    steps = TrainSteps(model, optimizer, run.params.loss == "rmse", compute_twin(model, run.cfg, precision))
    result = steps.loop(run, first_step, log, variables, report)
    if settings.export_savedmodel and result.last_step > first_step:
        report(f"SavedModels need TensorFlow: make them with `stemsep export -p {run.model_dir} --format savedmodel`.")
    return result


class TrainSteps:
    """The jitted training and validation steps of a model and its optimizer."""

    def __init__(self, model, optimizer, rmse: bool, forward=None) -> None:
        """``forward``: the model whose ``stateless_call`` computes with ``model``'s variable values
        (``unets.compute_twin(model)``; default ``model`` itself)."""
        import jax

        self.model, self.optimizer, self.rmse = model, optimizer, rmse
        self.forward = forward or model
        self.train_step = jax.jit(self._train_step, donate_argnums=(0, 1))
        self.loss = jax.jit(self._loss)

    def _loss(self, trainable, non_trainable, mix, sources):
        import jax.numpy as jnp

        # training=False as the reference: BatchNorm on its fixed statistics, dropout off (SPEC.md).
        outputs, _ = self.forward.stateless_call(trainable, non_trainable, mix, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        total = 0.0
        for estimate, source in zip(outputs, sources):
            difference = estimate.astype(jnp.float32) - source  # a mono model's stereo estimates broadcast
            total += jnp.sqrt(jnp.mean(jnp.square(difference))) if self.rmse else jnp.mean(jnp.abs(difference))
        return total

    def _train_step(self, trainable, optimizer_state, non_trainable, mix, sources):
        import jax

        loss, gradients = jax.value_and_grad(self._loss)(trainable, non_trainable, mix, sources)
        trainable, optimizer_state = self.optimizer.stateless_apply(optimizer_state, gradients, trainable)
        return trainable, optimizer_state, loss

    def loop(self, run: TrainingRun, first_step: int, log: TrainLog, variables: dict, report: Report) -> TrainResult:
        model, optimizer = self.model, self.optimizer
        state = DeviceState(model, optimizer)
        params, max_steps = run.params, run.max_steps
        events = EventWriter(run.model_dir / "logs")
        result = TrainResult(run.model_dir, first_step, first_step, [], [], 0.0)
        started = time.perf_counter()
        window: list[float] = []
        previous = None  # (step, loss on the device): read after the next step is dispatched
        current = first_step
        for mix, sources in device_batches(run.sampler, first_step, max_steps):
            state.trainable, state.optimizer, loss = self.train_step(state.trainable, state.optimizer, state.fixed, mix, sources)
            current += 1
            finished = [previous] if previous else []
            previous = (current, loss)
            if current % params.save_summary_steps == 0 or current % params.save_checkpoints_steps == 0 or current == max_steps:
                finished, previous = [*finished, previous], None
            for step, value in finished:
                value = float(value)
                window.append(value)
                result.losses.append((step, value))
                result.step_ends.append(time.perf_counter())
                log.write(step, value)
            if current % params.save_summary_steps == 0 or current == max_steps:
                rate = (current - first_step) / (time.perf_counter() - started)
                report(f"step {current}/{max_steps}  loss {np.mean(window):.5f}  ({rate:.2f} steps/s)")
                events.scalar("loss", float(np.mean(window)), current)
                window = []
            if current % params.save_checkpoints_steps == 0 or current == max_steps:
                state.store()
                validation = self.validation_loss(run, state)
                if validation is not None:
                    result.validation_losses.append((current, validation))
                    log.write(current, None, validation)
                    events.scalar("validation_loss", validation, current)
                    report(f"step {current}  validation loss {validation:.5f}")
                jax_checkpoint.write(run.checkpoints, jax_checkpoint.capture(variables, current), run.settings.keep)
                save_model(model, run.cfg, run.model_dir)
        result.last_step = current
        result.seconds = time.perf_counter() - started
        return result

    def validation_loss(self, run: TrainingRun, state: DeviceState) -> float | None:
        if run.validation is None:
            return None
        mix, *sources = run.validation
        size = run.params.batch_size
        values = [
            float(self.loss(state.trainable, state.fixed, mix[i : i + size], tuple(s[i : i + size] for s in sources)))
            for i in range(0, len(mix), size)
        ]
        return float(np.mean(values))


class DeviceState:
    """The variables' values as device arrays while the jitted steps update them; ``store`` puts them back
    into the Keras variables (for checkpoints and ``model.weights.h5``)."""

    def __init__(self, model, optimizer) -> None:
        self.model, self.optimizer_object = model, optimizer
        self.trainable = [v.value for v in model.trainable_variables]
        self.fixed = [v.value for v in model.non_trainable_variables]
        self.optimizer = [v.value for v in optimizer.variables]

    def store(self) -> None:
        for variable, value in zip(self.model.trainable_variables, self.trainable):
            variable.assign(value)
        for variable, value in zip(self.optimizer_object.variables, self.optimizer):
            variable.assign(value)


def _build_model(cfg: ModelConfig, init: str | None, precision: str):
    """The config's U-Net on JAX, from scratch or with ``--init``'s weights (a preset, config or model folder)."""
    from stemsep.model.loader import load_weights, resolve_source
    from stemsep.model.unet import copy_weights_by_name
    from stemsep.separate.gpu.unets import build_model

    model = build_model(cfg, precision)
    if init is None:
        return model
    source = resolve_source(init)
    if source.config.instruments != cfg.instruments:
        raise StemsepError(
            f"--init {init} separates {', '.join(source.config.instruments)}; "
            f"the config trains {', '.join(cfg.instruments)}: they must be the same."
        )
    pretrained = build_model(source.config)
    load_weights(pretrained, source)
    try:
        copy_weights_by_name(model, pretrained)
    except ValueError as error:
        raise StemsepError(f"--init {init}: {error}.") from None
    return model
