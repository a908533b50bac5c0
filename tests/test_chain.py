"""The Chain that every reader uses, against the unfolded model computed step by step in
float64 here (BatchNorm, affine scaling, LayerNorm and activations as the frameworks define
them), never by the Chain's own folding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from framework_support import assert_same_answers
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpinfer.formats._chain import Chain
from mlpinfer.importers import UnsupportedModelError

INPUTS, HIDDEN, OUTPUTS = 13, 50, 3
RNG = np.random.default_rng(14)


# ---------------------------------------------------------------- the unfolded model


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


ACTIVATIONS = {
    "identity": lambda y: y,
    "relu": lambda y: np.maximum(y, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda y: 1.0 / (1.0 + np.exp(-y)),
    "softmax": lambda y: np.exp(y - y.max(1, keepdims=True))
    / np.exp(y - y.max(1, keepdims=True)).sum(1, keepdims=True),
    "leaky_relu(negative_slope=0.2)": lambda y: np.where(y >= 0, y, 0.2 * y),
    "elu": lambda y: np.where(y > 0, y, np.expm1(np.minimum(y, 0.0))),
    "elu(alpha=1.0)": lambda y: np.where(y > 0, y, np.expm1(np.minimum(y, 0.0))),
    "gelu": lambda y: y * (1.0 + _erf(y / math.sqrt(2.0))) / 2.0,
}


def layer_norm(value: np.ndarray, gamma, beta, epsilon: float) -> np.ndarray:
    """Over each row's features, with the biased variance (as every framework)."""
    centred = value - value.mean(axis=1, keepdims=True)
    value = centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + epsilon)
    return value * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)


def unfolded(steps: list[tuple], x: np.ndarray) -> np.ndarray:
    """The model as the framework runs it: every step on its own, in float64."""
    value = np.asarray(x, dtype=np.float64)
    for kind, *stated in steps:
        # float64 throughout: float32 parameters would round the reference (NEP 50).
        args = [a if a is None or isinstance(a, str) else np.asarray(a, np.float64)
                for a in stated]
        if kind == "dense":
            weights, bias = args
            value = value @ weights + (0.0 if bias is None else bias)
        elif kind == "bias":
            value = value + args[0]
        elif kind in ("affine", "scale"):
            value = value * args[0] + args[1]
        elif kind == "bn":
            mean, variance, gamma, beta, epsilon = args
            value = (value - mean) / np.sqrt(variance + epsilon)
            value = value * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)
        elif kind == "ln":
            value = layer_norm(value, *args)
        elif kind == "act":
            value = ACTIVATIONS[args[0]](value)
        elif kind != "skip":
            raise AssertionError(kind)
    return value


def layers_in_float64(layers, x: np.ndarray) -> np.ndarray:
    """What the Layer objects say, evaluated in float64 (no engine, no rounding)."""
    value = np.asarray(x, dtype=np.float64)
    for layer in layers:
        value = value @ np.asarray(layer.weights, np.float64) + layer.bias
        norm = layer.norm
        if norm is not None and layer.norm_after_activation:
            value = ACTIVATIONS[layer.activation](value)
        if norm is not None:
            value = layer_norm(value, norm.gamma, norm.beta, norm.epsilon)
        if norm is None or not layer.norm_after_activation:
            value = ACTIVATIONS[layer.activation](value)
    return value


# Test step -> the Chain method that takes it.
METHODS = {"dense": "dense", "bias": "add_bias", "affine": "affine", "scale": "scale",
           "bn": "batch_norm", "ln": "layer_norm", "act": "activate", "skip": "skip"}


def built(steps: list[tuple]) -> Chain:
    chain = Chain()
    for position, (kind, *args) in enumerate(steps):
        getattr(chain, METHODS[kind])(*args, f"layer {position} ({kind})")
    return chain


# ---------------------------------------------------------------- parameters


def dense(inputs: int, outputs: int, bias: bool = True) -> tuple:
    weights = RNG.normal(0, 1 / math.sqrt(inputs), (inputs, outputs)).astype(np.float32)
    return ("dense", weights, RNG.normal(0, 0.5, outputs).astype(np.float32) if bias else None)


