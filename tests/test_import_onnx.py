"""ONNX graphs -> Network, checked against ONNX Runtime running the same file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from framework_support import (
    assert_not_degenerate,
    assert_same_answers,
    assert_same_answers_at_batch_sizes,
    assert_same_network,
    random_inputs,
)

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


def runtime_file(path, x):
    """ONNX Runtime on a file (with its external data), fed ``x`` as its one input."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: x})[0]


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


RNG = np.random.default_rng(3)
IN, HIDDEN, OUT = 40, 50, 7  # awkward sizes


def hidden_variant(variant):
    """Nodes from "h" (the first Gemm's output) to "a" in one of the ways tools write a
    hidden layer's activation or normalisation; initializers they need; the activation
    and LayerNorm (after activation or not) we read."""
    n = helper.make_node
    c = {"sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5),
         "rsqrt2": np.float32(np.sqrt(0.5)), "three": np.float32(3),
         "k": np.float32(np.sqrt(2 / np.pi)), "cubic": np.float32(0.044715)}
    gamma, beta = RNG.uniform(0.5, 1.5, HIDDEN), RNG.standard_normal(HIDDEN) * 0.1
    variants = {
        "leaky-default-alpha": ([n("LeakyRelu", ["h"], ["a"])], {}, "leaky_relu(negative_slope=0.01)"),
        "leaky-0.3": ([n("LeakyRelu", ["h"], ["a"], alpha=0.3)], {}, "leaky_relu(negative_slope=0.3)"),
        "elu-0.5": ([n("Elu", ["h"], ["a"], alpha=0.5)], {}, "elu(alpha=0.5)"),
        "selu-explicit-defaults": ([n("Selu", ["h"], ["a"], alpha=1.67326319217681884765625,
                                      gamma=1.05070102214813232421875)], {}, "selu"),
        "hard-sigmoid-default": ([n("HardSigmoid", ["h"], ["a"])], {},
                                 "hard_sigmoid(slope=0.2, offset=0.5)"),
        "hard-sigmoid-0.25-0.4": ([n("HardSigmoid", ["h"], ["a"], alpha=0.25, beta=0.4)], {},
                                  "hard_sigmoid(slope=0.25, offset=0.4)"),
        "softplus": ([n("Softplus", ["h"], ["a"])], {}, "softplus"),
        "gelu-mul-rsqrt2": ([n("Mul", ["rsqrt2", "h"], ["d"]), n("Erf", ["d"], ["e"]),
                             n("Add", ["one", "e"], ["p"]), n("Mul", ["half", "h"], ["m"]),
                             n("Mul", ["p", "m"], ["a"])], c, "gelu"),
        "gelu-tanh-pow": ([n("Pow", ["h", "three"], ["cube"]),
                           n("Mul", ["cube", "cubic"], ["t"]), n("Add", ["h", "t"], ["s"]),
                           n("Mul", ["s", "k"], ["u"]), n("Tanh", ["u"], ["th"]),
                           n("Add", ["th", "one"], ["p"]), n("Mul", ["h", "half"], ["m"]),
                           n("Mul", ["m", "p"], ["a"])], c, "gelu_tanh"),
        "silu-sigmoid-first": ([n("Sigmoid", ["h"], ["s"]), n("Mul", ["s", "h"], ["a"])], {},
                               "silu"),
        "layernorm-no-bias-then-relu": (
            [n("LayerNormalization", ["h", "gamma"], ["l"], epsilon=1e-3),
             n("Relu", ["l"], ["a"])], {"gamma": gamma.astype(np.float32)}, ("relu", False)),
        "relu-then-layernorm": (
            [n("Relu", ["h"], ["r"]),
             n("LayerNormalization", ["r", "gamma", "beta"], ["a"], axis=1)],
            {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)},
            ("relu", True)),
        "batchnorm-then-tanh": (
            [n("BatchNormalization", ["h", "gamma", "beta", "mean", "var"], ["b"],
               epsilon=1e-3),
             n("Tanh", ["b"], ["a"])],
            {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32),
             "mean": RNG.standard_normal(HIDDEN).astype(np.float32),
             "var": RNG.uniform(0.5, 2, HIDDEN).astype(np.float32)}, "tanh"),
        "per-feature-scaling-then-sigmoid": (
            [n("Sub", ["h", "mean"], ["s"]), n("Div", ["s", "std"], ["d"]),
             n("Sigmoid", ["d"], ["a"])],
            {"mean": RNG.standard_normal(HIDDEN).astype(np.float32),
             "std": RNG.uniform(0.5, 2, (1, HIDDEN)).astype(np.float32)}, "sigmoid"),
        "dropout-opset12-and-identity": (
            [n("Relu", ["h"], ["r"]), n("Dropout", ["r", "ratio", "training"], ["d"]),
             n("Identity", ["d"], ["a"])],
            {"ratio": np.float32(0.5), "training": np.array(False)}, "relu"),
        "relu-then-scaling-into-next-layer": (
            [n("Relu", ["h"], ["r"]), n("Mul", ["r", "w"], ["m"]), n("Add", ["m", "t"], ["a"])],
            {"w": RNG.uniform(0.5, 2, HIDDEN).astype(np.float32), "t": np.float32(0.25)},
            "relu"),
    }
    return variants[variant]


