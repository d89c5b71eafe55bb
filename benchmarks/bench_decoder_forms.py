"""ONNX Runtime (CPU) time of each decoder layer of Spleeter's U-Net (T 512, F 1024) in five graph forms.

The forms compute the same 5x5, stride-2, "same" transposed convolution (random weights;
outputs compared with the first form): ``convtranspose`` (ONNX ConvTranspose: what stemsep's
ONNX exports hold), ``prepared`` (what prepared models hold where the layer has >= 16 outputs:
``export.onnx_phases``' exact phase convolutions, block transpose and one-hot interleave; the
last layer stays a ConvTranspose), ``phases_split`` (what its LiteRT export graph holds:
four phase convolutions per input part, summed, interleaved by DepthToSpace), ``phases`` (the
same on the concatenated input) and ``one3x3`` (one 3x3 convolution with four times the
outputs, zero taps included, then DepthToSpace). Two intra-op threads, as the CPU engine on
this project's 2-core machines.

    python benchmarks/bench_decoder_forms.py [LAYERS]   # LAYERS: how many of the six, from the deepest
"""

import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from stemsep.export.onnx_phases import split_transposed_convolutions  # what prepared models hold
from stemsep.model.unet import PHASE_TAPS  # the export graph's taps per output phase

rng = np.random.default_rng(0)
# (skip channels, feature channels, out channels, input H, W) of deconv1..6 for T=512, F=1024
LAYERS = [
    (0, 512, 256, 8, 16),
    (256, 256, 128, 16, 32),
    (128, 128, 64, 32, 64),
    (64, 64, 32, 64, 128),
    (32, 32, 16, 128, 256),
    (16, 16, 1, 256, 512),
]


def graph(nodes, inits, ins, out_shape, prepared=False):
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    if prepared:
        split_transposed_convolutions(m)  # leaves the 1-output last layer as it is
    return m.SerializeToString()


def joined(parts: list[int], nodes: list) -> str:
    """The input the layer convolves: the two parts concatenated (one Concat node), or the one part."""
    if len(parts) == 1:
        return "x0"
    nodes.append(helper.make_node("Concat", ["x0", "x1"], ["xc"], axis=1))
    return "xc"


def build(form, skip, feat, out, h, w, kernel):
    parts = [p for p in (skip, feat) if p]
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, c, h, w]) for i, c in enumerate(parts)]
    nodes, inits = [], []
    cin = sum(parts)
    if form in ("convtranspose", "prepared"):
        src = joined(parts, nodes)
        inits.append(numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), "k"))  # [in, out, kh, kw]
        nodes.append(
            helper.make_node("ConvTranspose", [src, "k"], ["y"], strides=[2, 2], pads=[1, 1, 2, 2], output_padding=[0, 0])
        )
        # Keras "same": output 2h; ORT: (h-1)*2 + 5 - 3 = 2h
        return graph(nodes, inits, ins, [1, out, 2 * h, 2 * w], prepared=form == "prepared")
    if form in ("phases_split", "phases"):
        for i in range(len(parts)):
            nodes.append(helper.make_node("Pad", [f"x{i}", "pads"], [f"p{i}"]))
        inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
        if form == "phases" and len(parts) > 1:
            nodes.append(helper.make_node("Concat", ["p0", "p1"], ["pc"], axis=1))
            srcs = [("pc", 0, cin)]
        else:
            srcs, first = [], 0
            for i, c in enumerate(parts):
                srcs.append((f"p{i}", first, c))
                first += c
        phase_names = []
        for ri, rows in enumerate(PHASE_TAPS):
            for ci, cols in enumerate(PHASE_TAPS):
                terms = []
                for name, first, c in srcs:
                    k = kernel[np.ix_(rows, cols)][:, :, :, first : first + c]  # [r, c, out, in]
                    kn = f"k{ri}{ci}_{name}"
                    inits.append(numpy_helper.from_array(k.transpose(2, 3, 0, 1).copy(), kn))
                    # window: rows m-1.. (padded by 1): take first h+len(rows)-1 rows
                    sl = f"s{ri}{ci}_{name}"
                    inits.append(numpy_helper.from_array(np.array([0, 0], np.int64), f"st{sl}"))
                    inits.append(numpy_helper.from_array(np.array([h + len(rows) - 1, w + len(cols) - 1], np.int64), f"en{sl}"))
                    inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), f"ax{sl}"))
                    nodes.append(helper.make_node("Slice", [name, f"st{sl}", f"en{sl}", f"ax{sl}"], [sl]))
                    t = f"c{ri}{ci}_{name}"
                    nodes.append(helper.make_node("Conv", [sl, kn], [t]))
                    terms.append(t)
                ph = f"ph{ri}{ci}"
                if len(terms) > 1:
                    nodes.append(helper.make_node("Add", terms, [ph]))
                else:
                    nodes.append(helper.make_node("Identity", terms, [ph]))
                phase_names.append(ph)
        nodes.append(helper.make_node("Concat", phase_names, ["cat"], axis=1))
        nodes.append(helper.make_node("DepthToSpace", ["cat"], ["y"], blocksize=2, mode="DCR"))
        return graph(nodes, inits, ins, [1, out, 2 * h, 2 * w])
    if form == "one3x3":
        src = joined(parts, nodes)
        big = np.zeros((4 * out, cin, 3, 3), np.float32)
        for ri, rows in enumerate(PHASE_TAPS):
            for ci, cols in enumerate(PHASE_TAPS):
                k = kernel[np.ix_(rows, cols)]  # [r, c, out, in]
                block = np.zeros((3, 3, out, cin), np.float32)
                block[: len(rows), : len(cols)] = k
                big[(ri * 2 + ci) * out : (ri * 2 + ci + 1) * out] = block.transpose(2, 3, 0, 1)
        inits.append(numpy_helper.from_array(big, "kb"))
        nodes.append(helper.make_node("Conv", [src, "kb"], ["yy"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("DepthToSpace", ["yy"], ["y"], blocksize=2, mode="DCR"))
        return graph(nodes, inits, ins, [1, out, 2 * h, 2 * w])


def run(model_bytes, feeds, reps):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    y = s.run(None, feeds)[0]
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        s.run(None, feeds)
        times.append(time.perf_counter() - t)
    return np.median(times), y


forms = ["convtranspose", "prepared", "phases_split", "phases", "one3x3"]
total = {f: 0.0 for f in forms}
for n, (skip, feat, out, h, w) in enumerate(LAYERS[: int(sys.argv[1]) if len(sys.argv) > 1 else 6], 1):
    cin = skip + feat
    kernel = rng.normal(size=(5, 5, out, cin)).astype(np.float32) * 0.05
    feeds = {f"x{i}": rng.normal(size=(1, c, h, w)).astype(np.float32) for i, c in enumerate([p for p in (skip, feat) if p])}
    macs = 4 * h * w * out * cin * 25 / 4  # 4hw output pixels, each 25/4 taps on average per input channel
    ref = None
    row = []
    for f in forms:
        t, y = run(build(f, skip, feat, out, h, w, kernel), feeds, 5 if h < 128 else 3)
        total[f] += t
        if ref is None:
            ref = y
        err = float(np.abs(y - ref).max() / (np.abs(ref).max() + 1e-9))
        row.append(f"{f} {t * 1e3:7.1f} ms ({2 * macs / t / 1e9:5.0f} GF/s, err {err:.1e})")
    print(f"deconv{n} in {cin}x{h}x{w} out {out}: " + " | ".join(row), flush=True)
print("decoder total:", {f: round(v * 1e3, 1) for f, v in total.items()})
