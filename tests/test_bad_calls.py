"""A table of bad and awkward calls, each with its documented result: a clear error (type and
message) or a well-defined answer checked against the NumPy reference."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from support import assert_close_to_reference

import mlpinfer
from mlpinfer import Network, WeightsError
from mlpinfer.reference import forward as reference_forward

RNG = np.random.default_rng(42)
PARAMS = {"W1": RNG.standard_normal((4, 5)).astype(np.float32), "b1": RNG.standard_normal(5),
          "W2": RNG.standard_normal((5, 3)).astype(np.float32), "b2": RNG.standard_normal(3)}
NET = Network.from_params(PARAMS)  # 4 -> 5 sigmoid -> 3 softmax
X = RNG.standard_normal((6, 4)).astype(np.float32)
LAYERS = [(PARAMS["W1"], PARAMS["b1"], "sigmoid"), (PARAMS["W2"], PARAMS["b2"], "softmax")]


def reference(x, scale=1.0):
    return reference_forward(LAYERS, np.asarray(x, dtype=np.float64), scale)


@dataclass(frozen=True)
class Raises:
    error: type[BaseException]
    message: str


def same_as(expected: Callable[[], Any]) -> Callable[[Any], None]:
    """The answer equals, bit for bit, what ``expected()`` returns."""
    def check(result):
        want = expected()
        assert result.dtype == want.dtype
        assert result.shape == want.shape
        np.testing.assert_array_equal(result, want)
    return check


def like_reference(x, scale=1.0) -> Callable[[Any], None]:
    def check(result):
        assert_close_to_reference(result, reference(x, scale))
    return check


def with_nan_row(rows: int, nan_row: int) -> np.ndarray:
    x = X[:rows].copy()
    x[nan_row, 1] = np.nan
    return x


def misaligned() -> np.ndarray:
    raw = np.zeros(X.nbytes + 1, dtype=np.uint8)
    view = raw[1:].view(np.float32).reshape(X.shape)
    view[...] = X
    assert not view.flags.aligned
    return view


def read_only() -> np.ndarray:
    view = X.copy()
    view.flags.writeable = False
    return view


def huge_stride() -> np.ndarray:
    big = np.zeros((6000, 4), dtype=np.float32)
    big[::1000] = X
    return big[::1000]


def as_strided_view() -> np.ndarray:
    # Rows 40 KB apart inside one buffer, built with explicit strides.
    big = np.zeros((60_000, 4), dtype=np.float32)
    big[::10_000] = X
    return np.lib.stride_tricks.as_strided(big, shape=X.shape, strides=(10_000 * 16, 4))


def pandas_frame(dtype):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(X.astype(dtype), columns=list("abcd"))


def pandas_mixed():
    pd = pytest.importorskip("pandas")
    return pd.DataFrame({"a": [1.0], "b": ["x"], "c": [1.0], "d": [2.0]})


WIDTH = r"expected 4 features per sample"
DTYPE = r"expected float32, float64 or uint8 input, got dtype"
HINT = r"for pixels use x\.astype\(np\.uint8\), for numbers x\.astype\(np\.float32\)"

CASES = [
    # ------------------------------------------------------------ shapes
    pytest.param(lambda: NET.predict(np.ones((2, 3, 4))), Raises(ValueError, WIDTH + r".*\(2, 3, 4\)"),
                 id="rank 3, 12 values per sample"),
    pytest.param(lambda: NET.predict(np.ones((2, 5))), Raises(ValueError, WIDTH + r".*\(2, 5\)"),
                 id="wrong width"),
    pytest.param(lambda: NET.predict(np.ones((2, 0))), Raises(ValueError, WIDTH + r".*\(2, 0\)"),
                 id="0 width"),
    pytest.param(lambda: NET.predict(np.ones((0, 0))), Raises(ValueError, WIDTH), id="0 x 0"),
    pytest.param(lambda: NET.predict(np.array(1.0)), Raises(ValueError, WIDTH + r".*shape \(\)"),
                 id="0-d array"),
    pytest.param(lambda: NET.predict(1.0), Raises(ValueError, WIDTH + r".*shape \(\)"),
                 id="python scalar"),
    pytest.param(lambda: NET.predict(np.ones((2, 2, 2))), same_as(lambda: NET.predict(np.ones((2, 4)))),
                 id="(N, 2, 2) flattened to (N, 4)"),
    pytest.param(lambda: NET.predict(np.ones((0, 4))),
                 same_as(lambda: np.empty((0, 3), np.float32)), id="0 rows"),
    pytest.param(lambda: NET.predict(np.ones((0, 4)), batch_size=2),
                 same_as(lambda: np.empty((0, 3), np.float32)), id="0 rows with a batch size"),
    # ------------------------------------------------------------ dtypes
    pytest.param(lambda: NET.predict(None), Raises(TypeError, DTYPE + " object"), id="None"),
    pytest.param(lambda: NET.predict(np.ones((2, 4), dtype=object)), Raises(TypeError, DTYPE + " object"),
                 id="object array"),
    pytest.param(lambda: NET.predict(np.array([["1", "2", "3", "4"]])), Raises(TypeError, DTYPE + " <U1"),
                 id="string array"),
    pytest.param(lambda: NET.predict("1234"), Raises(TypeError, "expected an array of numbers, got str"),
                 id="str"),
    pytest.param(lambda: NET.predict(b"1234"), Raises(TypeError, "expected an array of numbers, got bytes"),
                 id="bytes"),
    pytest.param(lambda: NET.predict(np.ones((2, 4), complex)), Raises(TypeError, DTYPE + " complex128$"),
                 id="complex array"),
    pytest.param(lambda: NET.predict(np.ones((2, 4), bool)), Raises(TypeError, DTYPE + " bool; " + HINT),
                 id="bool array"),
    pytest.param(lambda: NET.predict(np.ones((2, 4), np.int64)), Raises(TypeError, DTYPE + " int64; " + HINT),
                 id="int64 array, with a hint"),
    pytest.param(lambda: NET.predict(np.ones((2, 4), np.uint16)), Raises(TypeError, DTYPE + " uint16; " + HINT),
                 id="uint16 array"),
    pytest.param(lambda: NET.predict(np.ones((2, 4), np.longdouble)), Raises(TypeError, DTYPE + " float128$"),
                 id="long double", marks=pytest.mark.skipif(np.dtype(np.longdouble).itemsize != 16,
                                                            reason="long double is float128 here")),
    pytest.param(lambda: NET.predict(np.zeros(2, dtype=[("a", "f4", (4,))])), Raises(TypeError, DTYPE),
                 id="structured array"),
    pytest.param(lambda: NET.predict(np.zeros((2, 4), "M8[s]")), Raises(TypeError, DTYPE + " datetime64"),
                 id="datetime64 array"),
    pytest.param(lambda: NET.predict(X.astype(np.float16)),
                 same_as(lambda: NET.predict(X.astype(np.float16).astype(np.float32))), id="float16 widened"),
    pytest.param(lambda: NET.predict(X.astype(">f4")), same_as(lambda: NET.predict(X)),
                 id="byte-swapped float32"),
    pytest.param(lambda: NET.predict(X.astype(">f8")), same_as(lambda: NET.predict(X.astype(np.float64))),
                 id="byte-swapped float64"),
    pytest.param(lambda: NET.predict((X * 40 + 128).clip(0, 255).astype(np.uint8)),
                 like_reference((X * 40 + 128).clip(0, 255).astype(np.uint8), 1 / 255),
                 id="uint8 is pixels, scaled by 1/255"),
    # ------------------------------------------------------------ lists and other containers
    pytest.param(lambda: NET.predict([[1, 2, 3, 4], [1, 2, 3]]), Raises(ValueError, "rectangular array"),
                 id="ragged list"),
    pytest.param(lambda: NET.predict([[1j, 0, 0, 0]]), Raises(TypeError, "got dtype complex128"),
                 id="list of complex"),
    pytest.param(lambda: NET.predict([[10**400, 0, 0, 0]]), Raises(TypeError, "got dtype object"),
                 id="list with an int beyond float64"),
    pytest.param(lambda: NET.predict([["1", "2", "3", "4"]]), Raises(TypeError, "got dtype <U1"),
                 id="list of numeric strings, refused like a string array"),
    pytest.param(lambda: NET.predict([[None, 0, 0, 0]]), Raises(TypeError, "got dtype object"),
                 id="list holding None, refused like an object array"),
    pytest.param(lambda: NET.predict([[0, 1, 2, 3], [3, 2, 1, 0]]),
                 like_reference([[0, 1, 2, 3], [3, 2, 1, 0]]), id="list of ints read as numbers"),
    pytest.param(lambda: NET.predict(tuple(X[0].tolist())), like_reference(X[0]), id="tuple is one sample"),
    pytest.param(lambda: NET.predict(x for x in X), Raises(TypeError, DTYPE + " object"), id="generator"),
    pytest.param(lambda: NET.predict({"a": 1}), Raises(TypeError, DTYPE + " object"), id="dict"),
    pytest.param(lambda: NET.predict(memoryview(X)), same_as(lambda: NET.predict(X)), id="memoryview"),
    pytest.param(lambda: NET.predict(memoryview(bytes(range(0, 256, 64)))),
                 same_as(lambda: NET.predict(np.arange(0, 256, 64, dtype=np.uint8))),
                 id="memoryview of bytes is uint8 pixels"),
    pytest.param(lambda: NET.predict(pandas_frame(np.float32)), same_as(lambda: NET.predict(X)),
                 id="pandas DataFrame float32"),
    pytest.param(lambda: NET.predict(pandas_frame(np.int64)), Raises(TypeError, DTYPE + " int64; " + HINT),
                 id="pandas DataFrame int64"),
    pytest.param(lambda: NET.predict(pandas_mixed()), Raises(TypeError, DTYPE + " object"),
                 id="pandas DataFrame with a string column"),
    # ------------------------------------------------------------ layouts
    pytest.param(lambda: NET.predict(read_only()), same_as(lambda: NET.predict(X)), id="read-only"),
    pytest.param(lambda: NET.predict(misaligned()), same_as(lambda: NET.predict(X)), id="misaligned"),
    pytest.param(lambda: NET.predict(huge_stride()), same_as(lambda: NET.predict(X)),
                 id="big[::1000] view"),
    pytest.param(lambda: NET.predict(as_strided_view()), same_as(lambda: NET.predict(X)),
                 id="as_strided 40 KB row stride"),
    pytest.param(lambda: NET.predict(X[::-1]), same_as(lambda: NET.predict(X)[::-1].copy()),
                 id="negative row stride"),
    pytest.param(lambda: NET.predict(np.asfortranarray(X)), same_as(lambda: NET.predict(X)),
                 id="Fortran order"),
    pytest.param(lambda: NET.predict(np.broadcast_to(X[2], (5, 4))),
                 same_as(lambda: np.repeat(NET.predict(X[2:3]), 5, axis=0)), id="zero row stride"),
    # ------------------------------------------------------------ non-finite input
    pytest.param(lambda: NET.predict(with_nan_row(6, 2)), like_reference(with_nan_row(6, 2)),
                 id="NaN row is NaN in that row only"),
    pytest.param(lambda: NET.predict(np.where(np.arange(4) == 0, np.inf, X)),
                 like_reference(np.where(np.arange(4) == 0, np.inf, X)), id="+inf inputs as the reference"),
    pytest.param(lambda: NET.predict(np.where(np.arange(4) == 3, -np.inf, X)),
                 like_reference(np.where(np.arange(4) == 3, -np.inf, X)), id="-inf inputs as the reference"),
    pytest.param(lambda: NET.classify(with_nan_row(6, 2)),
                 same_as(lambda: np.where(np.arange(6) == 2, -1, NET.classify(X))),
                 id="classify marks a NaN row -1"),
    pytest.param(lambda: NET.classify(with_nan_row(1, 0)[0]), same_as(lambda: np.int64(-1)),
                 id="classify of one NaN sample is -1"),
    # ------------------------------------------------------------ batch_size and threads
    pytest.param(lambda: NET.predict(X, batch_size=0), Raises(ValueError, "batch_size must be at least 1, got 0"),
                 id="batch_size 0"),
    pytest.param(lambda: NET.predict(X, batch_size=-1), Raises(ValueError, "batch_size must be at least 1, got -1"),
                 id="batch_size negative"),
    pytest.param(lambda: NET.predict(X, batch_size=2.0), Raises(TypeError, "batch_size must be a positive integer"),
                 id="batch_size float"),
    pytest.param(lambda: NET.predict(X, batch_size=True), Raises(TypeError, "batch_size must be a positive integer"),
                 id="batch_size bool"),
    pytest.param(lambda: NET.predict(X, batch_size="2"), Raises(TypeError, "batch_size must be a positive integer"),
                 id="batch_size str"),
    pytest.param(lambda: NET.predict(X, batch_size=np.int64(4)), like_reference(X), id="batch_size numpy int"),
    pytest.param(lambda: NET.predict(X, batch_size=10**30), same_as(lambda: NET.predict(X)),
                 id="batch_size beyond the rows"),
    pytest.param(lambda: NET.predict(X, threads=0), Raises(ValueError, "threads must be at least 1, got 0"),
                 id="threads 0"),
    pytest.param(lambda: NET.predict(X, threads=-2), Raises(ValueError, "threads must be at least 1"),
                 id="threads negative"),
    pytest.param(lambda: NET.predict(X, threads=1.0), Raises(TypeError, "threads must be a positive integer"),
                 id="threads float"),
    pytest.param(lambda: NET.predict(X, threads=2**32), Raises(ValueError, "threads"),
                 id="threads beyond unsigned int"),
    pytest.param(lambda: NET.predict(X, threads=1000), same_as(lambda: NET.predict(X)),
                 id="threads far above the CPUs"),
    # ------------------------------------------------------------ accuracy
    pytest.param(lambda: NET.accuracy(X, [0, 1]), Raises(ValueError, r"one label or one-hot row per sample \(6\), got shape \(2,\)"),
                 id="accuracy: too few labels"),
    pytest.param(lambda: NET.accuracy(np.ones((0, 4)), []), Raises(ValueError, "empty set is undefined"),
                 id="accuracy: no samples"),
    pytest.param(lambda: NET.accuracy(X, np.zeros((6, 3, 1))), Raises(ValueError, "one label or one-hot row"),
                 id="accuracy: 3-D labels"),
    pytest.param(lambda: NET.accuracy(X[0], 0), Raises(ValueError, r"got shape \(\)"),
                 id="accuracy: scalar label"),
    pytest.param(lambda: NET.accuracy(X, NET.classify(X), batch_size=0),
                 Raises(ValueError, "batch_size must be at least 1"), id="accuracy: batch_size 0"),
    pytest.param(lambda: NET.accuracy(with_nan_row(6, 2), NET.classify(X)),
                 lambda result: result == pytest.approx(5 / 6), id="accuracy: a NaN row counts as wrong"),
    pytest.param(lambda: NET.accuracy(X, np.eye(3)[NET.classify(X)]), lambda result: result == 1.0,
                 id="accuracy: one-hot labels"),
    pytest.param(lambda: NET.accuracy(X, ["a"] * 6), Raises(TypeError, "label"),
                 id="accuracy: string labels"),
    # ------------------------------------------------------------ load
    pytest.param(lambda: mlpinfer.load(None), Raises(TypeError, "NoneType"), id="load(None)"),
    pytest.param(lambda: mlpinfer.load(3), Raises(TypeError, "int"), id="load(int)"),
    pytest.param(lambda: mlpinfer.load(b"digits"), Raises(TypeError, "bytes"), id="load(bytes)"),
    pytest.param(lambda: mlpinfer.load("no-such-network"),
                 Raises(WeightsError, "neither an existing file nor a shipped network"), id="load(unknown name)"),
    pytest.param(lambda: mlpinfer.load("a\0b"), Raises(WeightsError, "neither an existing file"),
                 id="load(name with NUL)"),
    pytest.param(lambda: mlpinfer.load("/dev/null"), Raises(WeightsError, "empty file"), id="load(/dev/null)"),
    pytest.param(lambda: mlpinfer.load("digits", hidden="swish"), Raises(WeightsError, "unknown activation 'swish'"),
                 id="load(hidden=unknown)"),
    # ------------------------------------------------------------ from_params
    pytest.param(lambda: Network.from_params(None), Raises(TypeError, "mapping"), id="from_params(None)"),
    pytest.param(lambda: Network.from_params([("W1", 1)]), Raises(TypeError, "mapping"),
                 id="from_params(list)"),
    pytest.param(lambda: Network.from_params({"W1": "abc", "b1": np.ones(2)}),
                 Raises(WeightsError, "W1 must be a float array, got dtype <U3"), id="from_params: string weights"),
    pytest.param(lambda: Network.from_params({"W1": np.ones((2, 2), complex), "b1": np.ones(2)}),
                 Raises(WeightsError, "W1 must be a float array, got dtype complex128"),
                 id="from_params: complex weights"),
    pytest.param(lambda: Network.from_params({"W1": [[1.0, 2.0], [1.0]], "b1": [1.0, 2.0]}),
                 Raises(WeightsError, "W1"), id="from_params: ragged nested lists"),
    pytest.param(lambda: Network.from_params({"W1": np.ones((2, 0)), "b1": np.ones(0)}),
                 Raises(WeightsError, "at least one row and column, got 2x0"), id="from_params: 0 columns"),
    pytest.param(lambda: Network.from_params(PARAMS, activations=["relu"]),
                 Raises(WeightsError, "got 1 activations for a network of 2 layers"),
                 id="from_params: too few activations"),
    pytest.param(lambda: Network.from_params(PARAMS, input_scale=float("nan")),
                 Raises(WeightsError, "input_scale must be None or a number that float32 holds as finite, got nan"), id="from_params: NaN scale"),
    pytest.param(lambda: Network.from_params(PARAMS, input_scale=1e300),
                 Raises(WeightsError, "input_scale"), id="from_params: scale beyond float32"),
    pytest.param(lambda: Network.from_params(PARAMS, input_scale="x"),
                 Raises((TypeError, ValueError), "input_scale"), id="from_params: string scale"),
    pytest.param(lambda: Network.from_params({"W1": np.ones((2, 2), np.float16), "b1": np.ones((1, 2))}).n_outputs,
                 lambda result: result == 2, id="from_params: float16 W and a (1, n) bias row"),
    # ------------------------------------------------------------ set_num_threads
    pytest.param(lambda: mlpinfer.set_num_threads(0), Raises(ValueError, "threads must be at least 1, got 0"),
                 id="set_num_threads(0)"),
    pytest.param(lambda: mlpinfer.set_num_threads(-1), Raises(ValueError, "threads must be at least 1"),
                 id="set_num_threads(-1)"),
    pytest.param(lambda: mlpinfer.set_num_threads(2.0), Raises(TypeError, "positive integer, got 2.0"),
                 id="set_num_threads(float)"),
    pytest.param(lambda: mlpinfer.set_num_threads(True), Raises(TypeError, "positive integer, got True"),
                 id="set_num_threads(True)"),
    pytest.param(lambda: mlpinfer.set_num_threads("2"), Raises(TypeError, "positive integer, got '2'"),
                 id="set_num_threads(str)"),
    pytest.param(lambda: mlpinfer.set_num_threads(2**32), Raises(ValueError, "threads"),
                 id="set_num_threads(2**32)"),
]


@pytest.fixture(autouse=True)
def keep_thread_setting():
    before = mlpinfer.get_num_threads()
    yield
    mlpinfer.set_num_threads(before)


@pytest.mark.parametrize(("call", "expect"), CASES)
def test_bad_call(call, expect):
    if isinstance(expect, Raises):
        with pytest.raises(expect.error) as raised:
            call()
        assert re.search(expect.message, str(raised.value)), (
            f"message {str(raised.value)!r} does not match {expect.message!r}"
        )
        return
    result = call()
    outcome = expect(result)
    assert outcome is None or outcome, f"unexpected answer {result!r}"


# --------------------------------------------------------------------------- numeric edges

def one_layer(weights, bias, activation="softmax"):
    return Network.from_params({"W1": np.asarray(weights, np.float32), "b1": np.asarray(bias, np.float32)},
                               output=activation)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_logits_of_1e30_give_no_nan(sign):
    network = one_layer([[sign * 1e30, -sign * 1e30, 0.0]], [0.0, 0.0, 0.0])
    out = network.predict(np.array([[1.0], [-1.0], [0.0]]))
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    winner = 0 if sign > 0 else 1
    np.testing.assert_array_equal(out[0], np.eye(3, dtype=np.float32)[winner])
    np.testing.assert_array_equal(out[1], np.eye(3, dtype=np.float32)[1 - winner])
    np.testing.assert_allclose(out[2], 1 / 3, rtol=1e-6)


def test_bias_of_1e30_with_every_activation():
    for activation in ("identity", "sigmoid", "relu", "tanh", "softmax"):
        network = one_layer([[1.0, 1.0]], [1e30, -1e30], activation)
        out = network.predict(np.array([[0.5]]))
        assert not np.isnan(out).any(), (activation, out)


def test_equal_logits_give_a_uniform_softmax_and_the_first_label():
    network = one_layer(np.zeros((1, 7)), np.full(7, 5.0))
    out = network.predict(np.ones((3, 1)))
    np.testing.assert_allclose(out, np.full((3, 7), 1 / 7), rtol=1e-6)
    np.testing.assert_array_equal(network.classify(np.ones((3, 1))), [0, 0, 0])


def test_nan_row_stays_in_its_row_at_every_batch_size():
    x = np.repeat(X, 100, axis=0)
    x[137, 0] = np.nan
    clean = NET.predict(np.delete(x, 137, axis=0))
    for batch_size in (None, 1, 7, 256):
        out = NET.predict(x, batch_size=batch_size)
        assert np.isnan(out[137]).all()
        np.testing.assert_array_equal(np.delete(out, 137, axis=0), clean)
