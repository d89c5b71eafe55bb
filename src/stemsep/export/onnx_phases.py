"""Transposed convolutions rewritten for ONNX Runtime's CPU provider as one regular
convolution per output phase.

A stride-s ConvTranspose whose output is s times its input computes, at output
phase (ry, rx), a plain convolution of the input with some of its kernel's taps.
ONNX Runtime runs ConvTranspose as a GEMM into a column buffer followed by an
overlapping col2im, but runs regular convolutions through its NCHWc kernels
(direct convolutions at ~140 GFLOP/s here); so the prepared model gets, per
transposed convolution, one Conv per phase with exactly that phase's taps
(asymmetric pads, no zero taps, no slices), their outputs regrouped channel by
channel (a block transpose) and interleaved by a grouped s x s ConvTranspose
whose one-hot kernel writes each value once (no overlap, no arithmetic).

Measured with ONNX Runtime 1.32 on 2 cores (AVX2), 2stems, one 512-frame
segment: the decoder's five wide layers (16 to 256 output channels) in this form
take the U-Net from 329 to 282 ms (medians of 16 alternating runs); the last
layer (1 output channel, no NCHWc kernel for it) stays a ConvTranspose: as
phases it was slower. The same sums in another order: 121 dB from the graph as
exported.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# NCHWc blocks output channels by 8 (AVX2) or 16 (AVX-512): narrower layers keep ConvTranspose.
MIN_PHASE_CHANNELS = 16


def phase_taps(kernel: int, stride: int, pad_begin: int, phase: int) -> dict[int, int]:
    """{input offset: kernel tap} of the taps that reach output phase ``phase`` along one axis.

    Output o = stride * i + tap - pad_begin; for o = stride * m + phase, the input read is
    i = m + (phase + pad_begin - tap) / stride.
    """
    return {(phase + pad_begin - tap) // stride: tap for tap in range(kernel) if (phase + pad_begin - tap) % stride == 0}


def split_transposed_convolutions(model: onnx.ModelProto) -> int:
    """Rewrite ``model``'s eligible ConvTranspose nodes in place; returns how many were rewritten."""
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in graph.node:
        replacement = _phase_nodes(node, weights, graph) if node.op_type == "ConvTranspose" else None
        if replacement is None:
            nodes.append(node)
        else:
            nodes.extend(replacement)
            rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for node in graph.node for name in node.input}
        kept = [tensor for tensor in graph.initializer if tensor.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return rewritten


def _phase_nodes(node: onnx.NodeProto, weights: dict, graph: onnx.GraphProto) -> list[onnx.NodeProto] | None:
    """The nodes that replace ``node``, or None where it is not a case this rewrite covers."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.input[1] not in weights or (len(node.input) > 2 and node.input[2] and node.input[2] not in weights):
        return None
    kernel = numpy_helper.to_array(weights[node.input[1]])  # [in, out, kh, kw]
    if kernel.ndim != 4 or kernel.dtype != np.float32:
        return None
    cin, cout, kh, kw = kernel.shape
    strides = list(attributes.get("strides", [1, 1]))
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    stride = strides[0]
    plain = (
        attributes.get("group", 1) == 1
        and list(attributes.get("dilations", [1, 1])) == [1, 1]
        and attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and "output_shape" not in attributes
        and not any(attributes.get("output_padding", [0, 0]))
        and strides == [stride, stride]
        and stride > 1
        # output = stride x input: every phase has one row per input row
        and pads[0] + pads[2] == kh - stride
        and pads[1] + pads[3] == kw - stride
    )
    if not plain or cout < MIN_PHASE_CHANNELS:
        return None
    bias = numpy_helper.to_array(weights[node.input[2]]) if len(node.input) > 2 and node.input[2] else np.zeros(cout, np.float32)
    rows = [phase_taps(kh, stride, pads[0], r) for r in range(stride)]
    cols = [phase_taps(kw, stride, pads[1], r) for r in range(stride)]
    if any(min(taps) > 0 or max(taps) < 0 for taps in rows + cols):  # a pad would be negative
        return None

    name = node.name or node.output[0]

    def constant(suffix: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, f"{name}/{suffix}"))
        return f"{name}/{suffix}"

    bias_name = constant("phase_bias", bias.astype(np.float32))
    nodes, phases = [], []
    for ry, row_taps in enumerate(rows):
        for rx, col_taps in enumerate(cols):
            top, left = -min(row_taps), -min(col_taps)
            taps = np.zeros((cout, cin, max(row_taps) + top + 1, max(col_taps) + left + 1), np.float32)
            for dy, ty in row_taps.items():
                for dx, tx in col_taps.items():
                    taps[:, :, dy + top, dx + left] = kernel[:, :, ty, tx].T
            output = f"{name}/phase{ry}{rx}"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [node.input[0], constant(f"phase{ry}{rx}_kernel", taps), bias_name],
                    [output],
                    name=output,
                    kernel_shape=list(taps.shape[2:]),
                    pads=[top, left, max(row_taps), max(col_taps)],
                )
            )
            phases.append(output)
    n_phases = stride * stride
    # [N, phase * out, H, W] -> [N, out * phase, H, W]: whole H x W planes move, a block copy;
    # the regrouped tensor has the stacked one's shape.
    stacked, by_phase, by_channel, shape, grouped = (
        f"{name}/{part}" for part in ("phases", "by_phase", "by_channel", "shape", "grouped")
    )
    nodes += [
        helper.make_node("Concat", phases, [stacked], name=stacked, axis=1),
        helper.make_node(
            "Reshape", [stacked, constant("phase_split", np.array([0, n_phases, cout, -1], np.int64))], [by_phase], name=by_phase
        ),
        helper.make_node("Transpose", [by_phase], [by_channel], name=by_channel, perm=[0, 2, 1, 3]),
        helper.make_node("Shape", [stacked], [shape], name=shape),
        helper.make_node("Reshape", [by_channel, shape], [grouped], name=grouped),
    ]
    one_hot = np.zeros((cout * n_phases, 1, stride, stride), np.float32)
    for c in range(cout):
        for ry in range(stride):
            for rx in range(stride):
                one_hot[c * n_phases + ry * stride + rx, 0, ry, rx] = 1.0
    nodes.append(
        helper.make_node(
            "ConvTranspose",
            [grouped, constant("interleave", one_hot)],
            list(node.output),
            name=f"{name}/interleave",
            kernel_shape=[stride, stride],
            strides=[stride, stride],
            group=int(cout),
        )
    )
    return nodes
