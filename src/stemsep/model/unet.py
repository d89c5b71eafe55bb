"""Spleeter's U-Net as a Keras 3 functional model, one U-Net per instrument.

Layer names are ``{instrument}_{role}{k}`` so that the checkpoint importer can
map the reference's graph-order variable names onto them (see checkpoint.py).
"""

from __future__ import annotations

import keras
from keras import layers

from stemsep.config import OUTPUT_CHANNELS, ModelConfig

ENCODER_FILTERS = (16, 32, 64, 128, 256, 512)
KERNEL = (5, 5)
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def portable_elu(x):
    """ELU from ops every runtime computes exactly: no Elu/Expm1 op.

    ONNX Runtime's Elu evaluates exp(x) - 1 in float32, which cancels near 0
    (relative error up to 2.6e-3, measured), where TensorFlow uses expm1. Here
    small |x| use a 5-term Taylor series (error < 2e-9) and the rest exp(x) - 1.
    """
    ops = keras.ops
    taylor = x * (1 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x / 120))))
    negative = ops.where(x > -0.1, taylor, ops.exp(ops.minimum(x, 0.0)) - 1)
    return ops.where(x > 0, x, negative)


# Output row 2m + a of a 5-tap, stride-2 "same" transposed convolution (one row of padding
# before) is the correlation of input rows m - 1, m[, m + 1] with these kernel taps.
PHASE_TAPS = ((3, 1), (4, 2, 0))


class SubPixelConv2DTranspose(layers.Layer):
    """Spleeter's 5x5, stride-2, "same" transposed convolution as four regular convolutions,
    one per output phase (2x2, 2x3, 3x2 and 3x3 taps of the same kernel), interleaved by
    depth_to_space: the same numbers to float rounding and the same multiply-adds, but
    regular convolutions are what every runtime optimizes (LiteRT's XNNPACK ran the
    decoder's TRANSPOSE_CONVs 2.2x slower, measured).

    Called with the list ``[skip, features]`` that the U-Net would concatenate, it convolves
    each part with its slice of the kernel and adds: the same numbers again, but int8
    activations then get one scale per part. The skips are raw encoder outputs whose range
    exceeds the normalized decoder features' by orders of magnitude (dynamic int8 of deconv5
    alone: 9 dB concatenated, 28 dB split, measured).

    The weights keep Conv2DTranspose's shapes and names, so checkpoints and
    ``copy_weights_by_name`` fill it; the phase kernels are derived from them in the graph
    (constant-folded by converters).
    """

    def __init__(self, filters: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape) -> None:
        parts = input_shape if isinstance(input_shape, list) else [input_shape]
        channels = sum(shape[-1] for shape in parts)
        self.kernel = self.add_weight(name="kernel", shape=(*KERNEL, self.filters, channels), initializer="he_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        ops = keras.ops
        parts = inputs if isinstance(inputs, list) else [inputs]
        height, width = parts[0].shape[1], parts[0].shape[2]
        padded = [ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]) for x in parts]
        phases = []
        for rows in PHASE_TAPS:
            for cols in PHASE_TAPS:
                # [rows, cols, out, in] -> [rows, cols, in, out]: this phase's taps only, no zeros.
                kernel = ops.transpose(ops.take(ops.take(self.kernel, rows, axis=0), cols, axis=1), [0, 1, 3, 2])
                total, first = None, 0
                for x in padded:
                    window = x[:, : height + len(rows) - 1, : width + len(cols) - 1]
                    part = ops.conv(window, kernel[:, :, first : first + x.shape[-1]], strides=1, padding="valid")
                    total = part if total is None else total + part
                    first += x.shape[-1]
                phases.append(total + self.bias)
        return ops.depth_to_space(ops.concatenate(phases, axis=-1), 2)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters}


