"""The engine against the NumPy reference: every activation, awkward sizes, every layout."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import assert_close_to_reference, random_network

import mlpinfer
from mlpinfer import reference

ACTIVATIONS = ["identity", "sigmoid", "relu", "tanh", "softmax"]
HIDDEN = ["identity", "sigmoid", "relu", "tanh"]


def expected_outputs(network, x, scale=1.0):
    return reference.forward(network.layers, x, scale)


@pytest.mark.parametrize("output", ACTIVATIONS)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("batch", [0, 1, 7, 10_000])
@pytest.mark.parametrize("width", [1, 50, 513])
def test_awkward_sizes_match_reference(hidden, output, batch, width):
    rng = np.random.default_rng([batch, width, len(hidden), len(output)])
    network = random_network([width, 37, width, 3], rng=rng, hidden=hidden, output=output)
    x = rng.uniform(-2, 2, (batch, width)).astype(np.float32)
    actual = network.predict(x)
    assert actual.shape == (batch, 3)
    assert_close_to_reference(actual, expected_outputs(network, x))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts_give_identical_results(threads):
    rng = np.random.default_rng(1)
    network = random_network([784, 50, 100, 10], rng=rng, hidden="sigmoid", output="softmax")
    x = rng.uniform(0, 1, (3001, 784)).astype(np.float32)
    single = network.predict(x, threads=1)
    np.testing.assert_array_equal(network.predict(x, threads=threads), single)


def batch_views(rng, rows, cols):
    """The same values as each input path of the tile loader sees them."""
    pixels = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
    floats = rng.uniform(-1, 1, (rows, cols)).astype(np.float32)
    return {
        "float32": floats,
        "uint8": pixels,
        "float64": floats.astype(np.float64),
        "strided float32": np.asfortranarray(floats),
        "reversed uint8": pixels[::-1],
    }


def assert_same_bits(actual, expected):
    """Equal bit patterns: unlike ==, tells -0.0 from 0.0 (and compares NaNs)."""
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("output", ACTIVATIONS)
@pytest.mark.parametrize("kind", list(batch_views(np.random.default_rng(0), 1, 1)))
def test_rows_are_bit_identical_however_the_batch_is_split(output, kind):
    """A row's result does not depend on whether it runs in a tile (any lane, full or
    partial tile, or a half tile of 13-16 rows) or alone in the row kernel: batch_size,
    threads (and Dask chunks) change no bit. 300 outputs make a layer wider than one panel
    of any CPU."""
    rng = np.random.default_rng(11)
    network = random_network([333, 300, 50, 10], rng=rng, hidden="sigmoid", output=output)
    x = batch_views(rng, 1025, 333)[kind]
    whole = network.predict(x)
    for batch_size in (1, 7, 12, 13, 16, 17, 20, 21, 23, 24, 25, 31, 32, 33, 50, 100, 1000):
        assert_same_bits(network.predict(x, batch_size=batch_size), whole)
    assert_same_bits(network.predict(x, threads=1), whole)
    assert_same_bits(network.predict(x[5]), whole[5])
    scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    assert_close_to_reference(whole, expected_outputs(network, x, scale))


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
def test_negative_zero_keeps_its_sign_on_every_path(activation):
    """With FMA, a product that underflows leaves a -0.0 sum (without FMA, as in the
    sanitizer build, +0.0), which a -0.0 bias would keep: a lone row and the same row in a
    tile give the same sign (a broadcast written as 0 + x did not)."""
    network = mlpinfer.Network.from_params(
        {"W1": np.array([[-1e-30], [1.0]], np.float32), "b1": np.array([-0.0], np.float32)},
        activations=[activation])
    x = np.tile(np.array([[1e-30, -0.0]], np.float32), (40, 1))
    alone = network.predict(x[:1], threads=1)
    assert_same_bits(network.predict(x, threads=1), np.tile(alone, (40, 1)))


def sparse_rows(rng, rows, cols):
    """Rows that are mostly zeros, as digits are mostly background: 85% zeros, a third of
    them -0.0."""
    x = rng.uniform(-1, 1, (rows, cols)).astype(np.float32)
    zero = rng.random((rows, cols)) < 0.85
    x[zero] = np.where(rng.random(np.count_nonzero(zero)) < 1 / 3, -0.0, 0.0)
    return x


@pytest.mark.parametrize("output", ACTIVATIONS)
def test_skipped_zero_inputs_change_no_bit(output):
    """The kernels skip inputs that are zero in every row of a tile or row group. A row's
    result is the same whether its zeros are skipped (alone, or among zero rows) or
    multiplied (among dense rows, where no input is zero in every row), and matches the
    reference. The relu layer has dead units, so whole hidden columns are zero too."""
    rng = np.random.default_rng(21)
    network = random_network([200, 64, 40, 10], rng=rng, hidden="relu", output=output)
    params = network.params()
    params["b1"] = np.where(np.arange(64) % 3 == 0, np.float32(-100), params["b1"])
    network = mlpinfer.Network.from_params(params, activations=list(network.activations))
    sparse = sparse_rows(rng, 37, 200)
    dense = rng.uniform(-1, 1, (64, 200)).astype(np.float32)
    zeros = np.zeros((64, 200), np.float32)
    alone = np.stack([network.predict(row[None], threads=1)[0] for row in sparse])
    for neighbours in (dense, zeros):
        mixed = np.concatenate([neighbours[:5], sparse, neighbours[5:]])
        for threads in (1, 2):
            assert_same_bits(network.predict(mixed, threads=threads)[5:42], alone)
    assert_close_to_reference(alone, expected_outputs(network, sparse))


@pytest.mark.parametrize("rows", [1, 3, 40])
def test_nan_among_zeros_is_not_skipped(rows):
    """A NaN input in an otherwise zero batch reaches the sum: its row is all NaN, in the
    row kernel (1, 3 rows) and in a tile (40)."""
    network = random_network([100, 30, 4], rng=np.random.default_rng(22), hidden="sigmoid", output="softmax")
    x = np.zeros((rows, 100), np.float32)
    x[rows // 2, 77] = np.nan
    out = network.predict(x)
    assert np.isnan(out[rows // 2]).all()
    assert not np.isnan(np.delete(out, rows // 2, axis=0)).any()


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
def test_a_zero_sum_has_the_same_sign_whatever_its_neighbours(activation):
    """Row A's only product underflows (to -0.0 with FMA); row B is nonzero where A is zero,
    so A's zero input is visited beside B and skipped without it. Visiting it would turn
    a -0.0 sum into +0.0: every kernel ends a sum at +0.0, so A gives the same bits alone,
    among copies of itself and beside B (found in review: it did not)."""
    network = mlpinfer.Network.from_params(
        {"W1": np.array([[-0.3], [0.7]], np.float32), "b1": np.array([-0.0], np.float32)},
        activations=[activation])
    tiny = np.nextafter(np.float32(0), np.float32(1))
    row_a = np.array([[tiny, 0.0]], np.float32)
    row_b = np.array([[0.0, 1.0]], np.float32)
    alone = network.predict(row_a)
    for neighbours in (np.tile(row_a, (39, 1)), np.tile(row_b, (39, 1))):
        for rows in (2, 5, 40):  # row groups of 2 and 4, and a tile
            batch = np.concatenate([row_a, neighbours[: rows - 1]])
            assert_same_bits(network.predict(batch, threads=1)[:1], alone)


def test_very_wide_outputs_skip_the_tiles():
    """More than 4,096 outputs: no tiles (their per-thread buffers would grow with the
    layer), the row kernel and the BLAS instead; results match the reference."""
    rng = np.random.default_rng(12)
    network = random_network([8, 5000], rng=rng, hidden="relu", output="relu")
    x = rng.standard_normal((40, 8)).astype(np.float32)
    assert_close_to_reference(network.predict(x), expected_outputs(network, x))


@pytest.mark.parametrize("outputs", [1, 2, 11, 12, 13, 23, 24, 25, 37, 100, 513])
def test_every_panel_split_matches_reference(outputs):
    """Layer widths around the panel widths (12 on AVX-512, 2 elsewhere), in tiles of
    32 rows plus a remainder for the row kernel."""
    rng = np.random.default_rng(outputs)
    network = random_network([45, outputs, outputs], rng=rng, hidden="relu", output="identity")
    x = rng.uniform(-2, 2, (70, 45)).astype(np.float32)
    assert_close_to_reference(network.predict(x), expected_outputs(network, x))


@pytest.mark.parametrize("batch", [5, 100])
def test_identity_output_layers_round_once(batch):
    """Logits are summed in double and rounded to float32 once: within half an ulp of the
    exact result (float32 sums over 3,000 inputs are off by several ulps), in the row
    kernel (5 rows) and in tiles (100)."""
    rng = np.random.default_rng(batch)
    weights = rng.standard_normal((3000, 4)).astype(np.float32)
    network = mlpinfer.Network.from_params({"W1": weights, "b1": np.zeros(4, np.float32)},
                                           activations=["identity"])
    x = rng.standard_normal((batch, 3000)).astype(np.float32)
    exact = x.astype(np.float64) @ weights.astype(np.float64)  # every product is exact
    ulps = np.abs(network.predict(x) - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() <= 0.5 + 1e-6, f"{ulps.max():.2f} ulps from the exact sum"


def test_layers_too_wide_for_a_tile_go_to_the_blas():
    """More than 4,096 inputs: the row kernel up to 16 rows, OpenBLAS beyond for layers of
    more than 128 outputs; chunks of any size agree with the reference."""
    rng = np.random.default_rng(2)
    network = random_network([4097, 300, 5], rng=rng, hidden="tanh", output="softmax")
    x = rng.standard_normal((203, 4097))
    expected = expected_outputs(network, x)
    for batch_size in (1, 7, 16, 17, 100, 1000):
        assert_close_to_reference(network.predict(x, batch_size=batch_size), expected)


def test_empty_batch_gives_empty_output():
    network = random_network([4, 3, 2], rng=np.random.default_rng(3), hidden="relu", output="softmax")
    out = network.predict(np.zeros((0, 4), np.float32))
    assert out.shape == (0, 2)
    assert out.dtype == np.float32
    assert network.classify(np.zeros((0, 4))).shape == (0,)


def test_one_dimensional_input_gives_one_dimensional_output():
    network = random_network([4, 3, 2], rng=np.random.default_rng(4), hidden="relu", output="softmax")
    x = np.array([0.1, -0.2, 0.3, 0.4])
    out = network.predict(x)
    assert out.shape == (2,)
    assert_close_to_reference(out, expected_outputs(network, x))
    assert network.classify(x).shape == ()


def input_layouts(rng, rows, cols):
    base = rng.uniform(-1, 1, (rows, cols))
    fortran = np.asfortranarray(base.astype(np.float32))
    wide = rng.uniform(-1, 1, (rows * 2, cols * 3)).astype(np.float32)
    misaligned_bytes = np.zeros(rows * cols * 4 + 1, np.uint8)
    misaligned = np.frombuffer(misaligned_bytes.data, np.float32, rows * cols, offset=1).reshape(rows, cols)
    misaligned[...] = base
    readonly = base.astype(np.float32)
    readonly.flags.writeable = False
    return {
        "float32 C": base.astype(np.float32),
        "float64 C": base,
        "float32 Fortran": fortran,
        "float64 Fortran": np.asfortranarray(base),
        "row and column slice": wide[::2, 1::3],
        "column slice only": wide[:rows, :cols],
        "reversed rows": base.astype(np.float32)[::-1],
        "big-endian float32": base.astype(">f4"),
        "misaligned float32": misaligned,
        "read-only": readonly,
        "float16": base.astype(np.float16),
    }


@pytest.mark.parametrize("layout", list(input_layouts(np.random.default_rng(0), 2, 2)))
def test_input_layouts_match_reference(layout):
    rng = np.random.default_rng(5)
    network = random_network([29, 40, 6], rng=rng, hidden="sigmoid", output="softmax")
    x = input_layouts(rng, 301, 29)[layout]
    assert_close_to_reference(network.predict(x), expected_outputs(network, x.astype(np.float64)))


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_no_copy_of_the_batch_is_made_in_python(dtype, order):
    """The engine reads every dtype and layout in place, converting block by block:
    NumPy allocates nothing but the output, for any batch size."""
    import tracemalloc

    network = random_network([784, 50, 10], rng=np.random.default_rng(6), hidden="sigmoid", output="softmax")
    x = np.asarray(np.random.default_rng(7).uniform(0, 255, (20_000, 784)), dtype=dtype, order=order)
    output_bytes = 20_000 * 10 * 4
    tracemalloc.start()
    try:
        network.predict(x)
        network.predict(x, batch_size=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < output_bytes + 256 * 1024, f"peak {peak} bytes for a {x.nbytes}-byte input"


def test_uint8_is_scaled_inside_the_engine_unless_input_scale_says_otherwise():
    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (100, 16), dtype=np.uint8)
    network = random_network([16, 12, 4], rng=rng, hidden="sigmoid", output="softmax")
    assert_close_to_reference(network.predict(pixels), expected_outputs(network, pixels / 255.0))
    scaled = random_network([16, 12, 4], rng=np.random.default_rng(8), hidden="sigmoid", output="softmax",
                            input_scale=0.5)
    assert_close_to_reference(scaled.predict(pixels), expected_outputs(scaled, pixels * 0.5))
    floats = pixels.astype(np.float32)
    assert_close_to_reference(scaled.predict(floats), expected_outputs(scaled, floats * 0.5))


def test_sigmoid_and_softmax_are_stable_at_the_float32_extremes():
    network = mlpinfer.Network.from_params(
        {"W1": np.eye(4, dtype=np.float32), "b1": np.zeros(4, np.float32)},
        hidden="identity", output="sigmoid")
    x = np.array([[3e38, -3e38, 88.0, -88.0], [1e30, -1e30, 0.0, -0.0]], np.float32)
    with np.errstate(all="raise"):
        out = network.predict(x)
    np.testing.assert_array_equal(out[:, :2], [[1.0, 0.0], [1.0, 0.0]])
    assert_close_to_reference(out, expected_outputs(network, x))
    softmax = mlpinfer.Network.from_params(
        {"W1": np.eye(3, dtype=np.float32), "b1": np.zeros(3, np.float32)}, output="softmax")
    logits = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30], [5.0, 5.0, 5.0]], np.float32)
    probabilities = softmax.predict(logits)
    assert not np.isnan(probabilities).any()
    np.testing.assert_allclose(probabilities, [[1, 0, 0], [1 / 3] * 3, [1 / 3] * 3], atol=1e-7)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_in_a_row_poisons_that_row_only(activation):
    network = random_network([5, 7, 4], rng=np.random.default_rng(9), hidden="tanh", output=activation)
    x = np.random.default_rng(10).standard_normal((6, 5)).astype(np.float32)
    x[2, 3] = np.nan
    out = network.predict(x)
    assert np.isnan(out[2]).all()
    assert not np.isnan(np.delete(out, 2, axis=0)).any()
    labels = network.classify(x)
    assert labels[2] == -1
    assert (np.delete(labels, 2) >= 0).all()


@st.composite
def network_and_batch(draw):
    depth = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 600), min_size=depth + 1, max_size=depth + 1))
    activations = [draw(st.sampled_from(HIDDEN)) for _ in range(depth - 1)]
    # softmax over one output is refused (always 1), so a 1-wide output draws another.
    activations.append(draw(st.sampled_from(ACTIVATIONS if widths[-1] > 1 else HIDDEN)))
    batch = draw(st.integers(0, 700))
    dtype = draw(st.sampled_from(["float32", "float64", "uint8"]))
    layout = draw(st.sampled_from(["C", "F", "sliced"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return widths, activations, batch, dtype, layout, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_and_batch())
def test_property_any_network_any_input_matches_reference(case):
    widths, activations, batch, dtype, layout, seed = case
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(pairwise(widths), start=1):
        params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        params[f"b{i}"] = rng.standard_normal(n_out).astype(np.float32)
    network = mlpinfer.Network.from_params(params, activations=activations)
    if dtype == "uint8":
        source = rng.integers(0, 256, (batch, widths[0] * 2), dtype=np.uint8)
        scale = 1 / 255
    else:
        source = rng.uniform(-3, 3, (batch, widths[0] * 2)).astype(dtype)
        scale = 1.0
    x = {"C": np.ascontiguousarray(source[:, : widths[0]]),
         "F": np.asfortranarray(source[:, : widths[0]]),
         "sliced": source[:, ::2]}[layout]
    expected = reference.forward(
        [(layer.weights, layer.bias, layer.activation) for layer in network.layers],
        x, scale)
    assert_close_to_reference(network.predict(x), expected)
