"""The input transform through the Keras and PyTorch readers and writers: Keras
``Normalization`` on raw features with large means imports as the exact transform, a
network with a transform is written to ``.keras`` as Normalization layers (read back and
checked in Keras), and the ``.pt`` bundle, which cannot say it, refuses it by name."""

from __future__ import annotations

import os

import numpy as np
import pytest
from framework_support import assert_same_answers

import mlpinfer
from mlpinfer import WeightsError, reference
from mlpinfer.importers import from_keras, to_keras

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

# As in tests/test_import_keras.py: Keras's torch backend, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def year_features(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nine features near 2000 with spreads 5..15 (200 spreads from 0), float32."""
    rng = np.random.default_rng(seed)
    mean = 2000 + 30 * rng.standard_normal(9)
    spread = rng.uniform(5, 15, 9)
    x = (mean + rng.standard_normal((rows, 9)) * spread).astype(np.float32)
    return x, mean, spread


def year_network(input_scale=None) -> mlpinfer.Network:
    """(x * input_scale - mean) / spread of `year_features`, then 16 tanh, 3 softmax."""
    rng = np.random.default_rng(1)
    _, mean, spread = year_features(1)
    layers = [mlpinfer.Layer(rng.standard_normal((9, 16)) / 3, rng.standard_normal(16), "tanh"),
              mlpinfer.Layer(rng.standard_normal((16, 3)) / 4, rng.standard_normal(3), "softmax")]
    return mlpinfer.Network(layers, input_scale=input_scale,
                            input_transform=mlpinfer.InputTransform(mean, 1 / spread))


def run(model, x):
    return np.asarray(model.predict(x, batch_size=1000, verbose=0))


@pytest.mark.parametrize("adapted", [False, True])
def test_keras_normalization_far_from_zero_imports_exactly(adapted):
    """Folded into the Dense, this Normalization cancelled in float32 and was refused."""
    x, mean, spread = year_features(1000)
    normalization = (keras.layers.Normalization() if adapted
                     else keras.layers.Normalization(mean=mean, variance=spread**2))
    if adapted:
        normalization.adapt(x)
    model = keras.Sequential([keras.Input((9,)), normalization,
                              keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(3, activation="softmax")])
    network = from_keras(model)
    assert network.input_transform is not None
    theirs = run(model, x)
    for rows in (1, 7, 1000):
        assert_same_answers(network.predict(x[:rows]), theirs[:rows])


@pytest.mark.parametrize("pixels", [False, True])
def test_a_transform_is_written_to_keras_as_normalization_layers(tmp_path, pixels):
    """Year features (200 spreads from 0), or pixels / 255 standardised (a Rescaling
    before the Normalization: x / 255 is near 0, where float32 rounds it finely)."""
    network = year_network()
    x, _, _ = year_features(1000, seed=2)
    scale = 1.0
    if pixels:
        rng = np.random.default_rng(3)
        scale = 1 / 255
        network = mlpinfer.Network(network.layers, input_scale=scale,
                                   input_transform=mlpinfer.InputTransform(
                                       rng.uniform(0.3, 0.6, 9), 1 / rng.uniform(0.2, 0.4, 9)))
        x = rng.integers(0, 256, (1000, 9)).astype(np.float32)
    expected = reference.forward(network.layers, x, scale, input_transform=network.input_transform)
    model = to_keras(network)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[-4:] == ["Normalization", "Normalization", "Dense", "Dense"]
    theirs = run(model, x)
    for rows in (1, 7, 1000):
        assert_same_answers(theirs[:rows], expected[:rows])
    path = tmp_path / "net.keras"
    mlpinfer.save(network, path)
    loaded = mlpinfer.load(path)
    assert loaded.input_scale == network.input_scale
    assert_same_answers(loaded.predict(x), expected)


@pytest.mark.parametrize(("multiplier", "message"), [
    (-0.1, "a multiplier of -0.1 at feature 0"),
    (0.0, "a multiplier of 0 at feature 0"),
])
def test_keras_refuses_a_transform_normalization_cannot_say(tmp_path, multiplier, message):
    base = year_network()
    factors = base.input_transform.multiplier.copy()
    factors[0] = multiplier
    network = mlpinfer.Network(base.layers, input_transform=mlpinfer.InputTransform(
        base.input_transform.shift, factors))
    with pytest.raises(WeightsError, match=f"Keras's Normalization.*{message}"):
        mlpinfer.save(network, tmp_path / "net.keras")
    assert list(tmp_path.iterdir()) == []


def test_keras_refuses_an_input_scale_that_would_round_far_from_zero(tmp_path):
    """Rescaling rounds x * scale to float32 before Normalization subtracts: 200 spreads
    from 0 cost 1e-5 of a spread."""
    with pytest.raises(WeightsError, match="float32 before the Normalization"):
        mlpinfer.save(year_network(input_scale=0.5), tmp_path / "net.keras")
    assert list(tmp_path.iterdir()) == []


def test_the_pt_bundle_refuses_an_input_transform(tmp_path):
    pytest.importorskip("torch")
    from mlpinfer.importers import to_torch

    network = year_network()
    with pytest.raises(WeightsError, match=r"PyTorch.*no input transform.*\.npz, \.onnx or \.keras"):
        mlpinfer.save(network, tmp_path / "net.pt")
    with pytest.raises(WeightsError, match="no input transform"):
        to_torch(network)
    assert list(tmp_path.iterdir()) == []


def test_keras_normalization_adapted_on_mnist_columns_imports(mnist_test):
    """Normalization over the last axis of 28 x 28 pixels / 255, adapted on them: its
    nearly constant edge columns make multipliers up to 710, the pixels up to 158 spreads
    from 0. Measured against Keras (Sapphire Rapids Xeon): 6.6e-7 of the output scale with
    the input transform, 6.1e-6 folded into the Dense (as before the transform)."""
    images = mnist_test[0][:1000].astype(np.float32) / 255
    images += np.linspace(0, 1, 28, dtype=np.float32)  # no column of zeros
    keras.utils.set_random_seed(19)
    norm = keras.layers.Normalization()
    norm.adapt(images)
    model = keras.Sequential([keras.Input((28, 28)), norm, keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    network = from_keras(model)
    assert np.max(network.input_transform.multiplier) > 100
    theirs = run(model, images)
    for rows in (1, 7, 1000):
        assert_same_answers(network.predict(images[:rows]), theirs[:rows])
