"""A model's U-Nets on the JAX backend: one jitted function of (weights, segments), no TensorFlow.

The Keras U-Net of ``model.unet`` is built once and called through
``stateless_call``, so its weights are plain arrays that live on the device
and pass through ``jax.jit``. Weights come from the same places as on the CPU
path (``model.loader.resolve_source``): a stemsep ``model.weights.h5`` (read
by Keras with h5py) or an official TF1 checkpoint (read by
``model.checkpoint.read_bundle``, without TensorFlow).

``bf16`` builds the layers under Keras' ``mixed_bfloat16`` policy: weights
stay float32, each layer computes in bfloat16 (batch normalization in
float32), estimates come back as float32. ``fp32`` is float32 throughout:
``use_jax`` turns off the TF32 arithmetic XLA uses for float32 convolutions
on recent NVIDIA GPUs (an H200's stems were 45-50 dB from the CPU path's
with it).

The weights live in the U-Net as Spleeter and the TensorFlow path build it
(what weights files and checkpoints are written from and read into), but
the device computes with its ``compute_twin``, whose variables line up one
for one with the U-Net's: the decoder's transposed convolutions as
``SubPixelConv2DTranspose`` (four stride-1 convolutions, interleaved) and the
encoder's strided ones as ``SpaceToDepthConv2D`` (one stride-1 convolution of
2x2 blocks). XLA's GPU backend runs input-dilated convolutions tens of times
slower than regular ones, and both a transposed convolution and the input
gradient of a strided one are such (measured on an H200: a 4stems training
step took 0.75 s at batch 4, flat in the batch, 0.38 s with the sub-pixel
decoder; jax-ml/jax#31662 reports the same elsewhere). The twin's training
step has no input-dilated convolution left (tests/test_jax_backend.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from stemsep.config import ModelConfig
from stemsep.model.loader import ModelSource, load_weights
from stemsep.separate.gpu.device import use_jax

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def build_model(config: ModelConfig, precision: str = "fp32", subpixel: bool = False, blocks: bool = False):
    """The Keras U-Net of ``config`` on the JAX backend, computing at ``precision``, weights uninitialized."""
    keras = use_jax()
    from stemsep.model.unet import build_unet_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        return build_unet_model(config, subpixel=subpixel, blocks=blocks)
    finally:
        keras.config.set_dtype_policy(previous)


def compute_twin(model, config: ModelConfig, precision: str = "fp32"):
    """``model``'s U-Net without strided or transposed convolutions (the encoder's as space-to-depth ones
    where T and F halve evenly six times): ``twin.stateless_call`` takes ``model``'s variable values."""
    twin = build_model(config, precision, subpixel=True, blocks=config.T % 64 == 0 and config.F % 64 == 0)
    for group in ("trainable_variables", "non_trainable_variables"):
        if _layout(getattr(model, group)) != _layout(getattr(twin, group)):
            raise AssertionError(f"the twin U-Net's {group} do not line up with the U-Net's")
    return twin


def _layout(variables) -> list[tuple[str, tuple]]:
    """Each variable's path and shape; seed generators' paths carry a process-wide counter: their kind only."""
    kinds = ("seed_generator" if v.path.startswith("seed_generator") else v.path for v in variables)
    return [(kind, tuple(v.shape)) for kind, v in zip(kinds, variables)]


@dataclass
class UNets:
    """The U-Nets' weights on the device and the pure function that applies them.

    ``apply(weights, segments)``: [B, T, F, n_channels] float32 -> one [B, T, F, 2] float32 per instrument.
    """

    model: object  # what holds the weights
    weights: tuple  # (trainable, non-trainable) device arrays
    compute: object  # what computes with them: ``compute_twin(model)``, or ``model`` itself

    @classmethod
    def load(cls, source: ModelSource, precision: str = "fp32", twin: bool = True) -> UNets:
        model = build_model(source.config, precision)
        load_weights(model, source)
        compute = compute_twin(model, source.config, precision) if twin else model
        return cls(model, variable_values(model), compute)

    def apply(self, weights: tuple, segments):
        import jax.numpy as jnp

        trainable, non_trainable = weights
        outputs, _ = self.compute.stateless_call(trainable, non_trainable, segments, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [jnp.asarray(o, jnp.float32) for o in outputs]


def variable_values(model) -> tuple:
    """(trainable, non-trainable) values of ``model``'s variables, as device arrays."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
