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
    "future version": (b'{"format": "mlpinfer", "version": 2, "activations": []}', "version 2"),
    "activations not a list": (
        b'{"format": "mlpinfer", "version": 1, "activations": "relu"}', "list of names"),
    "too few activations": (
        b'{"format": "mlpinfer", "version": 1, "activations": ["relu"], "input_scale": null}',
        "got 1 activations for a network of 2 layers"),
    "unknown activation": (
        (b'{"format": "mlpinfer", "version": 1, "activations": ["gelu", "softmax"], '
        b'"input_scale": null}'), "unknown activation 'gelu'"),
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
