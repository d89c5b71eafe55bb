"""Prepared ONNX models: transposed convolutions as one convolution per output phase compute the same."""

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from stemsep.export.onnx_phases import MIN_PHASE_CHANNELS, phase_taps, split_transposed_convolutions


def transposed_convolution(cin, cout, kernel, stride, pads, height=6, width=10):
    rng = np.random.default_rng(cin + cout + kernel)
    weights = [
        numpy_helper.from_array(rng.normal(size=(cin, cout, kernel, kernel)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=cout).astype(np.float32), "b"),
    ]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[stride, stride], pads=pads)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, x):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_phase_taps_of_spleeters_deconvolution():
    # 5x5, stride 2, "same" (pads 1 before, 2 after): even outputs read taps 3, 1; odd ones 4, 2, 0.
    assert phase_taps(5, 2, 1, 0) == {-1: 3, 0: 1}
    assert phase_taps(5, 2, 1, 1) == {-1: 4, 0: 2, 1: 0}


@pytest.mark.parametrize(
    "kernel, stride, pads",
    [(5, 2, [1, 1, 2, 2]), (5, 2, [2, 2, 1, 1]), (4, 2, [1, 1, 1, 1]), (3, 2, [1, 0, 0, 1]), (5, 3, [1, 1, 1, 1])],
)
def test_phases_compute_the_transposed_convolution(kernel, stride, pads):
    model = transposed_convolution(24, MIN_PHASE_CHANNELS, kernel, stride, pads)
    x = np.random.default_rng(1).normal(size=(1, 24, 6, 10)).astype(np.float32)
    expected = run(model, x)
    assert split_transposed_convolutions(model) == 1
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == stride * stride and ops.count("ConvTranspose") == 1  # the one-hot interleave
    assert {i.name for i in model.graph.initializer}.isdisjoint({"w", "b"})  # the original kernel is gone
    got = run(model, x)
    assert got.shape == expected.shape == (1, MIN_PHASE_CHANNELS, 6 * stride, 10 * stride)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    "cout, kernel, stride, pads",
    [
        (MIN_PHASE_CHANNELS // 2, 5, 2, [1, 1, 2, 2]),  # too narrow for the NCHWc kernels
        (MIN_PHASE_CHANNELS, 5, 2, [1, 1, 1, 1]),  # output 2h - 1: not stride x input
        (MIN_PHASE_CHANNELS, 2, 1, [0, 0, 1, 1]),  # stride 1
    ],
)
def test_other_transposed_convolutions_are_left_alone(cout, kernel, stride, pads):
    model = transposed_convolution(8, cout, kernel, stride, pads)
    before = model.SerializeToString()
    assert split_transposed_convolutions(model) == 0
    assert model.SerializeToString() == before
