"""The waveform kind for ONNX: the converted U-Net wrapped in STFT and inverse STFT written
with ONNX's own DFT operator (opset 17).

tf2onnx turns TensorFlow's RFFT into a matrix product with a dense 4096 x 4096 DFT matrix
(134 MB per transform and ~30 GFLOP per chunk), so the signal processing around the U-Net
is written here directly; it computes what ``graphs.waveform_function`` computes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stemsep.config import ModelConfig
from stemsep.dsp.masks import EPSILON
from stemsep.dsp.stft import WINDOW_COMPENSATION, periodic_hann
from stemsep.export.graphs import chunk_samples


class _Graph:
    """Nodes and constants appended in order; every tensor name is unique."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"wave/{hint}_{self._count}"

    def const(self, value, dtype=np.int64) -> str:
        name = self._name("const")
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes) -> str:
        output = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def slice(self, x: str, start: int, end: int, axis: int, step: int = 1) -> str:
        return self.op("Slice", x, self.const([start]), self.const([end]), self.const([axis]), self.const([step]))


def _frames(g: _Graph, signal: str, cfg: ModelConfig) -> str:
    """[C, samples] -> [C, T, frame] by reshape and shifted slices (frame is a multiple of hop)."""
    ratio = cfg.frame_length // cfg.frame_step
    sub = g.op("Reshape", signal, g.const([cfg.n_channels, cfg.T + ratio - 1, cfg.frame_step]))
    return g.op("Concat", *[g.slice(sub, q, q + cfg.T, axis=1) for q in range(ratio)], axis=-1)


def _overlap_add(g: _Graph, frames: str, cfg: ModelConfig) -> str:
    """[2, T, frame] -> [2, (T - 1) * hop + frame]: the stems' channels."""
    hop, ratio = cfg.frame_step, cfg.frame_length // cfg.frame_step
    parts = g.op("Reshape", frames, g.const([cfg.output_channels, cfg.T, ratio, hop]))
    shifted = []
    for q in range(ratio):
        part = g.op("Squeeze", g.slice(parts, q, q + 1, axis=2), g.const([2]))
        shifted.append(g.op("Pad", part, g.const([0, q, 0, 0, ratio - 1 - q, 0])))
    return g.op("Reshape", g.op("Sum", *shifted), g.const([cfg.output_channels, (cfg.T + ratio - 1) * hop]))


def waveform_onnx(unet: onnx.ModelProto, cfg: ModelConfig) -> onnx.ModelProto:
    """``unet``: the multi-instrument spectrogram model ([1, T, F, C] input ``magnitude``, one
    output per instrument named after it). Returns the waveform model: input ``waveform``
    [samples, C], one output [samples, 2] per instrument (a mono model's masks come in pairs)."""
    if cfg.mask_extension != "zeros":
        raise ValueError("the waveform export supports mask_extension 'zeros' (all official models)")
    n, half, bins = cfg.frame_length, cfg.frame_length // 2, cfg.n_bins
    unet = onnx.compose.add_prefix(unet, "unet/")
    outputs = {o.name.removeprefix("unet/").split(":")[0]: o.name for o in unet.graph.output}
    g = _Graph()
    window = g.const(periodic_hann(n), np.float32)

    # STFT: frames * window -> one-sided DFT [C, T, bins, 2] (real, imaginary).
    signal = g.op("Transpose", "waveform", perm=[1, 0])
    windowed = g.op("Mul", _frames(g, signal, cfg), window)
    spectrum = g.op("DFT", g.op("Unsqueeze", windowed, g.const([3])), axis=2, onesided=1)
    real = g.op("Squeeze", g.slice(spectrum, 0, 1, axis=3), g.const([3]))
    imag = g.op("Squeeze", g.slice(spectrum, 1, 2, axis=3), g.const([3]))
    real_f, imag_f = g.slice(real, 0, cfg.F, axis=2), g.slice(imag, 0, cfg.F, axis=2)
    magnitude = g.op("Sqrt", g.op("Add", g.op("Mul", real_f, real_f), g.op("Mul", imag_f, imag_f)))
    g.op("Unsqueeze", g.op("Transpose", magnitude, perm=[1, 2, 0]), g.const([0]), output="unet/magnitude")
    before_unet = len(g.nodes)

    # Ratio masks from the estimates, as dsp.masks: (|e|^p + eps / n) / (sum |e|^p + eps).
    exponent = g.const(cfg.separation_exponent, np.float32)
    powered = {name: g.op("Pow", g.op("Squeeze", outputs[name], g.const([0])), exponent) for name in cfg.instruments}
    total = g.op("Add", g.op("Sum", *powered.values()), g.const(EPSILON, np.float32))
    zeros = g.op("Expand", g.const(0.0, np.float32), g.const([cfg.output_channels, cfg.T, bins - cfg.F]))
    share = g.const(EPSILON / len(cfg.instruments), np.float32)
    graph_outputs = []
    for name, power in powered.items():
        mask = g.op("Transpose", g.op("Div", g.op("Add", power, share), total), perm=[2, 0, 1])  # [C, T, F]
        masked_real = g.op("Concat", g.op("Mul", real_f, mask), zeros, axis=2)
        masked_imag = g.op("Concat", g.op("Mul", imag_f, mask), zeros, axis=2)
        # Hermitian extension to n bins, then the inverse DFT (ONNX's divides by n).
        full_real = g.op("Concat", masked_real, g.slice(masked_real, half - 1, 0, axis=2, step=-1), axis=2)
        mirrored_imag = g.op("Neg", g.slice(masked_imag, half - 1, 0, axis=2, step=-1))
        full_imag = g.op("Concat", masked_imag, mirrored_imag, axis=2)
        full = g.op("Concat", g.op("Unsqueeze", full_real, g.const([3])), g.op("Unsqueeze", full_imag, g.const([3])), axis=3)
        frames = g.op("Squeeze", g.slice(g.op("DFT", full, axis=2, inverse=1), 0, 1, axis=3), g.const([3]))
        samples = _overlap_add(g, g.op("Mul", frames, window), cfg)
        scaled = g.op("Mul", samples, g.const(WINDOW_COMPENSATION, np.float32))
        g.op("Transpose", scaled, perm=[1, 0], output=name)
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [chunk_samples(cfg), cfg.output_channels]))

    graph = helper.make_graph(
        g.nodes[:before_unet] + list(unet.graph.node) + g.nodes[before_unet:],
        "stemsep_waveform",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [chunk_samples(cfg), cfg.n_channels])],
        graph_outputs,
        initializer=g.constants + list(unet.graph.initializer),
    )
    model = helper.make_model(graph, opset_imports=list(unet.opset_import), producer_name="stemsep")
    model.ir_version = unet.ir_version
    return onnx.shape_inference.infer_shapes(model)