@pytest.mark.parametrize("variant", [
    "leaky-default-alpha", "leaky-0.3", "elu-0.5", "selu-explicit-defaults",
    "hard-sigmoid-default", "hard-sigmoid-0.25-0.4", "softplus", "gelu-mul-rsqrt2",
    "gelu-tanh-pow", "silu-sigmoid-first", "layernorm-no-bias-then-relu",
    "relu-then-layernorm", "batchnorm-then-tanh", "per-feature-scaling-then-sigmoid",
    "dropout-opset12-and-identity", "relu-then-scaling-into-next-layer"])
def test_hidden_layer_forms_match_onnx_runtime(variant):
    nodes, constants, expected = hidden_variant(variant)
    activation, after = expected if isinstance(expected, tuple) else (expected, None)
    init = {"W1": (RNG.standard_normal((IN, HIDDEN)) / np.sqrt(IN)).astype(np.float32),
            "b1": RNG.standard_normal(HIDDEN).astype(np.float32),
            "W2": (RNG.standard_normal((HIDDEN, OUT)) / np.sqrt(HIDDEN)).astype(np.float32),
            "b2": RNG.standard_normal(OUT).astype(np.float32), **constants}
    model = model_of([helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1"),
                      *nodes,
                      helper.make_node("Gemm", ["a", "W2", "b2"], ["z"], name="fc2"),
                      helper.make_node("LogSoftmax", ["z"], ["y"], name="out")],
                     init, ["N", IN])
    network = from_onnx(model)
    assert network.activations == (activation, "log_softmax")
    assert (network.layers[0].norm is not None) == (after is not None)
    if after is not None:
        assert network.layers[0].norm_after_activation == after
    x = random_inputs(IN)
    for batch in (1, 7, 1000):
        assert_same_answers(network.predict(x[:batch]), runtime(model, x[:batch]))


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
         ("Mul at node #1 'square': the elementwise ops Mul on the running value are neither "
         "an activation nor a feature scaling")),
        (dense([helper.make_node("Relu", ["x"], ["y"], name="branch")]),
         ("Relu at node #1 'branch' reads 'x', a value from before the layer the chain has "
         "moved on to: only chains are supported")),
        (dense([helper.make_node("Relu", ["z"], ["a"], name="r1"),
                helper.make_node("Relu", ["a"], ["y"], name="r2")]),
         "Relu at node #2 'r2': activation relu applied to relu"),
        (dense([helper.make_node("Mul", ["z", "w"], ["y"], name="mul")],
               {"w": np.ones((2, 3), np.float32)}),
         (r"Mul at node #1 'mul': a constant of shape \(2, 3\) is neither one number nor one "
         "per feature")),
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
         ("BatchNormalization at node #1 'bn': supported only when it normalises a 2-D value "
         r"with its running statistics \(training_mode=0\)")),
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


# --------------------------------------------------------------------------- PyTorch's exports

TRAIN = 2000  # MNIST test images for a brief fit: a meaningful argmax, non-trivial BN statistics
EXPORTS = ["dynamo", "dynamo-dynamic", "dynamo-dynamic-axes", "legacy", "legacy-dynamic",
           "legacy-opset17"]


