"""A model's U-Nets on the JAX backend: one jitted function of (weights, segments), no TensorFlow.

The Keras U-Net of ``model.unet`` is built once and called through
``stateless_call``, so its weights are plain arrays that live on the device
and pass through ``jax.jit``. Weights come from the same places as on the CPU
path (``model.loader.resolve_source``): a stemsep ``model.weights.h5`` (read
by Keras with h5py) or an official TF1 checkpoint (read by
``model.checkpoint.read_bundle``, without TensorFlow).

``bf16`` builds the layers under Keras' ``mixed_bfloat16`` policy: weights
stay float32, each layer computes in bfloat16 (batch normalization in
float32), estimates come back as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

from stemsep.config import ModelConfig
from stemsep.errors import StemsepError
from stemsep.model.loader import ModelSource
from stemsep.separate.gpu.device import use_jax

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def build_model(config: ModelConfig, precision: str = "fp32"):
    """The Keras U-Net of ``config`` on the JAX backend, computing at ``precision``, weights uninitialized."""
    keras = use_jax()
    from stemsep.model.unet import build_unet_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        return build_unet_model(config)
    finally:
        keras.config.set_dtype_policy(previous)


def load_weights(model, source: ModelSource) -> None:
    """Fill ``model`` from ``source``'s weights file or TF1 checkpoint (one sentence if they do not fit)."""
    weights = source.weights
    if weights.is_file():
        try:
            model.load_weights(weights)
        except Exception as error:  # h5py/keras raise many types for a bad file
            problem = f"is corrupt or does not fit this model ({type(error).__name__})"
            raise StemsepError(f"Weights file {weights} {problem}.") from None
        return
    from stemsep.model.checkpoint import assign_checkpoint, checkpoint_prefix, read_bundle

    prefix = checkpoint_prefix(weights)
    assign_checkpoint(model, read_bundle(prefix), source.config.instruments, str(prefix))


@dataclass
class UNets:
    """The U-Nets' weights on the device and the pure function that applies them.

    ``apply(weights, segments)``: [B, T, F, n_channels] float32 -> one [B, T, F, 2] float32 per instrument.
    """

    model: object
    weights: tuple  # (trainable, non-trainable) device arrays

    @classmethod
    def load(cls, source: ModelSource, precision: str = "fp32") -> UNets:
        model = build_model(source.config, precision)
        load_weights(model, source)
        return cls(model, variable_values(model))

    def apply(self, weights: tuple, segments):
        import jax.numpy as jnp

        trainable, non_trainable = weights
        outputs, _ = self.model.stateless_call(trainable, non_trainable, segments, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [jnp.asarray(o, jnp.float32) for o in outputs]


def variable_values(model) -> tuple:
    """(trainable, non-trainable) values of ``model``'s variables, as device arrays."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
