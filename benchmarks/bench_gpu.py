"""stemsep on a GPU through Keras 3's JAX backend: one run, one table.

Measures, for 2stems and 4stems: the U-Nets alone (segments/s and x real time,
a batch already on the device), end-to-end separation of a folder of 16 x
180 s stereo wav files (read and written through soundfile in 16 CPU threads,
STFT / U-Nets / masks / iSTFT on the device; x real time and wall seconds,
compilation excluded and shown apart) in fp32 and bf16, the bf16 stems' SNR
against the fp32 stems, the device stems' SNR against the CPU pipeline (numpy
STFT and masks around the same U-Nets on JAX's CPU backend, which equals the
TensorFlow path to ~130 dB in CI), training steps/s at batch 4 (fp32 and bf16,
and bf16 fed by the real input pipeline from host memory) and at larger
batches (bf16; the best by segments/s), and the training losses of a few
steps on the device against the same steps on JAX's CPU backend. The card's
name, JAX's and Keras' versions and the date head the table. For comparison:
the U-Nets and the fp32 training step as built, with Keras' strided Conv2D
and Conv2DTranspose (stemsep's JAX U-Nets compute with a twin of regular
convolutions, see ``separate/gpu/unets.py``); the end-to-end run with the
stems dropped instead of written (what writing wav costs); how fast one
batch's stems come back to host memory; where a training step's time goes
(forward, input and weight gradients, optimizer, each layer's kernel
gradient alone). ``--excerpt`` takes the SNR rows
from a real recording (a wav: no decoder on that machine).

Weights: the official checkpoints if ``--model-dir`` holds them (a folder with
2stems/ and 4stems/), else seeded random weights in the presets' networks (the
table says which): throughput does not depend on them; SNRs measured with
random weights are of a network whose sigmoids saturate.

Made for a bare machine with an NVIDIA GPU, no TensorFlow, no Keras, no PyAV
and no network: Python 3.12 with JAX 0.11 (CUDA), numpy, h5py, rich and
absl-py installed. The rest travels as wheels beside this tree (made here by
``benchmarks/gpu_wheels.sh``, ~5 MB):

    pip install --no-index --find-links benchmarks/wheels keras optree namex soxr soundfile norbert
    python benchmarks/bench_gpu.py                 # the whole table (estimated 6-9 min on an H100, mostly compiling)
    python benchmarks/bench_gpu.py --only unet,e2e # or train,loss: the table in two commands
    python benchmarks/bench_gpu.py --quick         # tiny sizes, 2stems, on any machine (JAX's CPU)

``--quick`` checks the script where there is no GPU: on 2 busy cores it takes
45 s with JAX's compilation cache warm, 2.3 min cold (``--models 2stems 4stems``
adds 4stems: ~3 min more).

stemsep runs from this tree (``src/`` on the path, not installed). PyAV is
only imported by modules this script does not use; without it a placeholder
module stands in. Rows print as they are measured and the results are written
to ``--json`` (default ``$OUT/bench_gpu.json`` when ``$OUT`` is set) after each.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when run by runpy, which does not add it

from timing import median_seconds  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    files: int
    seconds: float
    unet_batch: int
    unet_calls: int
    train_batches: tuple[int, ...]
    train_steps: int
    loss_steps: int
    excerpt_seconds: float


FULL = Sizes(16, 180.0, 64, 20, (4, 16), 20, 3, 30.0)
QUICK = Sizes(2, 3.0, 2, 2, (1, 2), 2, 2, 2.0)
QUICK_NETWORK = {"T": 64, "F": 128, "frame_length": 512, "frame_step": 128}  # the same code on small tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script on any machine")
    parser.add_argument("--models", nargs="+", help="[2stems 4stems; --quick: 2stems]")
    parser.add_argument(
        "--only",
        default="unet,e2e,train,as-built,loss,step",
        help="comma-separated parts to run (as-built: one training row through the U-Net as built, slow to "
        "compile; step: where a training step's time goes, layer by layer)",
    )
    parser.add_argument("--train-batches", type=int, nargs="+", help="bf16 training batches to sweep [4 16]")
    parser.add_argument("--model-dir", type=Path, help="a folder holding the official 2stems/ and 4stems/ checkpoints")
    parser.add_argument("--work", type=Path, help="where the wav files go [a temporary folder]")
    parser.add_argument("--excerpt", type=Path, help="a wav file for the SNR rows [the first generated song's start]")
    parser.add_argument(
        "--json", type=Path, default=Path(os.environ["OUT"]) / "bench_gpu.json" if os.environ.get("OUT") else None
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    models = args.models or (["2stems"] if args.quick else ["2stems", "4stems"])
    if args.train_batches:
        sizes = dataclasses.replace(sizes, train_batches=tuple(args.train_batches))
    _without_pyav()
    from stemsep.separate.gpu.device import use_jax

    keras = use_jax()
    import jax

    table = Table(args.json)
    table.header(
        card=jax.devices()[0].device_kind,
        platform=jax.devices()[0].platform,
        jax=jax.__version__,
        keras=keras.__version__,
        date=datetime.date.today().isoformat(),
        sizes="quick" if args.quick else "full",
    )
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        work = args.work or Path(scratch)
        songs = write_songs(work / "songs", sizes) if "e2e" in parts else []
        for name in models:
            source, weights = model_source(name, args.quick, args.model_dir, work)
            table.note(f"{name} weights: {weights}")
            bench_model(table, name, source, songs, work / f"out-{name}", sizes, parts, args.excerpt)
    table.print()


def bench_model(
    table: Table, name: str, source, songs: list[Path], out: Path, sizes: Sizes, parts: set[str], excerpt_path: Path | None
) -> None:
    from stemsep.separate.gpu.engine import JaxEngine

    stems = {}
    if parts & {"unet", "e2e"}:
        sample = excerpt(excerpt_path or songs[0], sizes.excerpt_seconds)
    for precision in ("fp32", "bf16"):
        if not parts & {"unet", "e2e"}:
            break
        engine = JaxEngine(source, precision, max_batch=sizes.unet_batch)
        engine.batch_sizes = (engine.max_batch,)  # one compilation per precision: partial batches are padded
        if "unet" in parts:
            for label, unets in ((" ", engine), (", U-Net as built ", None)):
                unets = unets or JaxEngine(source, precision, max_batch=sizes.unet_batch, twin=False)
                rate = unet_rate(unets, sizes.unet_batch, sizes.unet_calls)
                realtime = rate * engine.config.T * engine.config.frame_step / engine.config.sample_rate
                table.row(
                    f"U-Nets only{label.rstrip()}, batch {sizes.unet_batch}",
                    name,
                    precision,
                    f"{rate:,.0f} segments/s = {realtime:,.0f}x real time",
                )
        if "e2e" in parts:
            started = time.perf_counter()
            engine.warm_up()
            compile_s = time.perf_counter() - started
            audio = len(songs) * sizes.seconds
            label = f"end to end, {len(songs)} x {sizes.seconds:g} s wav"
            for suffix, write in (("", True), (", stems read and dropped (no wav written)", False)):
                wall = separate_folder(engine, songs, out / precision, write)
                table.row(
                    label + suffix,
                    name,
                    precision,
                    f"{audio / wall:,.0f}x real time ({wall:.2f} s wall; compiled in {compile_s:.0f} s before)",
                )
            if precision == "fp32":
                label = f"device-to-host copy of one batch's stems ({sizes.unet_batch} windows)"
                table.row(label, name, "fp32", copy_rate(engine))
            stems[precision] = stems_of(engine, sample)
            if precision == "fp32":
                reference = cpu_pipeline_stems(engine, sample)
                table.row(
                    "fp32 device stems vs CPU pipeline", name, "fp32", f"{min_snr(reference, stems['fp32']):.1f} dB (lowest stem)"
                )
    if len(stems) == 2:
        table.row("bf16 stems vs fp32 stems", name, "bf16", f"{min_snr(stems['fp32'], stems['bf16']):.1f} dB (lowest stem)")
    fp32_steps = bench_training(table, name, source, sizes, "as-built" in parts) if "train" in parts else None
    if "step" in parts:
        bench_step_split(table, name, source, sizes.train_batches[0])
    if "loss" in parts and name == "2stems":
        batch = sizes.train_batches[0]
        steps = fp32_steps or trainer(source, "fp32")
        losses_cpu, losses_device = training_losses(steps, source.config, batch, sizes.loss_steps)
        worst = max(abs(a - b) / abs(a) for a, b in zip(losses_cpu, losses_device))
        shown = ", ".join(f"{a:.6f}/{b:.6f}" for a, b in zip(losses_cpu, losses_device))
        table.row(
            f"training losses, CPU/device, batch {batch}, {sizes.loss_steps} steps",
            name,
            "fp32",
            f"{shown}: max relative difference {worst:.1e}",
        )


# -- audio -----------------------------------------------------------------------------------------


def _without_pyav() -> None:
    try:
        import av  # noqa: F401
    except ImportError:  # stemsep.separate's package imports the codec modules; nothing here calls them
        sys.modules["av"] = types.ModuleType("av", "placeholder: this benchmark reads and writes wav through soundfile")


def write_songs(folder: Path, sizes: Sizes, rate: int = 44100) -> list[Path]:
    """``sizes.files`` stereo 16-bit wav files of ``sizes.seconds``: harmonic tones, a beat and noise, each file shifted."""
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sizes.seconds * rate), dtype=np.float64) / rate
    f0 = 110 * 2 ** (np.floor(t * 2) % 7 / 12)
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.15
    beat = np.random.default_rng(0).normal(0, 0.25, t.size) * (np.mod(t, 0.5) < 0.04)
    song = np.stack([tone + beat, 0.8 * tone + beat], axis=1).astype(np.float32)
    paths = []
    for i in range(sizes.files):
        path = folder / f"song{i:02d}.wav"
        soundfile.write(path, np.roll(song, i * rate // 3, axis=0) * (0.6 + 0.02 * i), rate, "PCM_16")
        paths.append(path)
    return paths


def excerpt(path: Path, seconds: float) -> np.ndarray:
    import soundfile

    with soundfile.SoundFile(path) as source:
        return source.read(int(seconds * source.samplerate), dtype="float32", always_2d=True)


def separate_folder(engine, paths: list[Path], out: Path, write: bool = True) -> float:
    """Wall seconds to separate every file, one CPU thread per file (read, window, overlap, write) sharing the
    device; ``write=False`` drops the stems instead of writing them (what the wav writing costs)."""
    import soundfile

    out.mkdir(parents=True, exist_ok=True)
    names = engine.config.instruments

    def separate(path: Path) -> None:
        with soundfile.SoundFile(path) as source:
            blocks = source.blocks(blocksize=1 << 18, dtype="float32", always_2d=True)
            if not write:
                for _ in engine.stream_stems(blocks):
                    pass
                return
            writers = [soundfile.SoundFile(out / f"{path.stem}-{n}.wav", "w", source.samplerate, 2, "PCM_16") for n in names]
            try:
                for pieces in engine.stream_stems(blocks):
                    for writer, piece in zip(writers, pieces):
                        writer.write(piece)
            finally:
                for writer in writers:
                    writer.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        list(pool.map(separate, paths))
    return time.perf_counter() - started


def copy_rate(engine) -> str:
    """How fast one batch's output (what the batcher thread fetches per batch) comes back to host memory."""
    import jax

    from stemsep.separate.gpu.spectral import window_samples

    cfg = engine.config
    windows = np.zeros((engine.max_batch, window_samples(cfg, cfg.T), cfg.n_channels), np.float32)
    np.asarray(engine.separate_windows(windows))  # a first fetch: allocations
    result = jax.block_until_ready(engine.separate_windows(windows))  # a new array: a fetched one keeps its copy
    started = time.perf_counter()
    host = np.asarray(result)
    seconds = time.perf_counter() - started
    return f"{host.nbytes / 1e6:,.0f} MB in {seconds * 1e3:.1f} ms = {host.nbytes / 1e9 / seconds:.1f} GB/s"


