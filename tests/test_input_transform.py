"""The engine's exact input transform (mlpinfer.InputTransform): (x * scale - shift) *
multiplier per feature, in float64, rounded to float32 once, before the first layer.

Checked against the float64 reference at batches 0, 1, 7, 10,000 and widths 1, 50, 513,
on float32, float64 and uint8 (with its pixel scale) input, C-ordered, Fortran-ordered
and sliced; bit identity across batch sizes and threads (and across kernel families:
tests/test_isa.py has transform cases). Features sit far from 0 against their spread,
where folding the transform into W cancels in float32.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from support import assert_close_to_reference

import mlpinfer
from mlpinfer import InputTransform, WeightsError, reference

WIDTHS = [1, 50, 513]
BATCHES = [0, 1, 7, 10_000]


def reference_outputs(network: mlpinfer.Network, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return reference.forward(network.layers, x, scale, input_transform=network.input_transform)


def year_network(width: int, output: str = "softmax", seed: int = 0) -> mlpinfer.Network:
    """width -> 37 (tanh) -> 5 (output) after a standard scaling of features near 2000
    with spreads of about 10: 200 spreads from 0."""
    rng = np.random.default_rng([width, seed])
    layers = [
        mlpinfer.Layer(rng.standard_normal((width, 37)) / np.sqrt(width),
                       rng.standard_normal(37) * 0.5, "tanh"),
        mlpinfer.Layer(rng.standard_normal((37, 5)) / np.sqrt(37), rng.standard_normal(5) * 0.5,
                       output),
    ]
    shift = 2000.0 + 50.0 * rng.standard_normal(width)
    multiplier = 1.0 / (10.0 * rng.uniform(0.5, 2.0, width))
    return mlpinfer.Network(layers, input_transform=InputTransform(shift, multiplier))


def year_inputs(network: mlpinfer.Network, rows: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    transform = network.input_transform
    return (transform.shift + rng.standard_normal((rows, network.n_inputs))
            / transform.multiplier)


@pytest.mark.parametrize("output", ["softmax", "identity"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_the_reference_at_every_batch(width, dtype, output):
    network = year_network(width, output)
    x = year_inputs(network, max(BATCHES)).astype(dtype)
    for batch in BATCHES:
        actual = network.predict(x[:batch])
        assert_close_to_reference(actual, reference_outputs(network, x[:batch]))


def test_the_reference_applies_the_transform_after_the_scale():
    network = year_network(3, "identity")
    x = year_inputs(network, 4)
    transform = network.input_transform
    scaled = (x * 0.5 - transform.shift) * transform.multiplier
    expected = reference.forward(network.layers, scaled)
    np.testing.assert_array_equal(
        reference.forward(network.layers, x, 0.5, input_transform=transform), expected)


@pytest.mark.parametrize("width", WIDTHS)
def test_uint8_pixels_take_the_pixel_scale_before_the_transform(width):
    rng = np.random.default_rng(width)
    base = year_network(width)
    # Pixels / 255 standardised by their mean and spread, as a StandardScaler would.
    transform = InputTransform(rng.uniform(0.3, 0.6, width), 1.0 / rng.uniform(0.2, 0.4, width))
    network = mlpinfer.Network(base.layers, input_transform=transform)
    assert network.pixel_scale == pytest.approx(1 / 255)
    pixels = rng.integers(0, 256, (1000, width), dtype=np.uint8)
    for batch in [0, 1, 7, 1000]:
        actual = network.predict(pixels[:batch])
        assert_close_to_reference(actual, reference_outputs(network, pixels[:batch], 1 / 255))
    # The engine holds the pixel scale as float32 and multiplies in float64.
    scaled = pixels.astype(np.float64) * np.float64(np.float32(1 / 255))
    np.testing.assert_array_equal(network.predict(pixels), network.predict(scaled))


def test_input_scale_multiplies_float_input_before_the_transform():
    base = year_network(50)
    network = mlpinfer.Network(base.layers, input_scale=0.5,
                               input_transform=base.input_transform)
    x = year_inputs(base, 100) * 2.0
    assert_close_to_reference(network.predict(x), reference_outputs(network, x, 0.5))
    np.testing.assert_array_equal(network.predict(x), base.predict(x / 2.0))


@pytest.mark.parametrize("width", [50, 513])
def test_fortran_ordered_and_sliced_inputs_give_the_same_bits(width):
    network = year_network(width)
    x = year_inputs(network, 300)
    for dtype in (np.float64, np.float32):
        c = np.ascontiguousarray(x.astype(dtype))
        expected = network.predict(c[::3])
        np.testing.assert_array_equal(network.predict(np.asfortranarray(c)[::3]), expected)
        wide = np.zeros((300, 2 * width), dtype)
        wide[:, ::2] = c
        np.testing.assert_array_equal(network.predict(wide[::3, ::2]), expected)
        np.testing.assert_array_equal(network.predict(c[::3][::-1]), expected[::-1])


@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_bit_identical_across_batch_sizes_and_threads(output):
    network = year_network(50, output)
    x = year_inputs(network, 1000).astype(np.float32)
    whole = network.predict(x, threads=1)
    for options in ({"threads": 2}, {"batch_size": 7}, {"batch_size": 1},
                    {"batch_size": 33, "threads": 2}):
        np.testing.assert_array_equal(network.predict(x, **options).view(np.uint32),
                                      whole.view(np.uint32), err_msg=str(options))
    for row in (0, 7, 999):
        np.testing.assert_array_equal(network.predict(x[row]), whole[row])


def test_far_from_zero_features_are_exact_where_folding_cancels():
    """The same network with the transform folded into W (W' = diag(m) W, b' = b - (s m) W)
    loses the answer in float32; the transform keeps it."""
    network = year_network(50, "identity")
    x = year_inputs(network, 1000)
    expected = reference_outputs(network, x)
    transform = network.input_transform
    first, rest = network.layers[0], network.layers[1:]
    weights = first.weights.astype(np.float64) * transform.multiplier[:, None]
    bias = first.bias - (transform.shift * transform.multiplier) @ first.weights.astype(np.float64)
    folded = mlpinfer.Network([mlpinfer.Layer(weights, bias, first.activation), *rest])
    scale = max(1.0, float(np.max(np.abs(expected))))
    exact = np.max(np.abs(network.predict(x) - expected)) / scale
    lossy = np.max(np.abs(folded.predict(x) - expected)) / scale
    assert exact < 2e-6, exact
    assert lossy > 10 * exact, (lossy, exact)


def test_it_is_shown_kept_by_pickling_and_by_replacing():
    network = year_network(50)
    assert "input_transform=InputTransform(<50 features>)" in repr(network)
    lines = []
    network.summary(print_fn=lines.append)
    assert "input_transform (shift, multiplier)" in lines[0]
    copy = pickle.loads(pickle.dumps(network))
    np.testing.assert_array_equal(copy.input_transform.shift, network.input_transform.shift)
    np.testing.assert_array_equal(copy.input_transform.multiplier,
                                  network.input_transform.multiplier)
    x = year_inputs(network, 20)
    np.testing.assert_array_equal(copy.predict(x), network.predict(x))
    np.testing.assert_array_equal(network.with_pixel_scale(1.0).predict(x), network.predict(x))
    assert network.input_transform.shift.dtype == np.float64
    assert not network.input_transform.shift.flags.writeable


def test_the_arrays_are_copied():
    shift, multiplier = np.full(3, 2000.0), np.full(3, 0.1)
    base = year_network(3)
    network = mlpinfer.Network(base.layers, input_transform=InputTransform(shift, multiplier))
    x = year_inputs(network, 5)
    before = network.predict(x)
    shift[:] = 0.0
    np.testing.assert_array_equal(network.predict(x), before)


@pytest.mark.parametrize(("transform", "message"), [
    (InputTransform(np.zeros(4), np.ones(3)), r"shift must have shape \(3,\).*got \(4,\)"),
    (InputTransform(np.zeros(3), np.ones((3, 1))), r"multiplier must have shape \(3,\)"),
    (InputTransform(np.array([0, np.nan, 0]), np.ones(3)), "shift has a non-finite value at feature 1"),
    (InputTransform(np.zeros(3), np.array([1, 1, np.inf])),
     "multiplier has a non-finite value at feature 2"),
    (InputTransform(np.zeros(3), ["a", "b", "c"]), "multiplier is not an array of numbers"),
    ((np.zeros(3), np.ones(3)), "input_transform must be an InputTransform or None, got tuple"),
])
def test_a_bad_transform_is_refused_naming_what_is_wrong(transform, message):
    with pytest.raises(WeightsError, match=message):
        mlpinfer.Network(year_network(3).layers, input_transform=transform)