class SpaceToDepthConv2D(layers.Layer):
    """Spleeter's 5x5, stride-2, "same" convolution as one stride-1 3x3 convolution of the input's
    2x2 blocks (space_to_depth), its kernel the 5x5 one zero-padded to 6x6 and regrouped.

    The same numbers to float rounding, with 36/25 of the multiply-adds; what it saves is the
    gradient: a strided convolution's gradient with respect to its input is an input-dilated
    convolution, which XLA's GPU backend runs far slower than regular ones (the JAX trainer's
    U-Nets compute with this, see ``separate/gpu/unets.py``). Needs even heights and widths (every
    encoder input of a U-Net whose T and F are multiples of 64); the weights keep Conv2D's shapes
    and names.
    """

    def __init__(self, filters: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape) -> None:
        if input_shape[1] % 2 or input_shape[2] % 2:
            raise ValueError(f"{self.name}: space_to_depth needs an even height and width, not {input_shape[1:3]}")
        self.kernel = self.add_weight(name="kernel", shape=(*KERNEL, input_shape[-1], self.filters), initializer="he_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        ops = keras.ops
        channels = inputs.shape[-1]
        # "same" for 5 taps at stride 2 on an even size pads 1 before and 2 after; one more row/column
        # of zeros after makes the size even, under the zero sixth tap.
        blocks = ops.space_to_depth(ops.pad(inputs, [[0, 0], [1, 3], [1, 3], [0, 0]]), 2)
        kernel = ops.pad(self.kernel, [[0, 1], [0, 1], [0, 0], [0, 0]])  # [6, 6, in, out]
        kernel = ops.reshape(kernel, (3, 2, 3, 2, channels, self.filters))  # [row, row phase, col, col phase, in, out]
        kernel = ops.reshape(ops.transpose(kernel, [0, 2, 1, 3, 4, 5]), (3, 3, 4 * channels, self.filters))
        return ops.conv(blocks, kernel, strides=1, padding="valid") + self.bias

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters}


def portable_sigmoid(x):
    """1 / (1 + exp(-x)): ONNX Runtime's Sigmoid is inexact below -10 and returns 0 below -18
    (measured: 17 % off at -15), which the ratio masks of a saturated U-Net turn into audible
    differences; exp keeps the relative precision there."""
    return 1 / (1 + keras.ops.exp(-x))


def _activation(name: str | None, default: str, layer_name: str, portable: bool) -> layers.Layer:
    # Spleeter falls back to its default for any unknown value, so do we.
    choice = name if name in ("ReLU", "ELU", "LeakyReLU") else default
    if choice == "ReLU":
        return layers.ReLU(name=layer_name)
    if choice == "ELU":
        return layers.Activation(portable_elu, name=layer_name) if portable else layers.ELU(name=layer_name)
    return layers.LeakyReLU(negative_slope=0.2, name=layer_name)


