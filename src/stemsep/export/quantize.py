"""int8 TFLite models with ai-edge-quantizer: channel-wise symmetric int8 weights.

``weight_only``: DEQUANTIZE ops in front of float kernels (XNNPACK dequantizes at load):
a quarter of the size at float speed.

``dynamic``: int8 kernels with activations quantized per tensor at run time (XNNPACK's
int8 kernels: the fast one), except FLOAT_COMPUTE_LAYERS.

Full-integer int8 (static activation ranges from a representative dataset) was measured and
rejected: calibrated on the test song itself, the U-Net outputs were 13 / 17 dB from float.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

# Convolutions (in every instrument's U-Net) whose dynamic int8 quantization alone costs the
# most. Measured on the official 2stems model, example song, vocals stem vs Keras with only
# that layer quantized: conv1 20.9 dB, conv2 20.3, deconv4 15.7, deconv6 20.5, every other
# layer 27.6-54.7 dB. They read the widest-ranged tensors: the raw magnitudes, their first
# activations and the raw encoder outputs that skip to deconv4 and deconv6. Kept on float
# compute (int8 weights still): vocals 24.2 dB instead of 11.9 dB with every layer quantized.
# (A per-model search on a synthetic calibration song picked worse layers: 22.4 dB with six.)
FLOAT_COMPUTE_LAYERS = ("conv1", "conv2", "deconv4", "deconv6")


def weight_only(model: bytes) -> bytes:
    return _quantize(model, [_rule(".*", integer=False)])


def dynamic(model: bytes) -> bytes:
    float_compute = rf".*_({'|'.join(FLOAT_COMPUTE_LAYERS)})(_\d+)?/.*"  # tensor names carry the layer
    return _quantize(model, [_rule(".*", integer=True), _rule(float_compute, integer=False)])  # later rules win


def _rule(regex: str, integer: bool) -> dict:
    weights = {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"}
    config = {
        "weight_tensor_config": weights,
        "compute_precision": "INTEGER" if integer else "FLOAT",
        "explicit_dequantize": not integer,
        "skip_checks": False,
        "min_weight_elements": 0,
    }
    return {"regex": regex, "operation": "*", "algorithm_key": "min_max_uniform_quantize", "op_config": config}


def _quantize(model: bytes, recipe: list[dict]) -> bytes:
    from ai_edge_quantizer import quantizer

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.tflite", Path(tmp) / "int8.tflite"
        source.write_bytes(model)
        # Its size report and progress bars are not ours to print.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            engine = quantizer.Quantizer(str(source))
            engine.load_quantization_recipe(recipe)
            engine.quantize().export_model(str(target))
        return target.read_bytes()
