"""Keras 3 models and .keras files -> Network, checked against Keras itself (torch backend)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from framework_support import (
    assert_not_degenerate,
    assert_same_answers,
    assert_same_answers_at_batch_sizes,
    assert_same_network,
    random_inputs,
)

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


# --------------------------------------------------------------------------- issue 14

def assert_loads_as_keras_runs(model, x, tmp_path):
    """The model imported and its saved file loaded are the same network, and it agrees
    with Keras at batch sizes 1, 7 and 1,000."""
    network = from_keras(model)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_keras(path)
    assert_same_network(loaded, network)
    assert_same_answers_at_batch_sizes((network, loaded), x, run(model, x))
    return network


def set_moving_stats(layer, seed):
    """Nontrivial moving statistics (and gamma/beta), as training would leave them."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in layer.weights:
        size = variable.shape
        name = variable.path.rsplit("/", 1)[-1]
        values.append({"gamma": rng.uniform(0.5, 2.0, size), "beta": rng.normal(0, 0.5, size),
                       "moving_mean": rng.normal(0, 0.5, size),
                       "moving_variance": rng.uniform(0.2, 3.0, size)}[name].astype(np.float32))
    layer.set_weights(values)


def test_keras_defaults_are_what_the_reader_writes_down():
    """Keras 3 spells no parameter in a config for these: the reader's constants must be
    the installed Keras's own defaults."""
    import inspect

    assert inspect.signature(keras.activations.leaky_relu).parameters[
        "negative_slope"].default == 0.2
    assert inspect.signature(keras.activations.gelu).parameters["approximate"].default is False
    assert layers.LeakyReLU().negative_slope == 0.3
    x = np.linspace(-4, 4, 81, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(keras.activations.hard_sigmoid(x)),
                               np.clip(x / 6 + 0.5, 0, 1), atol=1e-7)
    assert keras.activations.get("swish") is keras.activations.silu


HIDDEN_ACTIVATIONS = ["relu", "sigmoid", "tanh", "linear", "leaky_relu", "elu", "selu", "gelu",
                      "silu", "swish", "softplus", "hard_sigmoid"]


