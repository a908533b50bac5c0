"""The networks and the sample that ship inside the package, reached by name."""

from __future__ import annotations

import os

import numpy as np
import pytest

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer._shipped import NETWORKS, load_digits_sample, network_path

TRUTH_TABLES = {
    "and": [0, 0, 0, 1],
    "or": [0, 1, 1, 1],
    "nand": [1, 1, 1, 0],
    "xor": [0, 1, 1, 0],
}
GATE_INPUTS = [[0, 0], [1, 0], [0, 1], [1, 1]]


def test_every_shipped_network_is_installed_and_loads():
    for name in NETWORKS:
        assert network_path(name).is_file(), f"{name} is not installed with the package"
        assert mlpinfer.load(name).n_outputs >= 1


@pytest.mark.parametrize("gate", list(TRUTH_TABLES))
def test_logic_gates_classify_their_truth_tables(gate):
    network = mlpinfer.load(gate)
    assert network.activations[-1] == "sigmoid"
    assert network.n_outputs == 1
    np.testing.assert_array_equal(network.classify(GATE_INPUTS), TRUTH_TABLES[gate])
    outputs = network.predict(GATE_INPUTS)[:, 0]
    assert np.all((outputs < 0.1) | (outputs > 0.9)), f"{gate} outputs lack margin: {outputs}"


def test_xor_needs_its_hidden_layer():
    assert repr(mlpinfer.load("xor")) == "Network(2 -> 2 sigmoid -> 1 sigmoid)"


def test_embedded_sample_is_100_digits_per_class():
    images, labels = load_digits_sample()
    assert images.shape == (1000, 28, 28)
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [100] * 10)


def test_digits_network_on_the_real_mnist_test_set(mnist_test):
    images, labels = mnist_test
    network = mlpinfer.load("digits")
    assert repr(network) == "Network(784 -> 50 sigmoid -> 100 sigmoid -> 10 softmax)"
    accuracy = network.accuracy(images, labels)
    assert accuracy >= 0.91, f"digits network: {accuracy} on MNIST test, weights/README says 0.9722"


def test_digits_network_on_the_embedded_sample():
    images, labels = load_digits_sample()
    assert mlpinfer.load("digits").accuracy(images, labels) >= 0.95


def test_fashion_network_on_the_fashion_mnist_test_set():
    from mlpinfer.datasets import SYSTEM_DIRS, load_directory

    folder = SYSTEM_DIRS["fashion-mnist"][0]
    if not folder.is_dir():
        missing = f"{folder} missing: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI"):
            pytest.fail(missing + " (.ci/run installs it)")
        pytest.skip(missing)
    images, labels = load_directory(folder, "test")
    network = mlpinfer.load("fashion")
    assert repr(network) == "Network(784 -> 10 softmax)"
    assert network.accuracy(images, labels) >= 0.83


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(WeightsError, match="shipped: digits, fashion, and, or, nand, xor"):
        mlpinfer.load("resnet50")