def _unet_logits_or_mask(
    magnitude: keras.KerasTensor, scope: str, params: dict, logits: bool, portable: bool, subpixel: bool, blocks: bool
) -> keras.KerasTensor:
    """One instrument's U-Net up to its last 4x4 conv (sigmoid unless ``logits``)."""
    conv_act, deconv_act = params.get("conv_activation"), params.get("deconv_activation")
    init = "he_uniform"
    x = magnitude
    skips = []
    for k, filters in enumerate(ENCODER_FILTERS, start=1):
        if blocks:
            conv = SpaceToDepthConv2D(filters, name=f"{scope}_conv{k}")(x)
        else:
            conv = layers.Conv2D(filters, KERNEL, strides=2, padding="same", kernel_initializer=init, name=f"{scope}_conv{k}")(x)
        skips.append(conv)
        if k == len(ENCODER_FILTERS):
            # The reference also builds a BN and activation here, but the
            # decoder starts from the raw 6th conv: they are dead and omitted.
            break
        bn = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{scope}_bn{k}")(conv)
        x = _activation(conv_act, "LeakyReLU", f"{scope}_conv_act{k}", portable)(bn)
    x = skips[-1]
    decoder_filters = (*ENCODER_FILTERS[-2::-1], 1)
    for k, filters in enumerate(decoder_filters, start=1):
        if subpixel:
            x = SubPixelConv2DTranspose(filters, name=f"{scope}_deconv{k}")(x)
        else:
            x = layers.Conv2DTranspose(
                filters, KERNEL, strides=2, padding="same", kernel_initializer=init, name=f"{scope}_deconv{k}"
            )(x)
        x = _activation(deconv_act, "ReLU", f"{scope}_deconv_act{k}", portable)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{scope}_bn{6 + k}")(x)
        if k <= 3:
            x = layers.Dropout(0.5, name=f"{scope}_dropout{k}")(x)
        if k < len(decoder_filters):
            # SubPixelConv2DTranspose takes the parts apart (see there).
            x = [skips[-1 - k], x] if subpixel else layers.Concatenate(axis=-1, name=f"{scope}_skip{k}")([skips[-1 - k], x])
    sigmoid = portable_sigmoid if portable else "sigmoid"
    return layers.Conv2D(
        OUTPUT_CHANNELS,  # 2 whatever n_channels, as the reference: a mono model's masks come in pairs
        (4, 4),
        dilation_rate=2,
        padding="same",
        activation=None if logits else sigmoid,
        kernel_initializer=init,
        name=f"{scope}_conv7",
    )(x)


def build_unet_model(
    cfg: ModelConfig, batch_size: int | None = None, portable: bool = False, subpixel: bool = False, blocks: bool = False
) -> keras.Model:
    """Magnitude segments ``[B, T, F, n_channels]`` in, one estimate ``[B, T, F, 2]`` per instrument out.

    A mono model (n_channels 1) is the reference's: its first convolutions take one channel, its
    last still makes two masks, and both multiply the one input channel (broadcast), so its
    checkpoints import as they are.

    Export graphs, with the same weights: ``portable`` builds ELU and sigmoid from
    elementary ops (``portable_elu``, ``portable_sigmoid``: ONNX Runtime's are inexact);
    ``subpixel`` builds each transposed convolution as ``SubPixelConv2DTranspose``. For
    XLA on GPUs, with ``subpixel``: ``blocks`` builds each strided convolution as
    ``SpaceToDepthConv2D``.
    """
    magnitude = keras.Input((cfg.T, cfg.F, cfg.n_channels), batch_size=batch_size, name="magnitude")
    softmax = cfg.model_type == "unet.softmax_unet"
    params = cfg.model_params
    maps = [_unet_logits_or_mask(magnitude, name, params, softmax, portable, subpixel, blocks) for name in cfg.instruments]
    if softmax:
        # 5stems: masks sum to one across instruments.
        stacked = layers.Lambda(lambda ts: keras.ops.stack(ts, axis=4), name="stack_logits")(maps)
        masks = layers.Softmax(axis=4, name="instrument_softmax")(stacked)
        maps = [layers.Lambda(lambda m, i=i: m[..., i], name=f"{name}_mask")(masks) for i, name in enumerate(cfg.instruments)]
    outputs = [layers.Multiply(name=f"{name}_spectrogram")([mask, magnitude]) for name, mask in zip(cfg.instruments, maps)]
    return keras.Model(magnitude, outputs, name="unet")


def copy_weights_by_name(target: keras.Model, source: keras.Model) -> None:
    """Set every weighted layer of ``target`` from ``source``'s layer of the same name (names are
    per instrument, so a one-instrument U-Net takes its weights from a multi-instrument one).

    Raises ValueError naming the first layer that ``source`` lacks or shapes differently.
    """
    for layer in target.layers:
        if layer.weights:
            try:
                layer.set_weights(source.get_layer(layer.name).get_weights())
            except (ValueError, KeyError):
                raise ValueError(f"layer {layer.name} does not fit the config's model") from None