@pytest.mark.parametrize("name", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("inputs", ["mnist", "random"])
def test_activation_names_match_keras(name, inputs, mnist, tmp_path):
    x = mnist[0][:1000] if inputs == "mnist" else random_inputs(784)
    keras.utils.set_random_seed(10)
    model = sequential(layers.Dense(48, activation=name), layers.Dense(10, activation=name),
                       shape=(784,))
    network = assert_loads_as_keras_runs(model, x, tmp_path)
    assert network.activations[0].split("(")[0] == {"linear": "identity", "swish": "silu"}.get(
        name, name)


@pytest.mark.parametrize("output", ["softmax", "log_softmax"])
def test_row_activations_match_keras(output, mnist, tmp_path):
    x = mnist[0][:1000]
    keras.utils.set_random_seed(11)
    model = sequential(layers.Dense(32, activation="gelu"), layers.Dense(10, activation=output),
                       shape=(784,))
    assert assert_loads_as_keras_runs(model, x, tmp_path).activations == ("gelu", output)


@pytest.mark.parametrize(
    ("layer", "activation"),
    [
        (lambda: layers.LeakyReLU(), "leaky_relu(negative_slope=0.3)"),
        (lambda: layers.LeakyReLU(negative_slope=0.05), "leaky_relu(negative_slope=0.05)"),
        (lambda: layers.ELU(alpha=0.5), "elu(alpha=0.5)"),
        (lambda: layers.ReLU(), "relu"),
        (lambda: layers.Activation("selu"), "selu"),
        (lambda: layers.Softmax(), "softmax"),
    ],
    ids=["LeakyReLU", "LeakyReLU-0.05", "ELU", "ReLU", "Activation", "Softmax"],
)
def test_activation_layers_match_keras(layer, activation, tmp_path):
    x = random_inputs(20)
    keras.utils.set_random_seed(12)
    model = sequential(layers.Dense(16), layer(), shape=(20,))
    assert assert_loads_as_keras_runs(model, x, tmp_path).activations == (activation,)


@pytest.mark.parametrize("options", [{}, {"center": False}, {"scale": False, "epsilon": 0.1}])
@pytest.mark.parametrize("inputs", ["mnist", "random"])
def test_batch_normalization_folds_wherever_it_stands(options, inputs, mnist, tmp_path):
    """Dense-BN-relu (into the Dense before), Dense(relu)-BN-Dense (into the Dense after)
    and BN on the input (into the first Dense), with trained-looking moving statistics."""
    x = mnist[0][:1000] if inputs == "mnist" else random_inputs(784)
    keras.utils.set_random_seed(13)
    norms = [layers.BatchNormalization(**options) for _ in range(3)]
    model = sequential(norms[0], layers.Dense(64), norms[1], layers.Activation("relu"),
                       layers.Dense(32, activation="relu"), norms[2], layers.Dropout(0.3),
                       layers.Dense(10, activation="softmax"), shape=(784,))
    for seed, norm in enumerate(norms):
        set_moving_stats(norm, seed)
    network = assert_loads_as_keras_runs(model, x, tmp_path)
    assert network.activations == ("relu", "relu", "softmax")


@pytest.mark.parametrize("options", [{}, {"center": False, "epsilon": 1e-5}, {"scale": False}])
@pytest.mark.parametrize("inputs", ["mnist", "random"])
def test_layer_normalization_before_and_after_the_activation(options, inputs, mnist, tmp_path):
    x = mnist[0][:1000] if inputs == "mnist" else random_inputs(784)
    keras.utils.set_random_seed(14)
    before, after = layers.LayerNormalization(**options), layers.LayerNormalization(**options)
    model = sequential(layers.Dense(64), before, layers.Activation("silu"),
                       layers.Dense(32, activation="gelu"), after, layers.Dense(10),
                       shape=(784,))
    for norm in (before, after):
        rng = np.random.default_rng(len(norm.weights))
        norm.set_weights([rng.normal(1.0, 0.3, w.shape).astype(np.float32) for w in norm.weights])
    network = assert_loads_as_keras_runs(model, x, tmp_path)
    assert [layer.norm_after_activation for layer in network.layers if layer.norm] == [False, True]


def test_functional_chain_of_normalization_layers(tmp_path):
    x = random_inputs(20)
    keras.utils.set_random_seed(20)
    inputs = keras.Input((20,))
    norm = layers.BatchNormalization()
    h = layers.Activation("elu")(norm(layers.Dense(16)(inputs)))
    outputs = layers.LayerNormalization()(layers.Dense(8, activation="selu")(h))
    model = keras.Model(inputs, layers.Dense(3, activation="log_softmax")(outputs))
    set_moving_stats(norm, 6)
    network = assert_loads_as_keras_runs(model, x, tmp_path)
    assert network.activations == ("elu(alpha=1.0)", "selu", "log_softmax")


def test_normalization_adapted_on_mnist(mnist_test, tmp_path):
    images = mnist_test[0][:1000].reshape(-1, 784).astype(np.float32)
    keras.utils.set_random_seed(15)
    norm = layers.Normalization()
    norm.adapt(images)
    model = sequential(norm, layers.Dense(64, activation="relu"), layers.Dense(10),
                       shape=(784,))
    network = assert_loads_as_keras_runs(model, images, tmp_path)
    assert network.input_scale is None


def test_normalization_with_given_statistics_and_rescaling(tmp_path):
    x = random_inputs(6)
    keras.utils.set_random_seed(16)
    model = sequential(
        layers.Normalization(mean=[0.5, -1.0, 2.0, 0.0, 1.0, 3.0],
                             variance=[4.0, 0.25, 1.0, 2.0, 9.0, 0.5]),
        layers.Dense(8, activation="elu"),
        layers.Rescaling([0.5, 2.0, 1, 1, 1, 1, 1, 3.0], offset=0.25),
        layers.Dense(5), layers.Rescaling(3.0), shape=(6,))
    assert_loads_as_keras_runs(model, x, tmp_path)


def test_per_feature_layers_on_images_before_flatten(tmp_path):
    """BatchNormalization and Normalization over the last axis of 28 x 28 inputs act on
    each value by its column: broadcast over the rows, then flattened."""
    images = random_inputs(784).reshape(-1, 28, 28) + np.linspace(-1, 1, 28, dtype=np.float32)
    keras.utils.set_random_seed(19)
    norm, batch_norm = layers.Normalization(), layers.BatchNormalization()
    norm.adapt(images)
    model = sequential(norm, batch_norm, layers.Flatten(), layers.Dense(16, activation="relu"),
                       layers.Dense(10), shape=(28, 28))
    set_moving_stats(batch_norm, 5)
    assert_loads_as_keras_runs(model, images, tmp_path)


def test_no_op_layers_are_skipped(mnist_test, tmp_path):
    images = mnist_test[0][:1000].astype(np.float32)
    keras.utils.set_random_seed(17)
    model = sequential(layers.Rescaling(1 / 255), layers.Flatten(), layers.GaussianNoise(0.3),
                       layers.Dense(32, activation="tanh"), layers.Identity(),
                       layers.GaussianDropout(0.2), layers.AlphaDropout(0.2),
                       layers.Dense(10, activation="softmax"), shape=(28, 28))
    network = assert_loads_as_keras_runs(model, images, tmp_path)
    assert network.input_scale == pytest.approx(1 / 255)
    assert_same_answers(network.predict(mnist_test[0][:7]), run(model, images[:7]))  # uint8


def test_writes_every_activation_and_layer_norm_keras_can_say(tmp_path):
    from mlpinfer import Layer, Network
    from mlpinfer._network import LayerNorm

    rng = np.random.default_rng(18)
    widths = [12, 10, 9, 8, 7, 6, 5]
    hidden = ["gelu", "leaky_relu(negative_slope=0.1)", "elu(alpha=0.7)",
              "hard_sigmoid(slope=0.16666666666666666, offset=0.5)", "silu", "softplus"]
    built = []
    for index, (inputs, outputs) in enumerate(itertools.pairwise(widths)):
        norm = LayerNorm(rng.uniform(0.5, 1.5, outputs), rng.normal(0, 0.3, outputs), 1e-3) \
            if index in (1, 3) else None
        built.append(Layer(rng.normal(0, 0.5, (inputs, outputs)), rng.normal(0, 0.2, outputs),
                           hidden[index], norm, index == 3))
    built.append(Layer(rng.normal(0, 0.5, (5, 3)), np.zeros(3), "log_softmax"))
    network = Network(built)
    path = tmp_path / "written.keras"
    save_keras(network, path)
    x = random_inputs(12)
    theirs = run(keras.saving.load_model(path), x)
    assert_same_answers(network.predict(x), theirs)
    back = load_keras(path)
    assert back.activations == network.activations
    assert_same_answers(back.predict(x), theirs)


@pytest.mark.parametrize("activation", ["gelu_tanh", "hard_sigmoid(slope=0.2)"])
def test_writing_what_keras_cannot_say_is_refused(activation, tmp_path):
    from mlpinfer import Network, WeightsError

    network = Network.from_params({"W1": np.ones((3, 2)), "b1": np.zeros(2)},
                                  activations=[activation])
    with pytest.raises(WeightsError, match="Keras has no activation computing"):
        save_keras(network, tmp_path / "x.keras")
    assert not (tmp_path / "x.keras").exists()


# --------------------------------------------------------------------------- refusals

def sequential(*body, shape=(4,)):
    return keras.Sequential([keras.Input(shape), *body])


def branching():
    inputs = keras.Input((4,))
    a, b = layers.Dense(3)(inputs), layers.Dense(3)(inputs)
    return keras.Model(inputs, layers.Add()([a, b]))


def rms_scaling_layer_norm():
    with pytest.warns(UserWarning, match="rms_scaling=True"):  # Keras deprecates it
        return layers.LayerNormalization(rms_scaling=True)


def rescaled_late():
    return sequential(layers.Dense(3, activation="relu"), layers.Rescaling(2.0))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: sequential(layers.Conv2D(2, 3), shape=(8, 8, 1)),
         r"unsupported layer Conv2D at layer 0 'conv2d.*' \(Conv2D\); supported: Dense, "),
        (lambda: sequential(layers.Dense(3), layers.PReLU()),
         r"unsupported layer PReLU at layer 1 'p_re_lu.*' \(PReLU\); supported: .*LeakyReLU"),
        (lambda: sequential(layers.Dense(3, activation="relu"), layers.BatchNormalization()),
         (r"layer 1 'batch_normalization.*' \(BatchNormalization\): a feature scaling after "
         r"the last activation.*folds into the dense layer before it")),
        (lambda: sequential(layers.Dense(3), rms_scaling_layer_norm()),
         (r"layer 1 'layer_normalization.*' \(LayerNormalization\): rms_scaling=True.*"
         "supported: LayerNormalization with rms_scaling=False")),
        (lambda: sequential(layers.LayerNormalization(), layers.Dense(3)),
         (r"layer 0 'layer_normalization.*' \(LayerNormalization\): a LayerNorm on the input"
         r".*supported on a dense layer's outputs")),
        (lambda: sequential(layers.Normalization(mean=0.0, variance=1.0, invert=True),
                            layers.Dense(3)),
         r"layer 0 'normalization.*' \(Normalization\): invert=True.*supported: "),
        (lambda: sequential(layers.Dense(3), layers.ReLU(max_value=6.0)),
         r"layer 1 're_lu.*' \(ReLU\): max_value=6.0; only ReLU with its default options"),
        (lambda: sequential(layers.Dense(3), layers.Softmax(axis=0)), r"axis=0; only the last"),
        (lambda: sequential(layers.Dense(3, activation="relu6")),
         r"layer 0 'dense.*' \(Dense\): unsupported activation 'relu6'; supported: relu, "),
        (lambda: sequential(layers.Dense(3, activation=lambda v: v)),
         "unsupported activation '<lambda>'"),
        (lambda: sequential(layers.Dense(3), layers.Activation("relu"),
                            layers.Activation("relu")), "activation relu applied to relu"),
        (rescaled_late,
         "a feature scaling after the last activation.*folds into the dense layer before it"),
        (lambda: sequential(layers.Rescaling([1.0, 2.0, 3.0]), layers.Dense(3)),
         r"values of shape \(3,\); expected numbers broadcasting over the input \(None, 4\)"),
        (lambda: sequential(layers.Dense(3), shape=(5, 4)), r"input of shape \(None, 5, 4\)"),
        (lambda: sequential(layers.Flatten(data_format="channels_first"), layers.Dense(3),
                            shape=(2, 2, 1)), "channels_first"),
        (lambda: sequential(layers.Dense(3, dtype="mixed_float16")),
         "dtype policy 'mixed_float16' computes in float16"),
        (lambda: sequential(layers.Dense(3), layers.Activation("gelu"),
                            layers.BatchNormalization(), layers.Activation("relu")),
         r"activation relu after the feature scaling layer 2 'batch_normalization"),
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