class FlattenByView:
    """``x.view(x.size(0), -1)`` in forward: the legacy exporter's Shape/Gather/Unsqueeze/
    Concat/Reshape pattern, the dynamo exporter's Reshape to (7, -1) or (-1, 784)."""

    def __new__(cls, nn):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = nn.Linear(784, 64), nn.Linear(64, 10)

            def forward(self, x):
                return self.fc2(nn.functional.relu(self.fc1(x.view(x.size(0), -1))))

        return Net()


# name -> (model of torch.nn, input shape after the batch, expected activations, LayerNorms
# (index of the layer, after its activation)).
TORCH_MODELS = {
    "linear-bn-gelu-dropout": (
        lambda nn: nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.GELU(),
                                 nn.Dropout(0.2), nn.Linear(64, 10)),
        (1, 28, 28), ("gelu", "identity"), {}),
    "gelu-tanh-silu": (
        lambda nn: nn.Sequential(nn.Linear(784, 64), nn.GELU("tanh"), nn.Linear(64, 32),
                                 nn.SiLU(), nn.Linear(32, 10)),
        (784,), ("gelu_tanh", "silu", "identity"), {}),
    "leaky-elu": (
        lambda nn: nn.Sequential(nn.Linear(784, 64), nn.LeakyReLU(0.1), nn.Linear(64, 32),
                                 nn.ELU(), nn.Linear(32, 10)),
        (784,), ("leaky_relu(negative_slope=0.1)", "elu(alpha=1.0)", "identity"), {}),
    "selu-softplus-logsoftmax": (
        lambda nn: nn.Sequential(nn.Linear(784, 64), nn.SELU(), nn.Linear(64, 32),
                                 nn.Softplus(), nn.Linear(32, 10), nn.LogSoftmax(-1)),
        (784,), ("selu", "softplus", "log_softmax"), {}),
    "hardsigmoid-layernorm-softmax": (
        lambda nn: nn.Sequential(nn.Linear(784, 64), nn.Hardsigmoid(), nn.Linear(64, 32),
                                 nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(-1)),
        (784,), ("hard_sigmoid(slope=0.16666667, offset=0.5)", "relu", "softmax"), {1: False}),
    "bn-on-input-and-after-activation": (
        lambda nn: nn.Sequential(nn.BatchNorm1d(784), nn.Linear(784, 64), nn.Tanh(),
                                 nn.BatchNorm1d(64), nn.Linear(64, 10), nn.Sigmoid()),
        (784,), ("tanh", "sigmoid"), {}),
    "layernorm-after-activation": (
        lambda nn: nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.LayerNorm(64),
                                 nn.Linear(64, 10)),
        (784,), ("relu", "identity"), {0: True}),
    "flatten-by-view": (FlattenByView, (1, 28, 28), ("relu", "identity"), {}),
}


@pytest.fixture(scope="module")
def torch_modules():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")  # the dynamo exporter's
    return torch


@pytest.fixture(scope="module")
def trained_torch_models(torch_modules, mnist):
    """Each model of TORCH_MODELS after 20 Adam steps on MNIST (BatchNorm statistics too)."""
    torch, nn = torch_modules, torch_modules.nn
    x, labels = mnist
    models = {}
    for name, (make, shape, _, _) in TORCH_MODELS.items():
        torch.manual_seed(0)
        model = make(nn)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        images = torch.from_numpy(x[:TRAIN].reshape(-1, *shape))
        targets = torch.from_numpy(labels[:TRAIN].astype(np.int64))
        model.train()
        for start in range(0, TRAIN, 100):
            optimizer.zero_grad()
            out = model(images[start:start + 100])
            last = model[-1] if isinstance(model, nn.Sequential) else None
            if isinstance(last, nn.Softmax | nn.Sigmoid):
                out = torch.log(out + 1e-7)
            loss = (nn.functional.nll_loss if isinstance(last, nn.LogSoftmax | nn.Softmax)
                    else nn.functional.cross_entropy)(out, targets[start:start + 100])
            loss.backward()
            optimizer.step()
        models[name] = model.eval()
    return models


def torch_export(torch, model, example, path, how):
    """``torch.onnx.export`` as a user calls it: the dynamo exporter by default (weights in
    ``path.data``), or the legacy one (``dynamo=False``); a fixed batch of 7, or a dynamic
    batch axis (``dynamic_shapes``, or ``dynamic_axes`` which both exporters take)."""
    kwargs: dict = {}
    if how.startswith("legacy"):
        kwargs["dynamo"] = False
    if how == "dynamo-dynamic":
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    if how in ("legacy-dynamic", "dynamo-dynamic-axes"):
        kwargs["input_names"] = ["input"]
        kwargs["dynamic_axes"] = {"input": {0: "batch"}}
    if how == "legacy-opset17":  # GELU as Div/Erf/Add/Mul/Mul, its tanh form in ten nodes
        kwargs["opset_version"] = 17
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation, tracer warnings
        torch.onnx.export(model, (example,), str(path), **kwargs)


