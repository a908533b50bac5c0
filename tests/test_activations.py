"""The activations with parameters and LayerNorm, in the engine, against the float64
reference (`mlpinfer.reference`): awkward sizes, every path (tiles, row kernels, the
BLAS for layers wider than 4096, the double-accumulated identity output layer),
extreme inputs, bit identity across batch sizes and threads, and how `Network` shows,
saves, pickles and refuses them.

Error bounds: every comparison is `assert_close_to_reference`'s, |engine - reference| <=
1e-5 x max(1, max |output|) + 1e-4 x |reference|. Measured on one value through the
engine (Sapphire Rapids Xeon, avx512, every 97th float of the ranges), the activations
alone are much tighter: elu and selu 1.5e-7, gelu 1.4e-7, gelu_tanh 1.6e-7, silu 1.5e-7,
softplus 1.2e-7 (all x max(1, |y|)); leaky_relu and hard_sigmoid one rounding.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from support import assert_close_to_reference

import mlpinfer
from mlpinfer import Layer, LayerNorm, Network, WeightsError, reference
from mlpinfer._cli import main

ELEMENT_WISE = [
    "leaky_relu(negative_slope=0.01)",
    "leaky_relu(negative_slope=0.2)",
    "elu",
    "elu(alpha=0.5)",
    "selu",
    "gelu",
    "gelu_tanh",
    "silu",
    "softplus",
    "hard_sigmoid(slope=0.2)",
    "hard_sigmoid(slope=0.16666666666666666, offset=0.5)",
]
ALL = [*ELEMENT_WISE, "log_softmax"]


def dense(rng, n_in, n_out, activation, norm=None, after=False):
    weights = rng.standard_normal((n_in, n_out)) * (2.0 / np.sqrt(n_in))
    return Layer(weights, rng.standard_normal(n_out) * 0.5, activation, norm, after)


def layer_norm(rng, width, epsilon=1e-5):
    return LayerNorm(1.0 + 0.5 * rng.standard_normal(width), 0.5 * rng.standard_normal(width), epsilon)


def expected(network, x, scale=1.0):
    return reference.forward(network.layers, np.asarray(x, np.float64), scale)


def assert_same_bits(actual, wanted):
    np.testing.assert_array_equal(actual.view(np.uint32), wanted.view(np.uint32))


@pytest.mark.parametrize("activation", ALL)
@pytest.mark.parametrize("batch", [0, 1, 7, 10_000])
@pytest.mark.parametrize("width", [1, 50, 513])
def test_activation_matches_reference(activation, batch, width):
    """Hidden layers and the output layer with the activation (log_softmax: the output
    only, after relu), inputs with a third zero."""
    rng = np.random.default_rng([batch, width, ALL.index(activation)])
    hidden = "relu" if activation == "log_softmax" else activation
    network = Network([dense(rng, width, 37, hidden), dense(rng, 37, width, hidden),
                       dense(rng, width, 3, activation)])
    x = rng.uniform(-3, 3, (batch, width)).astype(np.float32)
    x[rng.random(x.shape) < 1 / 3] = 0.0
    actual = network.predict(x)
    assert actual.shape == (batch, 3)
    assert_close_to_reference(actual, expected(network, x))


@pytest.mark.parametrize("after", [False, True], ids=["norm before", "norm after"])
# LayerNorm is the same code before any activation: a few of each kind suffice.
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "elu", "gelu", "softplus",
                                        "hard_sigmoid(slope=0.2)"])
@pytest.mark.parametrize("batch", [0, 1, 7, 10_000])
@pytest.mark.parametrize("width", [1, 50, 513])
def test_layer_norm_matches_reference(activation, after, batch, width):
    """A LayerNorm on every layer: hidden layers (tiles and row kernels), and the identity
    output layer, which accumulates in double. A LayerNorm divides its inputs' rounding
    errors by their row's standard deviation: over 8 outputs that stays within the
    bound (over 3, a row of three nearly equal values exceeded it once in 30,000)."""
    rng = np.random.default_rng([batch, width, after, len(activation)])
    network = Network([
        dense(rng, width, 37, activation, layer_norm(rng, 37), after),
        dense(rng, 37, width, activation, layer_norm(rng, width, 1e-3), after),
        dense(rng, width, 8, "identity", layer_norm(rng, 8), after),
    ])
    x = rng.uniform(-3, 3, (batch, width)).astype(np.float32)
    assert_close_to_reference(network.predict(x), expected(network, x))


@pytest.mark.parametrize("output", ["softmax", "log_softmax", "sigmoid"])
def test_layer_norm_before_a_row_activation(output):
    rng = np.random.default_rng(3)
    network = Network([dense(rng, 20, 50, "gelu", layer_norm(rng, 50)),
                       dense(rng, 50, 10, output, layer_norm(rng, 10))])
    x = rng.uniform(-3, 3, (1000, 20)).astype(np.float32)
    assert_close_to_reference(network.predict(x), expected(network, x))


@pytest.mark.parametrize("batch", [7, 40])
def test_a_layer_wider_than_4096_runs_activations_and_layer_norm(batch):
    """Networks with a layer wider than a tile allows run in the row kernels (7 rows) and
    in the BLAS (40 rows, more than the row kernels take for a wide layer). Only the row
    kernels promise the same bits at every batch size (the BLAS sums in its own order)."""
    rng = np.random.default_rng(batch)
    network = Network([dense(rng, 30, 4100, "gelu", layer_norm(rng, 4100)),
                       dense(rng, 4100, 200, "silu", layer_norm(rng, 200), True),
                       dense(rng, 200, 5, "log_softmax")])
    x = rng.uniform(-2, 2, (batch, 30)).astype(np.float32)
    whole = network.predict(x)
    assert_close_to_reference(whole, expected(network, x))
    if batch == 7:
        assert_same_bits(network.predict(x[:3]), whole[:3])


# Inputs the activations must take as the reference does: huge, infinite, NaN, zeros
# of both signs, subnormal, the largest float.
EXTREMES = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0,
                     20.0, -20.0, 88.0, -88.0, 89.0, -89.0, 1e4, -1e4, 1e30, -1e30,
                     3.4028235e38, -3.4028235e38, np.inf, -np.inf, np.nan], dtype=np.float32)


@pytest.mark.parametrize("activation", ELEMENT_WISE)
@pytest.mark.parametrize("batch", [1, 40])
def test_extreme_inputs_behave_like_the_reference(activation, batch):
    """One input, W = 1, b = 0: the activation itself, in a row (batch 1) and in a tile
    (the product turns -0.0 into +0.0, in the reference too)."""
    network = Network([Layer(np.ones((1, 1)), np.zeros(1), activation)])
    x = np.resize(EXTREMES, batch * ((len(EXTREMES) + batch - 1) // batch)).reshape(-1, 1)
    actual = network.predict(x)[:, 0].astype(np.float64)
    with np.errstate(over="ignore"):  # selu(3.4e38) is beyond float32: inf is its answer
        wanted = expected(network, x)[:, 0].astype(np.float32).astype(np.float64)
    for got, want, value in zip(actual, wanted, x[:, 0], strict=True):
        if np.isnan(want) or np.isinf(want):
            assert got == want or (np.isnan(got) and np.isnan(want)), (activation, value, got, want)
        else:
            assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (activation, value, got, want)
            if want == 0.0 and got == 0.0:
                assert np.signbit(got) == np.signbit(want), (activation, value, got, want)


def test_log_softmax_of_extreme_rows():
    network = Network([Layer(np.eye(3), np.zeros(3), "log_softmax")])
    x = np.array([[1e30, 0, -1e30], [np.nan, 0, 0], [np.inf, 0, 0], [-np.inf, 0, 0],
                  [0, 0, 0], [88, 89, 90]], np.float32)
    assert_close_to_reference(network.predict(x), expected(network, x))


def test_layer_norm_of_extreme_rows():
    """A NaN or an infinity makes its row NaN and no other; a constant row gives beta."""
    rng = np.random.default_rng(9)
    norm = layer_norm(rng, 4)
    network = Network([Layer(np.eye(4), np.zeros(4), "identity", norm)])
    x = np.array([[1, 2, 3, 4], [np.nan, 0, 0, 0], [np.inf, 0, 0, 0], [5, 5, 5, 5],
                  [1e30, -1e30, 0, 0], [1e-40, 0, 0, 0]], np.float32)
    x = np.repeat(x, 7, axis=0)  # rows in tiles and alone
    actual = network.predict(x)
    assert_close_to_reference(actual, expected(network, x))
    np.testing.assert_array_equal(np.isnan(actual).all(axis=1), np.repeat([0, 1, 1, 0, 0, 0], 7) == 1)
    np.testing.assert_allclose(actual[21], norm.beta.astype(np.float32), rtol=0, atol=1e-7)


def mixed_network(rng):
    """Every new activation and a LayerNorm before and after, 300 outputs (wider than one
    tile panel of any CPU), a log_softmax output."""
    layers, width = [], 333
    for i, activation in enumerate(ELEMENT_WISE):
        norm = layer_norm(rng, 300 if i % 2 == 0 else 64) if i % 3 != 2 else None
        outputs = 300 if i % 2 == 0 else 64
        layers.append(dense(rng, width, outputs, activation, norm, after=i % 3 == 1))
        width = outputs
    layers.append(dense(rng, width, 10, "log_softmax", layer_norm(rng, 10)))
    return Network(layers)


def test_rows_are_bit_identical_however_the_batch_is_split():
    rng = np.random.default_rng(11)
    network = mixed_network(rng)
    x = rng.uniform(-2, 2, (1025, 333)).astype(np.float32)
    whole = network.predict(x)
    for batch_size in (1, 7, 13, 16, 17, 21, 31, 32, 33, 100):
        assert_same_bits(network.predict(x, batch_size=batch_size), whole)
    for threads in (1, 2, 3):
        assert_same_bits(network.predict(x, threads=threads), whole)
    assert_same_bits(network.predict(x[5]), whole[5])
    assert_close_to_reference(whole, expected(network, x))


# --------------------------------------------------------------------------- Network

def test_activation_strings_become_canonical():
    rng = np.random.default_rng(0)
    network = Network([dense(rng, 4, 3, "elu"), dense(rng, 3, 2, " hard_sigmoid( slope = 0.2 )")])
    assert network.activations == ("elu(alpha=1.0)", "hard_sigmoid(slope=0.2, offset=0.5)")


@pytest.mark.parametrize(("layers", "message"), [
    (lambda rng: [dense(rng, 4, 3, "leaky_relu"), dense(rng, 3, 2, "relu")],
     "layer 1: activation leaky_relu needs negative_slope"),
    (lambda rng: [dense(rng, 4, 3, "log_softmax"), dense(rng, 3, 2, "relu")],
     "layer 1: log_softmax is only supported on the last layer"),
    (lambda rng: [dense(rng, 4, 1, "log_softmax")], "log_softmax over a single output is always 0"),
    (lambda rng: [dense(rng, 4, 3, "elu(alpha=1e39)")], "parameters must be finite in float32"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(4), np.zeros(3), 1e-5))],
     r"layer 1: LayerNorm gamma has shape \(4,\), the layer has 3 outputs"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(3), np.zeros((1, 3, 1)), 1e-5))],
     "LayerNorm beta must be 1-D"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(3), [0, np.inf, 0], 1e-5))],
     "LayerNorm beta has a non-finite value at index \\(1,\\)"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(3), np.zeros(3), 0.0))],
     "LayerNorm epsilon must be a positive number"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(3), np.zeros(3), float("nan")))],
     "LayerNorm epsilon must be a positive number"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(3), np.zeros(3), 1e-60))],
     "float32 holds as positive"),
    (lambda rng: [dense(rng, 4, 3, "relu", LayerNorm(np.ones(3), np.zeros(3), True))],
     "LayerNorm epsilon must be a positive number"),
    (lambda rng: [dense(rng, 4, 3, "softmax", LayerNorm(np.ones(3), np.zeros(3), 1e-5), True)],
     "layer 1: a LayerNorm after softmax is not supported"),
    (lambda rng: [dense(rng, 4, 3, "log_softmax", layer_norm(rng, 3), True)],
     "a LayerNorm after log_softmax is not supported"),
    (lambda rng: [dense(rng, 4, 3, "relu", (np.ones(3), np.zeros(3), 1e-5))],
     "norm must be a LayerNorm, got tuple"),
    (lambda rng: [dense(rng, 4, 3, "relu", layer_norm(rng, 3), "yes")],
     "norm_after_activation must be True or False"),
])
def test_bad_layers_are_refused(layers, message):
    with pytest.raises(WeightsError, match=message):
        Network(layers(np.random.default_rng(0)))


@pytest.mark.parametrize("activation", [None, 1, b"relu"])
def test_an_activation_that_is_no_string_is_a_type_error(activation):
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=f"layer 2: an activation is a name such as 'relu', "
                                        f"got {type(activation).__name__}"):
        Network([dense(rng, 4, 3, "relu"), dense(rng, 3, 2, activation)])
    with pytest.raises(TypeError, match="an activation is a name"):
        reference.forward([(np.ones((4, 3)), np.zeros(3), activation)], np.ones((1, 4)))


def test_layer_norm_arrays_are_copied_once():
    rng = np.random.default_rng(1)
    gamma, beta = np.ones(3), np.zeros(3)
    network = Network([dense(rng, 4, 3, "relu", LayerNorm(gamma, beta, 1e-5))])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    before = network.predict(x)
    gamma[:] = 7.0
    assert_same_bits(network.predict(x), before)
    stored = network.layers[0].norm
    assert stored.gamma.dtype == np.float32
    assert not stored.gamma.flags.writeable


def small_network(output="log_softmax"):
    rng = np.random.default_rng(2)
    return Network([dense(rng, 6, 5, "gelu_tanh", layer_norm(rng, 5)),
                    dense(rng, 5, 4, "leaky_relu(negative_slope=0.1)", layer_norm(rng, 4, 1e-3), True),
                    dense(rng, 4, 3, output)], input_scale=0.5)


def test_repr_and_summary_show_parameters_and_layer_norms():
    network = small_network()
    assert repr(network) == (
        "Network(6 -> 5 layer_norm(epsilon=1e-05) gelu_tanh -> "
        "4 leaky_relu(negative_slope=0.1) layer_norm(epsilon=0.001) -> 3 log_softmax"
        ", input_scale=0.5)")
    lines = []
    network.summary(print_fn=lines.append)
    text = lines[0]
    assert "dense_1 (layer_norm(epsilon=1e-05) gelu_tanh)" in text
    assert "dense_2 (leaky_relu(negative_slope=0.1) layer_norm(epsilon=0.001))" in text
    total = 6 * 5 + 5 + 2 * 5 + 5 * 4 + 4 + 2 * 4 + 4 * 3 + 3
    assert f"Total params: {total:,}" in text


def test_pickling_keeps_layer_norms():
    network = small_network()
    copy = pickle.loads(pickle.dumps(network))
    assert repr(copy) == repr(network)
    x = np.random.default_rng(3).standard_normal((50, 6)).astype(np.float32)
    assert_same_bits(copy.predict(x), network.predict(x))


def test_info_shows_activations_and_layer_norms(tmp_path, capsys):
    path = tmp_path / "net.npz"
    mlpinfer.save(small_network(), path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "layer 1     6 -> 5 layer_norm(epsilon=1e-05) gelu_tanh (45 parameters)" in out
    assert "layer 2     5 -> 4 leaky_relu(negative_slope=0.1) layer_norm(epsilon=0.001)" in out
    assert main(["info", str(path), "--json"]) == 0
    import json

    layers = json.loads(capsys.readouterr().out)["layers"]
    assert layers[1]["activation"] == "leaky_relu(negative_slope=0.1)"
    assert layers[1]["layer_norm"] == {"epsilon": 0.001, "after_activation": True}
    assert layers[2]["layer_norm"] is None


def test_log_softmax_outputs_are_log_probabilities():
    """predict_proba gives e^outputs, which are the softmax network's probabilities;
    evaluate takes the outputs as log-probabilities (PyTorch's NLLLoss)."""
    log_net, soft_net = small_network("log_softmax"), small_network("softmax")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    proba = log_net.predict_proba(x)
    np.testing.assert_allclose(proba, soft_net.predict(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(log_net.classify(x), soft_net.classify(x))
    loss, accuracy = log_net.evaluate(x, y)
    log_p = reference.forward(log_net.layers, x.astype(np.float64), log_net.input_scale)
    assert loss == pytest.approx(-np.mean(log_p[np.arange(200), y]), rel=1e-5)
    assert accuracy == soft_net.evaluate(x, y)[1]
    assert loss == pytest.approx(soft_net.evaluate(x, y)[0], rel=1e-4)


def test_outputs_after_a_layer_norm_are_not_probabilities():
    rng = np.random.default_rng(5)
    network = Network([dense(rng, 4, 3, "sigmoid", layer_norm(rng, 3), True)])
    x = rng.standard_normal((5, 4))
    with pytest.raises(TypeError, match="needs a softmax, log_softmax or sigmoid output"):
        network.predict_proba(x)
    with pytest.raises(ValueError, match="a layer_norm output has no cross-entropy"):
        network.evaluate(x, [0, 1, 2, 0, 1])


def test_reference_forward_takes_tuples_and_layers_alike():
    rng = np.random.default_rng(6)
    network = small_network()
    x = rng.standard_normal((4, 6))
    tuples = [(layer.weights, layer.bias, layer.activation,
               None if layer.norm is None else (layer.norm.gamma, layer.norm.beta, layer.norm.epsilon),
               layer.norm_after_activation) for layer in network.layers]
    np.testing.assert_array_equal(reference.forward(tuples, x), reference.forward(network.layers, x))
    plain = Network([dense(rng, 6, 3, "silu")])
    triples = [(layer.weights, layer.bias, layer.activation) for layer in plain.layers]
    np.testing.assert_array_equal(reference.forward(triples, x), reference.forward(plain.layers, x))


def test_a_textbook_pickle_refuses_a_layer_norm(tmp_path):
    """A .pkl records only W and b: a LayerNorm would be lost, so it is refused."""
    rng = np.random.default_rng(7)
    network = Network([dense(rng, 4, 3, "sigmoid", layer_norm(rng, 3)), dense(rng, 3, 2, "softmax")])
    with pytest.raises(WeightsError, match=r"layer_norm.*write \.npz"):
        mlpinfer.save(network, tmp_path / "net.pkl")
    assert not (tmp_path / "net.pkl").exists()


def test_dask_keys_tell_layer_norms_apart():
    pytest.importorskip("dask")
    from mlpinfer.dask import _network_key

    rng = np.random.default_rng(8)
    plain = Network([dense(rng, 4, 3, "relu")])
    layer = plain.layers[0]
    normed = Network([Layer(layer.weights, layer.bias, "relu", LayerNorm(np.ones(3), np.zeros(3), 1e-5))])
    assert _network_key(plain).key != _network_key(normed).key
