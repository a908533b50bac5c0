"""mlpinfer.save to .onnx, checked by running the exported file in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from framework_support import (
    assert_same_answers,
    assert_same_network,
    mnist_floats,
    random_inputs,
)

import mlpinfer
from mlpinfer import reference
from mlpinfer.importers import from_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_exported(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: x})[0]


def test_textbook_network_exports_and_runs_in_onnx_runtime(sample_weight_path, mnist_test,
                                                            tmp_path):
    x, labels = mnist_floats(mnist_test)
    network = mlpinfer.load(sample_weight_path)
    path = tmp_path / "textbook.onnx"
    mlpinfer.save(network, path)
    onnx.checker.check_model(onnx.load(path))
    theirs = run_exported(path, x)
    assert_same_answers(network.predict(x), theirs)
    assert float(np.mean(np.argmax(theirs, axis=1) == labels)) == pytest.approx(0.9352)


@pytest.mark.parametrize("activations", [
    ["relu", "relu", "identity"], ["tanh", "sigmoid", "sigmoid"], ["identity", "relu", "softmax"],
])
@pytest.mark.parametrize("input_scale", [None, 1 / 255, 0.5])
def test_every_activation_and_input_scale_round_trip(tmp_path, activations, input_scale):
    rng = np.random.default_rng(7)
    sizes = [40, 50, 30, 7]  # awkward sizes
    params = {}
    for i in range(3):
        params[f"W{i + 1}"] = rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])
        params[f"b{i + 1}"] = rng.standard_normal(sizes[i + 1])
    network = mlpinfer.Network.from_params(params, activations=activations,
                                           input_scale=input_scale)
    path = tmp_path / "net.onnx"
    mlpinfer.save(network, path)
    x = rng.random((123, 40), dtype=np.float32) * 255
    # Unscaled pixels through a random identity chain make outputs of about 200.
    assert_same_answers(network.predict(x), run_exported(path, x))
    # ONNX holds the scale as float32, which is also what the engine multiplies by.
    assert_same_network(from_onnx(path), network)


def test_export_is_atomic_and_leaves_no_temporary(tmp_path):
    network = mlpinfer.Network.from_params({"W1": np.ones((2, 1)), "b1": np.zeros(1)},
                                           activations=["sigmoid"])
    mlpinfer.save(network, tmp_path / "gate.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["gate.onnx"]


# Every activation, as `_activations` writes it down, with parameters where it takes them.
EVERY_ACTIVATION = ["identity", "sigmoid", "relu", "tanh", "leaky_relu(negative_slope=0.01)",
                    "leaky_relu(negative_slope=0.2)", "elu(alpha=1.0)", "elu(alpha=0.5)",
                    "selu", "gelu", "gelu_tanh", "silu", "softplus",
                    "hard_sigmoid(slope=0.2, offset=0.5)",
                    "hard_sigmoid(slope=0.16666667, offset=0.5)"]


def network_of(activations, *, norms=None, input_scale=None, sizes=(40, 50, 30, 7), seed=7):
    """Layers of awkward sizes with ``activations``; ``norms``: layer index -> whether its
    LayerNorm comes after the activation."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, activation in enumerate(activations):
        w = rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])
        norm = None
        if norms is not None and i in norms:
            norm = mlpinfer.LayerNorm(rng.uniform(0.5, 1.5, sizes[i + 1]),
                                      rng.standard_normal(sizes[i + 1]) * 0.1, 1e-5)
        layers.append(mlpinfer.Layer(w, rng.standard_normal(sizes[i + 1]) * 0.1, activation,
                                     norm, bool(norms and norms.get(i))))
    return mlpinfer.Network(layers, input_scale=input_scale)


@pytest.mark.parametrize("activation", EVERY_ACTIVATION)
@pytest.mark.parametrize("last", ["identity", "softmax", "log_softmax"])
def test_every_activation_runs_in_onnx_runtime_and_reads_back_bit_identical(
        tmp_path, activation, last):
    network = network_of([activation, activation, last])
    path = tmp_path / "net.onnx"
    mlpinfer.save(network, path)
    x = random_inputs(40)
    for batch in (1, 7, 1000):
        assert_same_answers(network.predict(x[:batch]), run_exported(path, x[:batch]))
    assert_same_network(from_onnx(path), network)


@pytest.mark.parametrize("norms", [{0: False}, {0: True, 1: False}, {0: False, 1: True, 2: False},
                                   {1: True}])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
def test_layer_norms_run_in_onnx_runtime_and_read_back_bit_identical(tmp_path, norms, activation):
    network = network_of([activation, activation, "softmax"], norms=norms, input_scale=1 / 255)
    path = tmp_path / "net.onnx"
    mlpinfer.save(network, path)
    x = random_inputs(40) * 100
    for batch in (1, 7, 1000):
        assert_same_answers(network.predict(x[:batch]), run_exported(path, x[:batch]))
    assert_same_network(from_onnx(path), network)


def test_large_networks_are_written_self_contained(tmp_path):
    """Every weight inside the .onnx (ONNX tools write external data from 1 KB on; we never
    do): nothing beside the file, no tensor marked external."""
    network = network_of(["gelu", "relu"], sizes=(784, 1024, 10), norms={0: False})
    path = tmp_path / "big.onnx"
    mlpinfer.save(network, path)
    assert [p.name for p in tmp_path.iterdir()] == ["big.onnx"]
    model = onnx.load(path, load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.DEFAULT and not t.external_data
               for t in model.graph.initializer)
    assert_same_network(mlpinfer.load(path), network)


@pytest.mark.parametrize(("input_scale", "pixel_scale"), [(None, "auto"), (0.5, "auto"),
                                                          (1 / 255, 1 / 255), (None, 1.0)])
def test_an_input_transform_runs_in_onnx_runtime_and_reads_back(tmp_path, input_scale,
                                                                 pixel_scale):
    """Features near 2000 with spreads near 10 (a year): ONNX Runtime computes the Sub,
    Sub, Mul in float32 and stays within the bound of the engine, which computes the
    transform in float64; read back, the network computes the same."""
    rng = np.random.default_rng(11)
    base = network_of(["tanh", "relu", "softmax"])
    scale = 1.0 if input_scale is None else input_scale
    transform = mlpinfer.InputTransform(2000 + 30 * rng.standard_normal(40),
                                        1 / rng.uniform(5, 15, 40))
    network = mlpinfer.Network(base.layers, input_scale=input_scale, pixel_scale=pixel_scale,
                               input_transform=transform)
    path = tmp_path / "net.onnx"
    mlpinfer.save(network, path)
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert ops[:4] == ["Sub", "Sub", "Mul", "Gemm"]
    x = ((transform.shift + rng.standard_normal((1000, 40)) / transform.multiplier)
         / scale).astype(np.float32)
    expected = reference.forward(network.layers, x, scale, input_transform=transform)
    for rows in (1, 7, 1000):
        assert_same_answers(run_exported(path, x[:rows]), expected[:rows])
        assert_same_answers(network.predict(x[:rows]), expected[:rows])
    loaded = from_onnx(path)
    assert loaded.input_transform is not None
    assert_same_answers(loaded.predict(x), expected)
    if network.pixel_scale is not None:
        pixels = rng.integers(0, 256, (50, 40), dtype=np.uint8)
        np.testing.assert_allclose(loaded.predict(pixels), network.predict(pixels), atol=1e-6)