def stems_of(engine, wave: np.ndarray) -> list[np.ndarray]:
    pieces = list(engine.stream_stems([wave]))
    return [np.concatenate([p[i] for p in pieces]) for i in range(len(engine.config.instruments))]


class _CpuUNets:
    """The engine's U-Nets (same weights) on JAX's CPU backend, as an ``Engine`` for ``separate.stream``."""

    def __init__(self, engine) -> None:
        import jax

        self.config = engine.config
        self.cpu = jax.devices("cpu")[0]
        self.weights = jax.device_put(jax.tree.map(np.asarray, engine.unets.weights), self.cpu)
        self.call = jax.jit(engine.unets.apply)

    def __call__(self, segments: np.ndarray) -> list[np.ndarray]:
        import jax

        return [np.asarray(o) for o in self.call(self.weights, jax.device_put(segments, self.cpu))]


def cpu_pipeline_stems(engine, wave: np.ndarray) -> list[np.ndarray]:
    from stemsep.separate.stream import stream_stems

    pieces = list(stream_stems(_CpuUNets(engine), [wave]))
    return [np.concatenate([p[i] for p in pieces]) for i in range(len(engine.config.instruments))]


def min_snr(references: list[np.ndarray], estimates: list[np.ndarray]) -> float:
    values = []
    for reference, estimate in zip(references, estimates):
        reference = reference.astype(np.float64)
        noise = np.sum((reference - estimate) ** 2)
        values.append(10 * np.log10(np.sum(reference**2) / max(noise, 1e-30)))
    return float(min(values))


