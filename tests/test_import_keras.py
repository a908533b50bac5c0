"""Keras 3 models and .keras files -> Network, checked against Keras itself (torch backend)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from framework_support import assert_not_degenerate, assert_same_answers

from mlpinfer.importers import UnsupportedModelError, from_keras, load_keras, save_keras, to_keras

# TensorFlow is too heavy for CI; Keras reads its backend once, at its first import.
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
layers = keras.layers

# Keras's torch backend converts tensors with np.array(tensor) inside predict() and save(),
# which NumPy 2 deprecates for torch's __array__; that is Keras's to fix, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

TRAIN = 3000  # images of the test set used for a brief fit: enough for a meaningful argmax


def run(model, x):
    return np.asarray(model.predict(x, batch_size=1000, verbose=0))


@pytest.fixture(scope="module")
def relu_softmax(mnist_test):
    """The source material's Keras 784-512 relu -> 10 softmax, on raw pixels, trained briefly."""
    images, labels = mnist_test
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28)),
        layers.Rescaling(1 / 255),
        layers.Flatten(),
        layers.Dense(512, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images[:TRAIN].astype(np.float32), labels[:TRAIN], epochs=1, batch_size=100,
              verbose=0)
    return model


def test_relu_softmax_matches_keras_on_mnist(relu_softmax, mnist_test):
    images, labels = mnist_test
    network = from_keras(relu_softmax)
    assert network.activations == ("relu", "softmax")
    assert network.input_scale == pytest.approx(1 / 255)
    theirs = run(relu_softmax, images.astype(np.float32))
    ours = network.predict(images)  # uint8 pixels, scaled by the recorded 1/255
    assert_same_answers(ours, theirs)
    assert_same_answers(network.predict(images.astype(np.float32)), theirs)
    assert_not_degenerate(ours, labels, 0.8)


def test_keras_file_round_trip(relu_softmax, mnist_test, tmp_path):
    images = mnist_test[0][:500]
    path = tmp_path / "model.keras"
    relu_softmax.save(path)
    network = load_keras(path)
    assert_same_answers(network.predict(images), run(relu_softmax, images.astype(np.float32)))
    back = tmp_path / "back.keras"
    save_keras(network, back)
    assert_same_answers(network.predict(images),
                        run(keras.saving.load_model(back),
                            images.reshape(-1, 784).astype(np.float32)))


def test_functional_logits_chain_with_activation_layers(mnist):
    x, _ = mnist
    keras.utils.set_random_seed(1)
    inputs = keras.Input((784,))
    h = layers.Activation("relu")(layers.Dense(256)(inputs))
    h = layers.Dense(256, activation="relu")(h)
    outputs = layers.Dense(10, activation="linear")(h)
    model = keras.Model(inputs, outputs)
    network = from_keras(model)
    assert network.activations == ("relu", "relu", "identity")
    assert network.input_scale is None
    assert_same_answers(network.predict(x), run(model, x))


def test_rescaling_offset_and_no_bias_are_folded(mnist_test):
    images = mnist_test[0][:1000].astype(np.float32)
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((28, 28)), layers.Flatten(), layers.Rescaling(1 / 127.5, offset=-1.0),
        layers.Dense(30, activation="tanh", use_bias=False), layers.Dense(10),
        layers.Activation("softmax"),
    ])
    network = from_keras(model)
    assert network.activations == ("tanh", "softmax")
    assert_same_answers(network.predict(images), run(model, images))


