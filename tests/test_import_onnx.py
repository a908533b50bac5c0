"""ONNX graphs -> Network, checked against ONNX Runtime running the same file."""

from __future__ import annotations

import numpy as np
import pytest
from framework_support import assert_not_degenerate, assert_same_answers

import mlpinfer
from mlpinfer.importers import UnsupportedModelError, from_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto


def model_of(nodes, initializers, input_shape, *, output="y", opset=17, elem=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", elem, input_shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)],
                             ir_version=8)


def runtime(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def textbook(sample_weight_path):
    """The textbook's trained 784-50-100-10 sigmoid/softmax network, as float32 arrays."""
    params = mlpinfer.load(sample_weight_path).params()
    return [(np.array(params[f"W{i}"]), np.array(params[f"b{i}"])) for i in (1, 2, 3)]


def gemm_variant(textbook, variant):
    """The textbook network written as ONNX in one of the ways exporters write dense layers."""
    nodes, init, current = [], {}, "x"
    shape = ["N", 784]
    if variant == "flatten":
        shape = ["N", 1, 28, 28]
        nodes.append(helper.make_node("Flatten", ["x"], ["flat"], name="flatten"))
        current = "flat"
    elif variant == "reshape":
        shape = ["N", 28, 28]
        init["shape"] = np.array([-1, 784], np.int64)
        nodes.append(helper.make_node("Reshape", ["x", "shape"], ["flat"], name="reshape"))
        current = "flat"
    for i, (w, b) in enumerate(textbook, start=1):
        out = f"z{i}"
        if variant == "matmul_add":
            init[f"W{i}"], init[f"b{i}"] = w, b
            nodes += [helper.make_node("MatMul", [current, f"W{i}"], [f"m{i}"], name=f"mm{i}"),
                      helper.make_node("Add", [f"b{i}", f"m{i}"], [out], name=f"add{i}")]
        elif variant == "transB_alpha_beta":
            # Y = alpha * x @ B.T + beta * C with B = W.T / alpha and C = b / beta.
            init[f"W{i}"] = np.ascontiguousarray(w.T) / np.float32(2)
            init[f"b{i}"] = (b * np.float32(4)).reshape(1, -1)
            nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out],
                                          name=f"gemm{i}", transB=1, alpha=2.0, beta=0.25))
        else:
            init[f"W{i}"], init[f"b{i}"] = w, b
            nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out],
                                          name=f"gemm{i}"))
        op = "Softmax" if i == 3 else "Sigmoid"
        current = "y" if i == 3 else f"a{i}"
        nodes.append(helper.make_node(op, [out], [current], name=f"act{i}"))
    return model_of(nodes, init, shape)


@pytest.mark.parametrize("variant", ["gemm", "transB_alpha_beta", "matmul_add", "flatten",
                                     "reshape"])
def test_textbook_network_matches_onnx_runtime_on_mnist(textbook, mnist, mnist_test, variant):
    x, labels = mnist
    model = gemm_variant(textbook, variant)
    network = from_onnx(model)
    assert network.activations == ("sigmoid", "sigmoid", "softmax")
    assert network.input_scale is None
    feed = mnist_test[0].astype(np.float32)[:, None] / 255 if variant == "flatten" else x
    theirs = runtime(model, feed.reshape((-1, 28, 28)) if variant == "reshape" else feed)
    ours = network.predict(x)
    assert_same_answers(ours, theirs)
    assert_not_degenerate(ours, labels, 0.93)


@pytest.mark.parametrize(("op", "ours"), [("Relu", "relu"), ("Tanh", "tanh")])
def test_hidden_activations_scaling_and_logits_match_onnx_runtime(textbook, mnist, op, ours):
    x, _ = mnist
    (w1, b1), (w2, b2), _ = textbook
    pixels = (x * 255).astype(np.float32)  # raw pixel values: the graph scales them itself
    init = {"W1": w1, "b1": b1, "W2": w2, "b2": b2, "k": np.float32(255)}
    nodes = [helper.make_node("Div", ["x", "k"], ["s"], name="rescale"),
             helper.make_node("Gemm", ["s", "W1", "b1"], ["z1"], name="g1"),
             helper.make_node(op, ["z1"], ["a1"], name="act"),
             helper.make_node("Identity", ["a1"], ["i1"], name="noop"),
             helper.make_node("MatMul", ["i1", "W2"], ["m2"], name="mm"),
             helper.make_node("Add", ["m2", "b2"], ["y"], name="logits")]
    model = model_of(nodes, init, ["N", 784])
    network = from_onnx(model)
    assert network.activations == (ours, "identity")
    assert network.input_scale == pytest.approx(1 / 255)
    assert_same_answers(network.predict(pixels), runtime(model, pixels))


def test_softmax_before_opset_13_defaults_to_axis_1(textbook, mnist):
    x, _ = mnist
    w, b = textbook[0]
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="g"),
             helper.make_node("Softmax", ["z"], ["y"], name="sm")]
    model = model_of(nodes, {"W": w, "b": b}, ["N", 784], opset=11)
    assert_same_answers(from_onnx(model).predict(x[:500]), runtime(model, x[:500]))


def test_file_round_trip_reads_only_protobuf(textbook, tmp_path, mnist):
    x, _ = mnist
    path = tmp_path / "model.onnx"
    onnx.save(gemm_variant(textbook, "gemm"), path)
    assert_same_answers(from_onnx(path).predict(x[:100]), runtime(onnx.load(path), x[:100]))


