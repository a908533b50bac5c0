"""Hostile and broken native files (an ``.npz`` with mlpinfer's JSON header): truncations,
header corruptions, extra arrays. Each must end in a `WeightsError` naming the file; what
loads must equal what `mlpinfer.save` wrote.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import assert_refused, native_bytes, npz_bytes, random_network, random_params, write

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer.formats import _npz

DEPTH = 100_000

def test_native_truncated_anywhere(tmp_path):
    data = native_bytes()
    for cut in range(1, len(data), 41):
        path = tmp_path / "net.npz"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            mlpinfer.load(path)



NATIVE_HEADERS = {
    "not JSON": (b"{format: mlpinfer", "corrupt mlpinfer header"),
    "not UTF-8": (b"\xff\xfe\x00", "corrupt mlpinfer header"),
    "100k nested arrays": (b"[" * DEPTH + b"]" * DEPTH, "header"),
    "wrong format name": (b'{"format": "onnx", "version": 1}', "not an mlpinfer network header"),
    "future version": (b'{"format": "mlpinfer", "version": 5, "activations": []}', "version 5"),
    "activations not a list": (
        b'{"format": "mlpinfer", "version": 1, "activations": "relu"}', "list of names"),
    "too few activations": (
        b'{"format": "mlpinfer", "version": 1, "activations": ["relu"], "input_scale": null}',
        "got 1 activations for a network of 2 layers"),
    "unknown activation": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["swish", "softmax"], '
        b'"input_scale": null}'), "unknown activation 'swish'"),
    "softmax in a hidden layer": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["softmax", "softmax"], '
        b'"input_scale": null}'), "softmax is only supported on the last layer"),
    "pixel_scale a string": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": null, "pixel_scale": "1/255"}'),
        "'pixel_scale' must be null or a number within float32's range"),
    "classes not a list": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": null, "classes": "ab"}'),
        "'classes' must be null or a list of numbers or strings"),
    "classes beyond int64": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": null, "classes": [1180591620717411303424, 1]}'),
        "classes must be numbers that int64 holds"),
    "classes of 5,000 digits": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": null, "classes": [' + b"9" * 5000 + b', 1]}'), "corrupt mlpinfer header"),
    "input_scale a string": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": "1/255"}'), "input_scale"),
    "input_scale NaN": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": NaN}'), "'input_scale' must be null or a number within float32's range"),
    "input_scale Infinity": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": -Infinity}'), "'input_scale' must be null or a number within float32's range"),
    "input_scale beyond float32": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": 1e300}'), "input_scale"),
    "input_scale a 400-digit integer": (
        b'{"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"], '
        b'"input_scale": 1' + b"0" * 400 + b"}", "input_scale"),
}


@pytest.mark.parametrize("case", list(NATIVE_HEADERS))
def test_native_header_corruptions(sandbox, case):
    header, match = NATIVE_HEADERS[case]
    assert_refused(sandbox, native_bytes(header=header), match, name="net.npz")


def test_native_file_with_an_extra_array_is_refused(tmp_path):
    data = npz_bytes(dict(random_params(), **{_npz.HEADER_KEY: np.frombuffer(
        json.dumps({"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"],
                    "input_scale": None}).encode(), np.uint8)}, W3=np.ones((2, 2))))
    path = tmp_path / "net.npz"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match="without gaps"):
        mlpinfer.load(path)



@pytest.mark.parametrize("input_scale", [None, 0.5, 1 / 255])
def test_what_loads_equals_what_was_saved(tmp_path, input_scale):
    network = random_network((7, 5, 4, 3), activations=["tanh", "relu", "softmax"],
                             input_scale=input_scale)
    path = tmp_path / "net.npz"
    mlpinfer.save(network, path)
    with np.load(path, allow_pickle=False) as archive:  # NumPy's reading of what was written
        header = json.loads(archive[_npz.HEADER_KEY].tobytes())
        written = {name: archive[name] for name in archive.files if name != _npz.HEADER_KEY}
    loaded = mlpinfer.load(path)
    assert list(loaded.activations) == header["activations"] == ["tanh", "relu", "softmax"]
    assert loaded.input_scale == header["input_scale"] == input_scale
    for index, layer in enumerate(loaded.layers, start=1):
        np.testing.assert_array_equal(layer.weights, written[f"W{index}"])
        np.testing.assert_array_equal(layer.bias, written[f"b{index}"])
        np.testing.assert_array_equal(layer.weights, network.layers[index - 1].weights)


def test_a_header_of_the_wrong_dtype_is_refused(sandbox):
    arrays = dict(random_network().params(), **{_npz.HEADER_KEY: np.zeros(3, np.float64)})
    assert_refused(sandbox, npz_bytes(arrays), "expected the header as uint8 bytes", name="net.npz")


def test_options_the_file_records_are_refused(tmp_path):
    path = write(tmp_path / "net.npz", native_bytes())
    with pytest.raises(WeightsError, match=r"records its activations and input scale; do not pass hidden, input_scale"):
        mlpinfer.load(path, hidden="relu", input_scale=2.0)


# --------------------------------------------------------------------------- LayerNorm
# A native file of a 4-3-2 network whose first layer has a LayerNorm: members W1, b1,
# W2, b2, gamma1, beta1 and a version 2 header; each case replaces the header's
# "norms" (or the whole header) or the LayerNorm members.
_GOOD_NORMS = [{"epsilon": 1e-5, "after_activation": False}, None]


def _norm_file(norms=_GOOD_NORMS, *, version=2, activations=("relu", "softmax"), **members):
    arrays = dict(random_params(dtype=np.float64))
    arrays.update(gamma1=np.ones(3), beta1=np.zeros(3))
    arrays.update(members)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    header = {"format": "mlpinfer", "version": version, "activations": list(activations),
              "input_scale": None, "norms": norms}
    arrays[_npz.HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    return npz_bytes(arrays)


NORM_CASES = {
    "norms not a list": ({"norms": "yes"}, "'norms' must be a list"),
    "norm entry with other keys": (
        {"norms": [{"epsilon": 1e-5}, None]}, "'norms' entry 1 must be null or"),
    "epsilon 0": ({"norms": [{"epsilon": 0, "after_activation": False}, None]},
                  "epsilon must be a positive number"),
    "epsilon negative": ({"norms": [{"epsilon": -1e-5, "after_activation": False}, None]},
                         "epsilon must be a positive number"),
    "epsilon a string": ({"norms": [{"epsilon": "1e-5", "after_activation": False}, None]},
                         "epsilon must be a positive number"),
    "epsilon beyond float32": ({"norms": [{"epsilon": 1e300, "after_activation": False}, None]},
                               "epsilon must be a positive number"),
    "epsilon that float32 rounds to 0": (
        {"norms": [{"epsilon": 1e-50, "after_activation": False}, None]},
        "epsilon must be a positive number that float32 holds"),
    "after_activation not a bool": ({"norms": [{"epsilon": 1e-5, "after_activation": 1}, None]},
                                    "after_activation true or false"),
    "too few norms": ({"norms": [None]}, "'norms' has 1 entries for a network of 2 layers"),
    "gamma missing": ({"gamma1": None}, r"missing \['gamma1'\]"),
    "a LayerNorm's members without a header entry": (
        {"norms": [None, None]}, r"unexpected \['beta1', 'gamma1'\]"),
    "LayerNorm members in a version 1 file": (
        {"version": 1}, r"unexpected \['beta1', 'gamma1'\]"),
    "gamma of the wrong length": ({"gamma1": np.ones(4)}, "gamma has shape \\(4,\\), the layer has 3"),
    "beta 2-D": ({"beta1": np.zeros((3, 3))}, "beta must be 1-D"),
    "gamma NaN": ({"gamma1": np.array([1.0, np.nan, 1.0])}, "gamma has a non-finite value"),
    "gamma of strings": ({"gamma1": np.array(["a", "b", "c"])}, "expected an array of numbers"),
    "gamma of a million rows": ({"gamma1": np.ones(10**6)}, "gamma has shape"),
    "a LayerNorm after softmax": (
        {"norms": [None, {"epsilon": 1e-5, "after_activation": True}], "gamma1": None, "beta1": None,
             "gamma2": np.ones(2), "beta2": np.zeros(2)}, "LayerNorm after softmax is not supported"),
}


@pytest.mark.parametrize("case", list(NORM_CASES))
def test_native_layer_norm_corruptions(sandbox, case):
    options, match = NORM_CASES[case]
    assert_refused(sandbox, _norm_file(**options), match, name="net.npz")


def test_a_native_file_with_layer_norms_round_trips(tmp_path):
    rng = np.random.default_rng(4)
    before = mlpinfer.Layer(rng.normal(size=(6, 5)), rng.normal(size=5), "gelu",
                            mlpinfer.LayerNorm(rng.normal(size=5), rng.normal(size=5), 1e-3))
    after = mlpinfer.Layer(rng.normal(size=(5, 4)), rng.normal(size=4), "hard_sigmoid(slope=0.2)",
                           mlpinfer.LayerNorm(rng.normal(size=4), rng.normal(size=4), 1e-5), True)
    last = mlpinfer.Layer(rng.normal(size=(4, 3)), rng.normal(size=3), "log_softmax")
    network = mlpinfer.Network([before, after, last], input_scale=0.5)
    path = tmp_path / "net.npz"
    mlpinfer.save(network, path)
    loaded = mlpinfer.load(path)
    assert repr(loaded) == repr(network)
    for got, want in zip(loaded.layers, network.layers, strict=True):
        assert got.activation == want.activation
        assert got.norm_after_activation == want.norm_after_activation
        if want.norm is not None:
            np.testing.assert_array_equal(got.norm.gamma, want.norm.gamma)
            np.testing.assert_array_equal(got.norm.beta, want.norm.beta)
            assert got.norm.epsilon == want.norm.epsilon
    x = rng.normal(size=(40, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), network.predict(x))
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(archive[_npz.HEADER_KEY].tobytes())["version"] == 2


def test_a_native_file_without_layer_norm_stays_version_1(tmp_path):
    path = tmp_path / "net.npz"
    mlpinfer.save(random_network(activations=["elu(alpha=0.5)", "softmax"]), path)
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive[_npz.HEADER_KEY].tobytes())
    assert header["version"] == 1
    assert "norms" not in header
    assert header["activations"] == ["elu(alpha=0.5)", "softmax"]


# ------------------------------------------------------------------ input transform
# A native file of a 4-3-2 network with an input transform: members W1, b1, W2, b2,
# input_shift, input_multiplier and a version 3 header; each case changes the header or
# the members.


def _transform_file(*, version=3, flag=True, **members):
    arrays = dict(random_params(dtype=np.float64))
    arrays.update(input_shift=np.full(4, 2000.0), input_multiplier=np.full(4, 0.1))
    arrays.update(members)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    header = {"format": "mlpinfer", "version": version, "activations": ["relu", "softmax"],
              "input_scale": None}
    if flag is not None:
        header["input_transform"] = flag
    arrays[_npz.HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    return npz_bytes(arrays)


TRANSFORM_CASES = {
    "flag a string": ({"flag": "yes"}, "'input_transform' must be true or false"),
    "flag 1": ({"flag": 1}, "'input_transform' must be true or false"),
    "members without the flag": ({"flag": None}, r"the header says false, found \['input_shift'"),
    "members in a version 2 file": ({"version": 2}, "the header says false"),
    "flag without the multiplier": ({"input_multiplier": None},
                                    r"the header says true, found \['input_shift'\]"),
    "flag without either": ({"input_multiplier": None, "input_shift": None},
                            "the header says true, found neither"),
    "float32 shift": ({"input_shift": np.full(4, 2000.0, np.float32)}, "must be float64"),
    "int multiplier": ({"input_multiplier": np.ones(4, np.int64)}, "must be float64"),
    "shift of the wrong length": ({"input_shift": np.zeros(5)},
                                  r"shift must have shape \(4,\).*got \(5,\)"),
    "multiplier 2-D": ({"input_multiplier": np.ones((4, 1))}, r"multiplier must have shape"),
    "NaN shift": ({"input_shift": np.array([0.0, np.nan, 0.0, 0.0])},
                  "shift has a non-finite value at feature 1"),
    "infinite multiplier": ({"input_multiplier": np.array([1.0, 1.0, 1.0, np.inf])},
                            "multiplier has a non-finite value at feature 3"),
    "a million shifts": ({"input_shift": np.zeros(10**6)}, "shift must have shape"),
}


@pytest.mark.parametrize("case", list(TRANSFORM_CASES))
def test_native_input_transform_corruptions(sandbox, case):
    options, match = TRANSFORM_CASES[case]
    assert_refused(sandbox, _transform_file(**options), match, name="net.npz")


def test_the_good_transform_file_loads(tmp_path):
    path = tmp_path / "net.npz"
    path.write_bytes(_transform_file())
    network = mlpinfer.load(path)
    np.testing.assert_array_equal(network.input_transform.shift, np.full(4, 2000.0))


def test_a_native_file_with_an_input_transform_round_trips_as_version_3(tmp_path):
    rng = np.random.default_rng(5)
    layers = [mlpinfer.Layer(rng.normal(size=(6, 5)), rng.normal(size=5), "tanh"),
              mlpinfer.Layer(rng.normal(size=(5, 3)), rng.normal(size=3), "softmax")]
    transform = mlpinfer.InputTransform(2000 + rng.normal(size=6), 1 / rng.uniform(5, 15, 6))
    network = mlpinfer.Network(layers, pixel_scale=1.0, input_transform=transform)
    path = tmp_path / "net.npz"
    mlpinfer.save(network, path)
    loaded = mlpinfer.load(path)
    assert repr(loaded) == repr(network)
    np.testing.assert_array_equal(loaded.input_transform.shift, transform.shift)
    np.testing.assert_array_equal(loaded.input_transform.multiplier, transform.multiplier)
    x = 2000 + rng.normal(size=(40, 6)) * 10
    np.testing.assert_array_equal(loaded.predict(x), network.predict(x))
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive[_npz.HEADER_KEY].tobytes())
    assert header["version"] == 3
    assert header["input_transform"] is True


def test_the_textbook_pickle_refuses_an_input_transform(tmp_path):
    network = mlpinfer.Network(
        random_network(activations=["sigmoid", "softmax"]).layers,
        input_transform=mlpinfer.InputTransform(np.zeros(4), np.ones(4)))
    with pytest.raises(WeightsError, match=r"a \.pkl records only weights.*input_transform="):
        mlpinfer.save(network, tmp_path / "net.pkl")
    assert not (tmp_path / "net.pkl").exists()


# ------------------------------------------------------------------ multi-label
# A native file of a 4-3-2 network with a version 4 header and its 'multilabel' flag.


def _multilabel_file(flag, output="sigmoid"):
    arrays = dict(random_params())
    header = {"format": "mlpinfer", "version": 4, "activations": ["relu", output],
              "input_scale": None, "multilabel": flag}
    arrays[_npz.HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    return npz_bytes(arrays)


@pytest.mark.parametrize(("flag", "output", "match"), [
    ("yes", "sigmoid", "'multilabel' must be true or false"),
    (1, "sigmoid", "'multilabel' must be true or false"),
    (True, "softmax", ("two or more sigmoid outputs, one per label; this network's output "
                       "is 2 softmax")),
])
def test_native_multilabel_corruptions(sandbox, flag, output, match):
    assert_refused(sandbox, _multilabel_file(flag, output), match, name="net.npz")


def test_only_a_multilabel_network_is_written_as_version_4(tmp_path):
    plain = random_network(output="sigmoid")
    multilabel = mlpinfer.Network(plain.layers, multilabel=True)
    for network, version in ((plain, 1), (multilabel, 4)):
        mlpinfer.save(network, tmp_path / "net.npz")
        with np.load(tmp_path / "net.npz") as arrays:
            header = json.loads(arrays[_npz.HEADER_KEY].tobytes())
        assert header["version"] == version
        assert header.get("multilabel", False) == network.multilabel
        assert mlpinfer.load(tmp_path / "net.npz").multilabel == network.multilabel
    (tmp_path / "good.npz").write_bytes(_multilabel_file(True))
    assert mlpinfer.load(tmp_path / "good.npz").multilabel