@pytest.mark.parametrize(
    ("gate", "weights", "truth"),
    [
        ("AND", [(np.array([[20.0], [20.0]]), np.array([-30.0]))], [0, 0, 0, 1]),
        ("OR", [(np.array([[20.0], [20.0]]), np.array([-10.0]))], [0, 1, 1, 1]),
        ("NAND", [(np.array([[-20.0], [-20.0]]), np.array([30.0]))], [1, 1, 1, 0]),
        ("XOR", [(np.array([[-20.0, 20.0], [-20.0, 20.0]]), np.array([30.0, -10.0])),
                 (np.array([[20.0], [20.0]]), np.array([-30.0]))], [0, 1, 1, 0]),
    ],
)
def test_logic_gates(gate, weights, truth):
    dense = [layers.Dense(w.shape[1], activation="sigmoid") for w, _ in weights]
    model = keras.Sequential([keras.Input((2,)), *dense])
    for layer, (w, b) in zip(dense, weights, strict=True):
        layer.set_weights([w.astype(np.float32), b.astype(np.float32)])
    network = from_keras(model)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    assert_same_answers(network.predict(x), run(model, x))
    np.testing.assert_array_equal(network.classify(x), truth, err_msg=gate)


def test_to_keras_keeps_the_input_scale(mnist_test):
    images = mnist_test[0][:300]
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((784,)), layers.Rescaling(0.5),
                              layers.Dense(10, activation="sigmoid")])
    network = from_keras(model)
    assert_same_answers(network.predict(images.reshape(-1, 784)),
                        run(to_keras(network), images.reshape(-1, 784).astype(np.float32)))


# --------------------------------------------------------------------------- refusals

def sequential(*body, shape=(4,)):
    return keras.Sequential([keras.Input(shape), *body])


def branching():
    inputs = keras.Input((4,))
    a, b = layers.Dense(3)(inputs), layers.Dense(3)(inputs)
    return keras.Model(inputs, layers.Add()([a, b]))


def rescaled_late():
    return sequential(layers.Dense(3, activation="relu"), layers.Rescaling(2.0))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: sequential(layers.Conv2D(2, 3), shape=(8, 8, 1)),
         r"unsupported layer Conv2D at layer 'conv2d.*' \(Conv2D\)"),
        (lambda: sequential(layers.Dense(3), layers.BatchNormalization()),
         "unsupported layer BatchNormalization"),
        (lambda: sequential(layers.Dense(3), layers.LeakyReLU()), "unsupported layer LeakyReLU"),
        (lambda: sequential(layers.Dense(3), layers.Softmax()), "unsupported layer Softmax"),
        (lambda: sequential(layers.Dense(3, activation="elu")), "unsupported activation 'elu'"),
        (lambda: sequential(layers.Dense(3, activation=lambda v: v)),
         "unsupported activation '<lambda>'"),
        (lambda: sequential(layers.Dense(3), layers.Activation("relu"),
                            layers.Activation("relu")), "activation relu applied to relu"),
        (rescaled_late, "Rescaling after a Dense layer"),
        (lambda: sequential(layers.Rescaling([1.0, 2.0, 3.0, 4.0]), layers.Dense(3)),
         "per-channel scale"),
        (lambda: sequential(layers.Dense(3), shape=(5, 4)), r"input of shape \(None, 5, 4\)"),
        (lambda: sequential(layers.Flatten(data_format="channels_first"), layers.Dense(3),
                            shape=(2, 2, 1)), "channels_first"),
        (lambda: sequential(layers.Dense(3, dtype="mixed_float16")),
         "dtype policy 'mixed_float16' computes in float16"),
        (branching, "unsupported layer Add|does not take the previous layer's output"),
        (lambda: keras.Sequential([layers.Dense(3)]), "is not built"),
    ],
)
def test_refuses_what_it_cannot_run_naming_it(build, message):
    with pytest.raises(UnsupportedModelError, match=message):
        from_keras(build())


def test_a_lambda_layer_file_is_refused_without_resolving_it(tmp_path):
    path = tmp_path / "lambda.keras"
    sequential(layers.Dense(3), layers.Lambda(lambda v: v * 2)).save(path)
    with pytest.raises(UnsupportedModelError,
                       match=r"lambda.keras: .*'__lambda__'.* custom code is never loaded"):
        load_keras(path)