# --------------------------------------------------------------------------- refusals

def dense(extra_nodes, extra_init=None, **kwargs):
    init = {"W": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)}
    init.update(extra_init or {})
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="fc"), *extra_nodes]
    return model_of(nodes, init, ["N", 4], **kwargs)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (dense([helper.make_node("Relu", ["z"], ["y"], name="r", domain="com.microsoft")]),
         "unsupported op com.microsoft:Relu at node #1 'r'"),
        (model_of([helper.make_node("Conv", ["x", "W"], ["y"], name="conv1")],
                  {"W": np.ones((1, 1, 3, 3), np.float32)}, ["N", 1, 28, 28]),
         r"unsupported op Conv at node #0 'conv1' \(supported: Gemm, MatMul, "),
        (dense([helper.make_node("Sin", ["z"], ["y"])]),
         r"unsupported op Sin at node #1 \(unnamed\)"),
        (model_of([helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="g", transA=1)],
                  {"W": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)}, [4, "N"]),
         "transA=0"),
        (dense([helper.make_node("Softmax", ["z"], ["y"], name="sm", axis=0)]), "axis=0"),
        (dense([helper.make_node("LogSoftmax", ["z"], ["y"], name="lsm", axis=0)]),
         "LogSoftmax at node #1 'lsm': supported only when it is over the last axis"),
        (dense([helper.make_node("Relu", ["z"], ["y"], name="r", foo=1)]),
         "unsupported attribute foo of Relu at node #1 'r'"),
        (dense([helper.make_node("Mul", ["z", "z"], ["y"], name="square")]),
         "Mul at node #1 'square': the elementwise ops Mul on the running value are neither "
         "an activation nor a feature scaling"),
        (dense([helper.make_node("Relu", ["x"], ["y"], name="branch")]),
         "Relu at node #1 'branch' reads 'x', a value from before the layer the chain has "
         "moved on to: only chains are supported"),
        (dense([helper.make_node("Relu", ["z"], ["a"], name="r1"),
                helper.make_node("Relu", ["a"], ["y"], name="r2")]),
         "Relu at node #2 'r2': activation relu applied to relu"),
        (dense([helper.make_node("Mul", ["z", "w"], ["y"], name="mul")],
               {"w": np.ones((2, 3), np.float32)}),
         r"Mul at node #1 'mul': a constant of shape \(2, 3\) is neither one number nor one "
         "per feature"),
        (dense([helper.make_node("Reshape", ["z", "s"], ["y"], name="rs")],
               {"s": np.array([3, -1], np.int64)}),
         r"Reshape at node #1 'rs': supported only when it reshapes to \(batch, 3\)"),
        (dense([helper.make_node("Relu", ["z"], ["y"])], output="z2"),
         "graph output 'z2' is not the end of the chain"),
        (dense([helper.make_node("Relu", ["z"], ["y"])], elem=TensorProto.UINT8),
         "element type UINT8"),
        (dense([helper.make_node("Selu", ["z"], ["y"], name="s", alpha=1.5)]),
         "Selu at node #1 's': supported only when it has ONNX's default alpha and gamma"),
        (dense([helper.make_node("Gelu", ["z"], ["y"], name="g", approximate="fast")]),
         "approximates with 'none' or 'tanh'"),
        (dense([helper.make_node("BatchNormalization", ["z", "b", "b", "b", "b"], ["y"],
                                 name="bn", training_mode=1)]),
         "BatchNormalization at node #1 'bn': supported only when it normalises a 2-D value "
         r"with its running statistics \(training_mode=0\)"),
        (dense([helper.make_node("LayerNormalization", ["z", "g"], ["y"], name="ln", axis=0)],
               {"g": np.ones(3, np.float32)}),
         r"LayerNormalization at node #1 'ln': supported only when it normalises the last axis"),
        (model_of([helper.make_node("LayerNormalization", ["x", "g"], ["n"], name="ln"),
                   helper.make_node("Gemm", ["n", "W", "b"], ["y"], name="fc")],
                  {"g": np.ones(4, np.float32), "W": np.ones((4, 3), np.float32),
                   "b": np.zeros(3, np.float32)}, ["N", 4]),
         "LayerNormalization at node #0 'ln': a LayerNorm on the input"),
        (dense([helper.make_node("Greater", ["z", "t"], ["c"], name="gt"),
                helper.make_node("Softplus", ["z"], ["s"], name="sp"),
                helper.make_node("Where", ["c", "z", "s"], ["y"], name="where")],
               {"t": np.float32(5)}),
         r"Where at node #3 'where': supported only as Softplus's threshold, .* t >= 16"),
        (dense([helper.make_node("Dropout", ["z", "r", "t"], ["y"], name="drop")],
               {"r": np.float32(0.5), "t": np.array(True)}),
         "Dropout at node #1 'drop': supported only when it runs in inference mode"),
        (dense([helper.make_node("Sigmoid", ["z"], ["s"], name="sig"),
                helper.make_node("Mul", ["s", "s"], ["y"], name="sq")]),
         "Mul at node #2 'sq': the elementwise ops Sigmoid, Mul on the running value"),
    ],
)
def test_refuses_what_it_cannot_run_naming_it(model, message):
    with pytest.raises(UnsupportedModelError, match=message):
        from_onnx(model)