def bn(features: int, affine: bool = True, epsilon: float = 1e-3) -> tuple:
    # Statistics far from (0, 1), so that a step that is dropped or misplaced shows.
    mean = RNG.normal(0, 2, features).astype(np.float32)
    variance = RNG.uniform(0.05, 6, features).astype(np.float32)
    gamma = RNG.uniform(0.3, 2, features).astype(np.float32) if affine else None
    beta = RNG.normal(0, 1, features).astype(np.float32) if affine else None
    return ("bn", mean, variance, gamma, beta, epsilon)


def ln(features: int, epsilon: float = 1e-5) -> tuple:
    return ("ln", RNG.uniform(0.5, 2, features), RNG.normal(0, 0.5, features), epsilon)


def inputs(rows: int) -> np.ndarray:
    return (RNG.normal(0, 1, (rows, INPUTS)) * RNG.uniform(0.1, 5, INPUTS)).astype(np.float32)


CASES = {
    "bn after dense": [dense(INPUTS, HIDDEN), bn(HIDDEN), ("act", "relu"),
                       dense(HIDDEN, OUTPUTS), ("act", "softmax")],
    "bn on the input": [bn(INPUTS), dense(INPUTS, HIDDEN), ("act", "tanh"),
                        dense(HIDDEN, OUTPUTS)],
    "bn after the activation": [dense(INPUTS, HIDDEN), ("act", "relu"), ("skip", "Dropout"),
                                bn(HIDDEN, epsilon=1e-5), dense(HIDDEN, OUTPUTS, bias=False),
                                ("act", "softmax")],
    "bn without affine, twice": [dense(INPUTS, HIDDEN, bias=False), bn(HIDDEN, affine=False),
                                 bn(HIDDEN), ("act", "sigmoid"), dense(HIDDEN, 1),
                                 ("act", "sigmoid")],
    "affine per feature and scalar": [
        ("affine", RNG.uniform(0.2, 3, INPUTS), RNG.normal(0, 1, INPUTS)),
        ("affine", 0.5, -0.25), dense(INPUTS, HIDDEN), ("act", "relu"),
        ("affine", RNG.uniform(-2, 2, HIDDEN), 1.5), dense(HIDDEN, 7), ("act", "tanh"),
        ("affine", np.float32(2.0), RNG.normal(0, 1, (1, 7))), dense(7, OUTPUTS),
    ],
    "affine with zero scale": [
        ("affine", np.where(np.arange(INPUTS) % 3 == 0, 0.0, 1.5), RNG.normal(0, 1, INPUTS)),
        dense(INPUTS, HIDDEN), ("act", "relu"), dense(HIDDEN, OUTPUTS),
        ("affine", np.array([0.0, 1.0, -2.0]), np.array([0.5, 0.0, 0.0])),
    ],
    "dense, bias, bn, dense with no activation": [
        dense(INPUTS, HIDDEN, bias=False), ("bias", RNG.normal(0, 1, HIDDEN)), bn(HIDDEN),
        dense(HIDDEN, OUTPUTS), ("bias", np.float32(0.75)), ("act", "softmax")],
    "scaling on the input, then bn": [
        ("scale", 0.5, 0.25), bn(INPUTS), ("scale", 2.0, -1.0), dense(INPUTS, HIDDEN),
        ("act", "relu"), dense(HIDDEN, OUTPUTS)],
    "layernorm before the activation": [dense(INPUTS, HIDDEN), ln(HIDDEN), ("act", "relu"),
                                         dense(HIDDEN, OUTPUTS)],
    "layernorm after the activation": [dense(INPUTS, HIDDEN), ("act", "tanh"), ln(HIDDEN),
                                       dense(HIDDEN, OUTPUTS), ("act", "softmax")],
    "bn then layernorm": [dense(INPUTS, HIDDEN), bn(HIDDEN), ln(HIDDEN), ("act", "relu"),
                          dense(HIDDEN, OUTPUTS)],
    "layernorm then bn, folded into gamma": [
        bn(INPUTS), dense(INPUTS, HIDDEN), ln(HIDDEN, epsilon=1e-3), bn(HIDDEN),
        ("act", "leaky_relu(negative_slope=0.2)"), dense(HIDDEN, OUTPUTS)],
    "bn after layernorm after activation": [
        dense(INPUTS, HIDDEN), ("act", "elu"), ("ln", None, None, 1e-5), bn(HIDDEN),
        ("affine", 3.0, 0.5), dense(HIDDEN, OUTPUTS), ("act", "gelu")],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layers_compute_the_unfolded_model(case):
    steps = CASES[case]
    x = inputs(200)
    expected = unfolded(steps, x)
    chain = built(steps)
    layers = chain.layers()
    assert len(layers) == sum(kind == "dense" for kind, *_ in steps)
    np.testing.assert_allclose(layers_in_float64(layers, engine_input(chain, steps, x)), expected,
                               rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def engine_input(chain: Chain, steps: list[tuple], x: np.ndarray) -> np.ndarray:
    """What the first layer sees: ``x`` times the input scale, then the chain's input
    transform (as the engine computes it, here in float64)."""
    value = np.asarray(x, np.float64) * _input_scale(steps)
    transform = chain.input_transform
    return value if transform is None else (value - transform.shift) * transform.multiplier


def _input_scale(steps: list[tuple]) -> float:
    """What the engine multiplies the input by: the product of the scale steps before the
    first dense layer (their offsets fold into it)."""
    factor = 1.0
    for kind, *args in steps:
        if kind == "dense":
            break
        if kind == "scale":
            factor *= args[0]
    return factor


@pytest.mark.parametrize("rows", [1, 7, 1000])
@pytest.mark.parametrize("case", sorted(CASES))
def test_network_matches_the_unfolded_model(case, rows):
    steps = CASES[case]
    x = inputs(rows)
    expected = unfolded(steps, x)
    network = built(steps).network()
    assert_same_answers(network.predict(x), expected)
    # The comparison can fail: dropping the normalisation steps changes the answer.
    plain = [step for step in steps if step[0] in ("dense", "act")]
    assert np.abs(unfolded(plain, x) - expected).max() > 1e-2


def test_scale_on_the_input_stays_the_input_scale_for_uint8():
    steps = [("scale", 1 / 255, -0.5), bn(INPUTS), dense(INPUTS, HIDDEN), ("act", "relu"),
             dense(HIDDEN, OUTPUTS), ("act", "softmax")]
    network = built(steps).network()
    assert network.input_scale == 1 / 255
    assert network.pixel_scale == 1 / 255
    pixels = RNG.integers(0, 256, (7, INPUTS), dtype=np.uint8)
    expected = unfolded(steps, pixels.astype(np.float64))
    assert_same_answers(network.predict(pixels), expected)
    assert_same_answers(network.predict(pixels.astype(np.float32)), expected)


def test_no_scale_leaves_uint8_refused():
    network = built([bn(INPUTS), dense(INPUTS, OUTPUTS)]).network()
    assert network.input_scale is None
    assert network.pixel_scale is None


def test_folding_rounds_once_from_float64():
    """The folded weights are the float64 product rounded to float32 once."""
    steps = [dense(INPUTS, HIDDEN), bn(HIDDEN)]
    _, weights, bias = steps[0]
    _, mean, variance, gamma, beta, epsilon = steps[1]
    factor = gamma.astype(np.float64) / np.sqrt(variance.astype(np.float64) + epsilon)
    network = built(steps).network()
    np.testing.assert_array_equal(network.layers[0].weights,
                                  (weights.astype(np.float64) * factor).astype(np.float32))
    np.testing.assert_array_equal(
        network.layers[0].bias,
        ((bias.astype(np.float64) - mean) * factor + beta.astype(np.float64)).astype(np.float32))


def test_layer_norm_goes_on_the_layer_before_or_after_its_activation():
    gamma, beta = np.linspace(0.5, 1.5, HIDDEN), np.linspace(-1, 1, HIDDEN)
    before = built([dense(INPUTS, HIDDEN), ("ln", gamma, beta, 1e-5), ("act", "relu"),
                    dense(HIDDEN, OUTPUTS)]).layers()
    assert [layer.activation for layer in before] == ["relu", "identity"]
    assert before[0].norm is not None
    assert not before[0].norm_after_activation
    np.testing.assert_array_equal(before[0].norm.gamma, gamma)
    np.testing.assert_array_equal(before[0].norm.beta, beta)
    assert before[0].norm.epsilon == 1e-5
    assert before[1].norm is None
    after = built([dense(INPUTS, HIDDEN), ("act", "relu"), ("ln", None, None, 0.001)]).layers()
    assert after[0].norm_after_activation
    np.testing.assert_array_equal(after[0].norm.gamma, np.ones(HIDDEN))
    np.testing.assert_array_equal(after[0].norm.beta, np.zeros(HIDDEN))


@pytest.mark.parametrize(("spec", "canonical"), [
    ("relu", "relu"), ("elu", "elu(alpha=1.0)"), ("silu", "silu"),
    ("leaky_relu(negative_slope=0.01)", "leaky_relu(negative_slope=0.01)"),
    ("hard_sigmoid(slope=0.2)", "hard_sigmoid(slope=0.2, offset=0.5)"),
])
def test_activations_with_parameters_are_canonical(spec, canonical):
    chain = built([dense(INPUTS, OUTPUTS), ("act", spec)])
    assert chain.layers()[0].activation == canonical


@pytest.mark.parametrize(("steps", "message"), [
    ([dense(INPUTS, HIDDEN), ("act", "relu"), bn(HIDDEN)],
     r"layer 2 \(bn\): a feature scaling after the last activation, with no dense layer"),
    ([dense(INPUTS, HIDDEN), ("act", "relu"), bn(7), dense(7, OUTPUTS)],
     r"layer 2 \(bn\): 7 features, but the value it scales has 50"),
    ([dense(INPUTS, HIDDEN), ("act", "relu"), ("affine", np.full(HIDDEN, 2.0), 1.0),
      dense(7, OUTPUTS)],
     (r"layer 2 \(affine\): 50 features, but the dense layer it folds into \(layer 3 \(dense\)\) "
     "has 7 inputs")),
    ([bn(7), dense(INPUTS, OUTPUTS)],
     (r"layer 0 \(bn\): 7 features, but the dense layer it folds into \(layer 1 \(dense\)\) "
     "has 13 inputs")),
    ([dense(INPUTS, HIDDEN), ("act", "relu"), dense(7, OUTPUTS)],
     r"layer 2 \(dense\): weights for 7 inputs, but the value before it has 50 features"),
    ([dense(INPUTS, HIDDEN), bn(7)], (r"layer 1 \(bn\): 7 features, but the value it scales "
     "has 50 \\(the outputs of the dense layer before it\\)")),
    ([dense(INPUTS, HIDDEN), ("act", "relu"), bn(HIDDEN), ("act", "relu")],
     r"layer 3 \(act\): activation relu after the feature scaling layer 2 \(bn\)"),
    ([ln(INPUTS), dense(INPUTS, OUTPUTS)], r"layer 0 \(ln\): a LayerNorm on the input"),
    ([bn(INPUTS), ln(INPUTS), dense(INPUTS, OUTPUTS)],
     r"layer 1 \(ln\): a LayerNorm on the input \(before the first dense layer\)"),
    ([dense(INPUTS, HIDDEN), ("act", "relu"), bn(HIDDEN), ln(HIDDEN)],
     r"layer 3 \(ln\): a LayerNorm on the feature scaling layer 2 \(bn\)"),
    ([dense(INPUTS, HIDDEN), ln(HIDDEN), ("act", "relu"), ln(HIDDEN)],
     r"layer 3 \(ln\): a second LayerNorm on the same dense layer"),
    ([dense(INPUTS, HIDDEN), ln(7)], r"layer 1 \(ln\): gamma has 7 values, expected 50"),
    ([dense(INPUTS, HIDDEN), ln(HIDDEN, epsilon=0.0)],
     r"layer 1 \(ln\): epsilon 0.0; expected a finite number > 0"),
    ([dense(INPUTS, HIDDEN), ("act", "softmax"), ln(HIDDEN)],
     r"layer 2 \(ln\): a LayerNorm after softmax"),
    ([dense(INPUTS, OUTPUTS), ("act", "leaky_relu")],
     r"layer 1 \(act\): activation leaky_relu needs negative_slope"),
    ([dense(INPUTS, OUTPUTS), ("act", "swish")], r"layer 1 \(act\): unknown activation 'swish'"),
    ([dense(INPUTS, OUTPUTS), ("act", "relu"), ("act", "tanh")],
     r"layer 2 \(act\): activation tanh applied to relu with no dense layer between"),
    ([("act", "relu")], r"layer 0 \(act\): activation relu applied to the input"),
    ([dense(INPUTS, OUTPUTS), ("act", "log_softmax"), dense(OUTPUTS, 2)],
     r"layer 2 \(dense\): a dense layer after log_softmax"),
    ([dense(INPUTS, 3), ("bn", np.zeros(3), np.array([1.0, 0.0, 1.0]), None, None, 0.0)],
     r"layer 1 \(bn\): variance 0.0 \+ epsilon 0.0 at feature 1 is not positive"),
    ([dense(INPUTS, 3), ("bn", np.zeros(3), np.ones(3), None, None, -1e-3)],
     r"layer 1 \(bn\): epsilon -0.001; expected a finite number >= 0"),
    ([dense(INPUTS, 3), ("affine", np.array([1.0, np.nan, 1.0]), 0.0)],
     r"layer 1 \(affine\): scale has a non-finite value"),
    ([dense(INPUTS, 3), ("affine", np.ones((2, 3)), 0.0)],
     r"layer 1 \(affine\): scale has shape \(2, 3\)"),
    ([dense(INPUTS, 3), ("bn", 0.0, 1.0, None, None, 1e-3)],
     r"layer 1 \(bn\): mean has shape \(\); expected one value per feature"),
    ([dense(INPUTS, 3), ("act", "relu"), ("bias", np.ones(3))],
     r"layer 2 \(bias\): a bias addition that follows no dense layer"),
    ([bn(INPUTS)], "the model has no dense layer"),
    ([("skip", "Dropout")], "the model has no dense layer"),
])
def test_refusals_name_the_step(steps, message):
    with pytest.raises(UnsupportedModelError, match=message):
        built(steps).layers()


@pytest.mark.parametrize("spreads", [200, 1000])
def test_a_scaling_far_from_zero_on_the_input_becomes_the_exact_input_transform(spreads):
    """Standardising features ``spreads`` spreads from 0 (a year near 2000 with std 10 is
    200): folded into W, x W' and t W would cancel in float32; the input transform is
    exact. Measured (Sapphire Rapids Xeon): 200 spreads 1.1e-7, 1000 spreads 7.6e-8 of the
    output scale; folded into W, the same models measured 1.8e-5 and 8.0e-5."""
    _, weights, bias = dense(INPUTS, HIDDEN)
    spread = RNG.uniform(5, 15, INPUTS)
    x = spreads * spread + RNG.normal(0, 1, (1000, INPUTS)) * spread
    mean, std = x.mean(axis=0), x.std(axis=0)
    steps = [("affine", 1 / std, -mean / std), ("dense", weights, bias), ("act", "tanh"),
             dense(HIDDEN, OUTPUTS)]
    network = built(steps).network()
    np.testing.assert_allclose(network.input_transform.shift, mean, rtol=1e-15)
    np.testing.assert_array_equal(network.input_transform.multiplier, 1 / std)
    np.testing.assert_array_equal(network.layers[0].weights, weights)
    expected = unfolded(steps, x)
    for rows in (1, 7, 1000):
        assert_same_answers(network.predict(x[:rows]), expected[:rows])
    error = np.abs(network.predict(x) - expected).max() / max(1.0, np.abs(expected).max())
    assert error < 3e-7, error


def test_a_shift_that_would_cancel_in_float32_after_an_activation_is_refused():
    """A scaling between two dense layers still folds, and a shift that cancels there is
    refused (hidden values near 0 shifted by 1000)."""
    steps = [dense(INPUTS, HIDDEN), ("act", "tanh"), ("affine", 0.5, 1000.0),
             dense(HIDDEN, OUTPUTS)]
    with pytest.raises(UnsupportedModelError, match=(
            r"layer 2 \(affine\): folded into layer 3 \(dense\), this scaling's shift \(up "
            r"to -?[0-9.e+]+ at feature \d+, in the units the dense layer sees\) cancels in "
            r"float32 against the product: an error of up to [0-9.e-]+ in output \d+, whose "
            r"scale is [0-9.]+, more than the 5e-06 of it that mlpinfer keeps to")):
        built(steps).network()
    # A moderate shift folds and matches: the refusal is about the offset alone.
    steps[2] = ("affine", 0.5, 1.0)
    x = inputs(100)
    assert_same_answers(built(steps).network().predict(x), unfolded(steps, x))


def test_a_zero_scale_on_the_input_is_a_constant_in_the_bias():
    scale = np.where(np.arange(INPUTS) % 2 == 0, 0.0, 2.0)
    steps = [("affine", scale, RNG.normal(0, 1, INPUTS)), dense(INPUTS, OUTPUTS)]
    network = built(steps).network()
    np.testing.assert_array_equal(network.input_transform.multiplier, scale)
    assert np.all(network.input_transform.shift[scale == 0] == 0)
    x = inputs(50)
    assert_same_answers(network.predict(x), unfolded(steps, x))


def test_only_scale_steps_on_the_input_leave_no_transform():
    steps = [("scale", 1 / 255, -0.5), dense(INPUTS, OUTPUTS)]
    network = built(steps).network()
    assert network.input_transform is None
    assert network.input_scale == 1 / 255


def random_steps(seed: int, length: int) -> list[tuple]:
    """Steps of every kind in any order; widths usually chained, sometimes not."""
    rng = np.random.default_rng(seed)
    width, steps = INPUTS, []
    for _ in range(length):
        kind = rng.choice(["dense", "dense", "bn", "affine", "scale", "ln", "act", "skip", "bias"])
        if width == INPUTS and rng.random() < 0.5:  # most models start with a dense layer
            kind = "dense"
        features = width if rng.random() < 0.9 else width + 1
        if kind == "dense":
            outputs = int(rng.choice([1, 3, 5]))
            steps.append(dense(features, outputs, bias=bool(rng.random() < 0.8)))
            width = outputs
        elif kind == "bn":
            steps.append(bn(features, affine=bool(rng.random() < 0.7)))
        elif kind == "affine":
            scale = (rng.uniform(-2, 2, features) if rng.random() < 0.5
                     else float(rng.uniform(-2, 2)))
            steps.append(("affine", scale, rng.normal(0, 1, features)))
        elif kind == "scale":
            steps.append(("scale", float(rng.uniform(0.1, 2)), float(rng.normal())))
        elif kind == "ln":
            steps.append(ln(features))
        elif kind == "act":
            steps.append(("act", str(rng.choice(["relu", "tanh", "gelu", "elu", "softmax"]))))
        elif kind == "bias":
            steps.append(("bias", rng.normal(0, 1, features)))
        else:
            steps.append(("skip", "Dropout"))
    return steps


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8))
def test_property_any_steps_fold_exactly_or_are_refused_by_name(seed, length):
    steps = random_steps(seed, length)
    try:
        chain = built(steps)
        layers = chain.layers()
    except UnsupportedModelError as error:
        refusal = str(error)
    else:
        refusal = None
    if refusal is not None:  # named by the step's place, as every refusal must be
        assert refusal.startswith(("layer ", "the model has no dense layer")), refusal
        return
    x = np.random.default_rng(seed).normal(0, 2, (5, layers[0].weights.shape[0]))
    expected = unfolded(steps, x)
    np.testing.assert_allclose(layers_in_float64(layers, engine_input(chain, steps, x)), expected,
                               rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max()))