def run_torch(torch, model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("how", EXPORTS)
@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_pytorch_export_loads_and_matches_pytorch_and_onnx_runtime(
        torch_modules, trained_torch_models, mnist, tmp_path, name, how):
    torch = torch_modules
    model = trained_torch_models[name]
    _, shape, activations, norms = TORCH_MODELS[name]
    x, labels = mnist
    path = tmp_path / f"{name}.onnx"
    torch_export(torch, model, torch.from_numpy(x[:7].reshape(-1, *shape)), path, how)
    if how.startswith("dynamo"):  # PyTorch's default: the weights beside the model
        assert (tmp_path / f"{name}.onnx.data").stat().st_size > 784 * 64 * 4
    network = mlpinfer.load(path)
    assert network.activations == activations
    # onnx.load reads the external data into the model: the same network from memory.
    assert_same_network(from_onnx(onnx.load(path)), network)
    assert {i: layer.norm_after_activation for i, layer in enumerate(network.layers)
            if layer.norm is not None} == norms
    for inputs in (x[:1000], random_inputs(784)):
        shaped = inputs.reshape(-1, *shape)
        assert_same_answers_at_batch_sizes([network], inputs, run_torch(torch, model, shaped))
        batches = (1, 7, 1000) if "dynamic" in how else (7,)  # a fixed batch runs 7 only
        for batch in batches:
            assert_same_answers(network.predict(inputs[:batch]),
                                runtime_file(path, shaped[:batch]))
    assert_not_degenerate(network.predict(x[:1000]), labels[:1000], 0.6)


def test_a_reshape_that_does_not_flatten_is_refused(torch_modules, tmp_path):
    torch, nn = torch_modules, torch_modules.nn

    class Halves(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(392, 10)

        def forward(self, x):
            return self.fc(x.view(-1, 392))  # two rows per image

    for how in ("legacy-dynamic", "dynamo-dynamic"):
        path = tmp_path / f"{how}.onnx"
        torch_export(torch, Halves().eval(), torch.zeros(7, 784), path, how)
        with pytest.raises(UnsupportedModelError,
                           match=r"Reshape at node #\d+ '.*': supported only when it reshapes "
                                 r"to \(batch, 784\) \(target \[-1, 392\]\)"):
            mlpinfer.load(path)


def test_a_skip_connection_is_refused_by_node(torch_modules, tmp_path):
    torch, nn = torch_modules, torch_modules.nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(x + torch.relu(self.fc1(x)))

    for how in ("legacy-dynamic", "dynamo-dynamic"):
        path = tmp_path / f"{how}.onnx"
        torch_export(torch, Residual().eval(), torch.zeros(7, 16), path, how)
        with pytest.raises(UnsupportedModelError, match=r"Add at node #\d+ '.*' reads '.*', a "
                                                        "value from before the layer"):
            mlpinfer.load(path)


def test_untrained_batchnorm_reads_its_statistics_through_identity_nodes(torch_modules,
                                                                          tmp_path):
    """A fresh BatchNorm1d's running mean and variance equal its bias and weight (0 and 1):
    the legacy exporter then writes them as Identity nodes of those initializers, which
    the running value does not flow through (issue 14's 'Identity node' failure)."""
    torch, nn = torch_modules, torch_modules.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.BatchNorm1d(30), nn.GELU(), nn.Dropout(0.2),
                          nn.Linear(30, 5)).eval()
    path = tmp_path / "fresh.onnx"
    torch_export(torch, model, torch.zeros(7, 20), path, "legacy-dynamic")
    assert "Identity" in [node.op_type for node in onnx.load(path).graph.node]
    network = mlpinfer.load(path)
    assert network.activations == ("gelu", "identity")
    x = random_inputs(20)
    assert_same_answers_at_batch_sizes([network], x, run_torch(torch, model, x))
    assert_same_answers(network.predict(x), runtime_file(path, x))
