"""Network.to_onnx, checked by running the exported file in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from framework_support import assert_same_answers, assert_same_network, mnist_floats

import mlpinfer
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
    network.to_onnx(path)
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
    network.to_onnx(path)
    x = rng.random((123, 40), dtype=np.float32) * 255
    # Unscaled pixels through a random identity chain make outputs of about 200.
    assert_same_answers(network.predict(x), run_exported(path, x))
    # ONNX holds the scale as float32, which is also what the engine multiplies by.
    assert_same_network(from_onnx(path), network)


def test_export_is_atomic_and_leaves_no_temporary(tmp_path):
    network = mlpinfer.Network.from_params({"W1": np.ones((2, 1)), "b1": np.zeros(1)},
                                           activations=["sigmoid"])
    network.to_onnx(tmp_path / "gate.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["gate.onnx"]