# -- U-Nets --------------------------------------------------------------------------------------


def unet_rate(engine, batch: int, calls: int) -> float:
    """Segments per second through the U-Nets, the batch already on the device."""
    import jax

    cfg = engine.config
    segments = jax.device_put(np.random.default_rng(0).uniform(0, 1, (batch, cfg.T, cfg.F, cfg.n_channels)).astype(np.float32))
    jax.block_until_ready(engine.estimate(engine.unets.weights, segments))  # compiles
    started = time.perf_counter()
    for _ in range(calls):
        outputs = engine.estimate(engine.unets.weights, segments)
    jax.block_until_ready(outputs)
    return batch * calls / (time.perf_counter() - started)


# -- training ------------------------------------------------------------------------------------


def bench_training(table: Table, name: str, source, sizes: Sizes, as_built: bool = True):
    """Training rows; returns the fp32 steps (compiled for the first batch size)."""
    first = sizes.train_batches[0]
    trainers = {}
    for precision in ("fp32", "bf16"):
        steps = trainers[precision] = trainer(source, precision)
        rate, compile_s = train_rate(steps, source.config, first, sizes.train_steps)
        table.row(
            f"training, batch {first}",
            name,
            precision,
            f"{rate:.2f} steps/s = {rate * first:.1f} segments/s (compiled in {compile_s:.0f} s)",
        )
    best = (first, rate * first)
    if as_built:
        steps = trainer(source, "fp32", twin=False)  # convolutions XLA differentiates slowly: a few steps show it
        rate, compile_s = train_rate(steps, source.config, first, max(2, sizes.train_steps // 4))
        table.row(
            f"training, batch {first}, U-Net as built",
            name,
            "fp32",
            f"{rate:.2f} steps/s = {rate * first:.1f} segments/s (compiled in {compile_s:.0f} s)",
        )
    steps = trainers["bf16"]
    rate = train_rate_fed(steps, source.config, first, sizes.train_steps)
    table.row(f"training, batch {first}, input pipeline from host memory", name, "bf16", f"{rate:.2f} steps/s")
    for batch in sizes.train_batches[1:]:
        try:
            rate, compile_s = train_rate(steps, source.config, batch, sizes.train_steps)
        except Exception as error:  # out of device memory: larger batches would be too
            table.note(f"{name} training at batch {batch}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
            break
        table.row(
            f"training, batch {batch}",
            name,
            "bf16",
            f"{rate:.2f} steps/s = {rate * batch:.1f} segments/s (compiled in {compile_s:.0f} s)",
        )
        best = max(best, (batch, rate * batch), key=lambda pair: pair[1])
    table.row("training, best batch", name, "bf16", f"batch {best[0]}: {best[1]:.1f} segments/s")
    return trainers["fp32"]


def bench_step_split(table: Table, name: str, source, batch: int, slowest: int = 6) -> None:
    """Where a training step's time goes (fp32): forward, gradients with respect to the input only and
    to the weights, the optimizer's update; then the kernel gradient of each layer of the twin U-Net
    alone (its input random, of the shape the U-Net gives it), the slowest few. Every instrument's
    U-Net has the same layer shapes, so only the first instrument's layers are timed.

    Measured on an H200 (4stems, batch 4): forward 20.8 ms, gradient wrt input 39.0 ms, wrt weights
    374 ms, Adam 7.1 ms; the twin's 3x3 convolution shapes alone took 0.2-0.5 ms each: the weights'
    path holds something else slow, which the per-layer rows find."""
    import jax

    steps = trainer(source, "fp32")
    state = _state(steps)
    mix, sources = jax.device_put(_batch(source.config, batch, 0))
    forward = jax.jit(lambda w, f, m: steps.forward.stateless_call(w, f, m, training=False)[0])
    by_weights = jax.jit(jax.value_and_grad(steps._loss))
    by_input = jax.jit(jax.value_and_grad(steps._loss, argnums=2))
    update = jax.jit(steps.optimizer.stateless_apply)
    _, gradients = by_weights(state.trainable, state.fixed, mix, sources)
    parts = {
        "forward": (forward, (state.trainable, state.fixed, mix)),
        "loss and gradient wrt the input only": (by_input, (state.trainable, state.fixed, mix, sources)),
        "loss and gradient wrt the weights": (by_weights, (state.trainable, state.fixed, mix, sources)),
        "optimizer update": (update, (state.optimizer, gradients, state.trainable)),
    }
    for label, (function, args) in parts.items():
        table.row(f"training step split, batch {batch}: {label}", name, "fp32", f"{_milliseconds(function, args):.1f} ms")
    times = []
    first = f"{source.config.instruments[0]}_"
    for layer in steps.forward.layers:
        if not layer.trainable_weights or not layer.name.startswith(first):
            continue
        shapes = [tuple(t.shape) for t in (layer.input if isinstance(layer.input, list) else [layer.input])]
        inputs = [jax.random.normal(jax.random.key(i), (batch, *shape[1:])) for i, shape in enumerate(shapes)]
        trainable = [v.value for v in layer.trainable_variables]
        fixed = [v.value for v in layer.non_trainable_variables]
        call_inputs = inputs if isinstance(layer.input, list) else inputs[0]

        def kernel_gradient(weights, fixed=fixed, layer=layer, call_inputs=call_inputs):
            output, vjp = jax.vjp(lambda w: layer.stateless_call(w, fixed, call_inputs)[0], weights)
            return vjp(jax.numpy.ones_like(output))

        times.append((_milliseconds(jax.jit(kernel_gradient), (trainable,)), layer.name, type(layer).__name__))
    times.sort(reverse=True)
    shown = ", ".join(f"{layer} ({kind}) {ms:.2f} ms" for ms, layer, kind in times[:slowest])
    table.row(f"kernel gradients of single layers, batch {batch}: slowest", name, "fp32", shown)
    total = sum(t[0] for t in times)
    table.row(f"kernel gradients of single layers, batch {batch}: all {len(times)}", name, "fp32", f"{total:.1f} ms")


def _milliseconds(function, args) -> float:
    """Median milliseconds of one call, the device finished (the first call, untimed, compiles)."""
    import jax

    return median_seconds(lambda: jax.block_until_ready(function(*args)), warmup=1, runs=5) * 1000


def trainer(source, precision: str, twin: bool = True):
    import keras

    from stemsep.model.loader import load_weights
    from stemsep.separate.gpu.unets import build_model, compute_twin
    from stemsep.train.jax_loop import TrainSteps

    model = build_model(source.config, precision)
    load_weights(model, source)
    optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    optimizer.build(model.trainable_variables)
    return TrainSteps(model, optimizer, rmse=False, forward=compute_twin(model, source.config, precision) if twin else None)


def _batch(cfg, size: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    shape = (size, cfg.T, cfg.F, cfg.n_channels)
    mix = rng.uniform(0, 1, shape).astype(np.float32)
    return mix, tuple((mix * rng.uniform(0, 1, shape)).astype(np.float32) for _ in cfg.instruments)


def _state(steps, device=None):
    """Fresh copies of the model's and optimizer's values (the step donates them) on ``device`` (committed:
    every run of a step on one device shares its compilation)."""
    import jax

    from stemsep.train.jax_loop import DeviceState

    device = device or jax.devices()[0]
    state = DeviceState(steps.model, steps.optimizer)
    for field in ("trainable", "fixed", "optimizer"):
        setattr(state, field, jax.device_put(jax.tree.map(np.asarray, getattr(state, field)), device))
    return state


def _run_steps(steps, state, batches) -> list[float]:
    """Losses of the steps, each read one step late as the trainer does."""
    losses, previous = [], None
    for mix, sources in batches:
        state.trainable, state.optimizer, loss = steps.train_step(state.trainable, state.optimizer, state.fixed, mix, sources)
        if previous is not None:
            losses.append(float(previous))
        previous = loss
    losses.append(float(previous))
    return losses


def train_rate(steps, cfg, size: int, count: int) -> tuple[float, float]:
    """(steps/s with the batch already on the device, seconds the first step took: compilation)."""
    import jax

    batch = jax.device_put(_batch(cfg, size, 0), jax.devices()[0])
    state = _state(steps)
    started = time.perf_counter()
    _run_steps(steps, state, [batch])
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    _run_steps(steps, state, [batch] * count)
    return count / (time.perf_counter() - started), compile_s


class _MemorySet:
    """``train.dataset.SpectrogramSet``'s reading side over float16 arrays in memory (8 chunks of 2T frames)."""

    def __init__(self, cfg, chunks: int = 8) -> None:
        rng = np.random.default_rng(1)
        self.lengths = np.full(chunks, 2 * cfg.T)
        shape = (chunks * 2 * cfg.T, cfg.F, cfg.n_channels)
        self.arrays = {n: rng.uniform(0, 1, shape).astype(np.float16) for n in ("mix", *cfg.instruments)}

    def __len__(self) -> int:
        return len(self.lengths)

    def crop(self, name: str, chunk: int, start: int, frames: int) -> np.ndarray:
        begin = int(self.lengths[:chunk].sum()) + start
        return np.asarray(self.arrays[name][begin : begin + frames], np.float32)


def train_rate_fed(steps, cfg, size: int, count: int) -> float:
    """Steps/s with batches drawn by ``StepSampler`` and ``jax_data.device_batches`` (the trainer's input)."""
    from stemsep.train.dataset import StepSampler
    from stemsep.train.jax_data import device_batches

    sampler = StepSampler(_MemorySet(cfg), cfg, size, seed=0)
    state = _state(steps)
    _run_steps(steps, state, device_batches(sampler, 0, 1))
    started = time.perf_counter()
    _run_steps(steps, state, device_batches(sampler, 1, 1 + count))
    return count / (time.perf_counter() - started)


def training_losses(steps, cfg, size: int, count: int) -> tuple[list[float], list[float]]:
    """The same ``count`` steps (the same weights and batches of ``size``) on JAX's CPU and on the default device."""
    import jax

    batches = [_batch(cfg, size, seed) for seed in range(count)]
    results = []
    for device in (jax.devices("cpu")[0], jax.devices()[0]):
        state = _state(steps, device)
        results.append(_run_steps(steps, state, [jax.device_put(b, device) for b in batches]))
    return results[0], results[1]


# -- models and the table ------------------------------------------------------------------------


def model_source(name: str, quick: bool, model_dir: Path | None, work: Path):
    """The official model in ``model_dir`` if it is there, else the preset's network with seeded random weights."""
    from stemsep.config import ModelConfig, load_preset
    from stemsep.model.loader import KERAS_WEIGHTS, ModelSource
    from stemsep.model.provider import has_checkpoint
    from stemsep.separate.gpu.device import set_random_seed
    from stemsep.separate.gpu.unets import build_model

    cfg = load_preset(name)
    if model_dir is not None and not quick:
        # A checkpoint folder, or the same weights saved by Keras (half the size: no optimizer slots).
        if (model_dir / name / KERAS_WEIGHTS).is_file():
            weights = model_dir / name / KERAS_WEIGHTS
            return ModelSource(cfg, weights, f"spleeter:{name}"), f"official weights ({weights})"
        if has_checkpoint(model_dir / name):
            return ModelSource(cfg, model_dir / name, f"spleeter:{name}"), f"official checkpoint ({model_dir / name})"
    if quick:
        cfg = ModelConfig.from_dict({**cfg.raw, **QUICK_NETWORK}, f"{name} (quick)")
    set_random_seed(0)
    path = work / f"{name}-random.weights.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_model(cfg).save_weights(path)
    return ModelSource(cfg, path, f"{name} (random)"), "random (seeded he_uniform, as training from scratch)"


class Table:
    def __init__(self, json_path: Path | None) -> None:
        self.json_path = json_path
        self.meta: dict = {}
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.started = time.perf_counter()

    def header(self, **meta) -> None:
        self.meta = meta
        print(" | ".join(f"{k}: {v}" for k, v in meta.items()), flush=True)

    def row(self, measure: str, model: str, precision: str, value: str) -> None:
        self.rows.append({"measure": measure, "model": model, "precision": precision, "value": value})
        print(f"[{time.perf_counter() - self.started:6.0f} s] {model} {precision} {measure}: {value}", flush=True)
        self._save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)
        self._save()

    def _save(self) -> None:
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(json.dumps({"meta": self.meta, "rows": self.rows, "notes": self.notes}, indent=1))

    def print(self) -> None:
        meta = self.meta
        versions = f"JAX {meta['jax']}, Keras {meta['keras']}"
        print(f"\n{meta['card']} ({meta['platform']}), {versions}, {meta['date']}, {meta['sizes']} sizes\n")
        print("| measure | model | precision | result |\n|---|---|---|---|")
        for row in self.rows:
            print(f"| {row['measure']} | {row['model']} | {row['precision']} | {row['value']} |")
        for text in self.notes:
            print(f"\n- {text}", end="")
        print(f"\n\n{time.perf_counter() - self.started:.0f} s in all")


if __name__ == "__main__":
    main()
