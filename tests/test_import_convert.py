"""mlpinfer.convert: every format to every other, recognised by content, weights kept exactly."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from framework_support import assert_same_network

import mlpinfer
from mlpinfer import WeightsError

os.environ.setdefault("KERAS_BACKEND", "torch")  # see test_import_keras.py

# Keras's torch backend trips NumPy 2's __array__ deprecation in save(); Keras's to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

FRAMEWORK = {".onnx": "onnx", ".keras": "keras", ".pt": "torch", ".npz": None, ".pkl": None}


def needs(suffix):
    if FRAMEWORK[suffix]:
        pytest.importorskip(FRAMEWORK[suffix])


@pytest.mark.parametrize("suffix", list(FRAMEWORK))
def test_textbook_network_through_each_format(sample_weight_path, mnist_test, tmp_path, suffix):
    needs(suffix)
    original = mlpinfer.load(sample_weight_path)
    written = tmp_path / f"net{suffix}"
    assert_same_network(mlpinfer.convert(sample_weight_path, written), original)
    # Content decides, not the name.
    renamed = written.rename(tmp_path / "renamed.bin")
    # Every format but Keras's records the textbook's pixel scale; for .keras it is stated.
    back = mlpinfer.load(renamed, pixel_scale=1 / 255 if suffix == ".keras" else None)
    assert_same_network(back, original)
    assert back.pixel_scale == 1 / 255
    assert back.accuracy(*mnist_test) == pytest.approx(0.9352)


def test_a_chain_through_every_format_is_lossless(tmp_path):
    for suffix in FRAMEWORK:
        needs(suffix)
    rng = np.random.default_rng(0)
    network = mlpinfer.Network.from_params(
        {"W1": rng.standard_normal((12, 7)), "b1": rng.standard_normal(7),
         "W2": rng.standard_normal((7, 3)), "b2": rng.standard_normal(3)},
        activations=["tanh", "identity"], input_scale=0.25,
    )
    mlpinfer.save(network, tmp_path / "start.npz")
    current = tmp_path / "start.npz"
    for suffix in (".onnx", ".keras", ".pt", ".npz"):
        target = tmp_path / f"step{suffix}"
        mlpinfer.convert(current, target)
        current = target
    assert_same_network(mlpinfer.load(current), network)


def test_a_network_the_pickle_cannot_describe_is_refused(tmp_path):
    network = mlpinfer.Network.from_params({"W1": np.ones((2, 2)), "b1": np.zeros(2)},
                                           activations=["relu"])
    mlpinfer.save(network, tmp_path / "relu.npz")
    with pytest.raises(WeightsError, match=r"write \.npz"):
        mlpinfer.convert(tmp_path / "relu.npz", tmp_path / "relu.pkl")
    assert not (tmp_path / "relu.pkl").exists()


def test_a_keras_file_is_written_only_when_it_reads_back_the_same(tmp_path):
    needs(".keras")
    rng = np.random.default_rng(1)
    params = {"W1": rng.standard_normal((4, 3)), "b1": rng.standard_normal(3)}
    pixels = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    for settings in ({"classes": ["a", "b", "c"]}, {"input_scale": 0.5, "pixel_scale": 1.0},
                     {"input_scale": 0.5, "pixel_scale": None}):
        network = mlpinfer.Network.from_params(params, **settings)
        with pytest.raises(WeightsError, match=r"records no classes.*write \.npz, \.onnx or \.pt"):
            mlpinfer.save(network, tmp_path / "net.keras")
        assert not (tmp_path / "net.keras").exists()
    # uint8 read as float input, or a pixel scale that becomes unknown (uint8 then refused):
    for settings, read_back in (({"input_scale": 0.5}, 0.5), ({}, None)):
        network = mlpinfer.Network.from_params(params, **settings)
        mlpinfer.save(network, tmp_path / "net.keras")
        loaded = mlpinfer.load(tmp_path / "net.keras")
        assert loaded.pixel_scale == read_back
        if read_back is not None:
            np.testing.assert_array_equal(loaded.predict(pixels), network.predict(pixels))


def test_textbook_pickle_is_a_plain_pickle(sample_weight_path, tmp_path):
    mlpinfer.convert(sample_weight_path, tmp_path / "copy.pkl")
    with open(tmp_path / "copy.pkl", "rb") as stream:
        params = pickle.load(stream)  # trusted: written by the test
    assert sorted(params) == ["W1", "W2", "W3", "b1", "b2", "b3"]


def test_unknown_destination_suffix_names_the_choices(sample_weight_path, tmp_path):
    with pytest.raises(ValueError, match=r"\.onnx \(ONNX model\)"):
        mlpinfer.convert(sample_weight_path, tmp_path / "net.h5")


@pytest.mark.parametrize("suffix", [".onnx", ".keras", ".pt"])
def test_load_reads_every_format_by_content(sample_weight_path, tmp_path, suffix):
    needs(suffix)
    path = tmp_path / "net.bin"  # a name that says nothing: the content decides
    network = mlpinfer.convert(sample_weight_path, tmp_path / f"net{suffix}")
    (tmp_path / f"net{suffix}").rename(path)
    # ONNX and PyTorch files record the textbook's pixel scale; for .keras it is stated.
    loaded = mlpinfer.load(path, pixel_scale=1 / 255 if suffix == ".keras" else None)
    assert repr(loaded) == repr(network)
    x = np.random.default_rng(0).integers(0, 256, (7, 784), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(x), network.predict(x))


def test_load_names_a_legacy_keras_h5(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(WeightsError, match="HDF5 file"):
        mlpinfer.load(path)


def test_options_a_self_describing_file_does_not_take_are_refused(sample_weight_path, tmp_path):
    pytest.importorskip("onnx")
    mlpinfer.convert(sample_weight_path, tmp_path / "net.onnx")
    with pytest.raises(WeightsError, match="do not pass hidden"):
        mlpinfer.load(tmp_path / "net.onnx", hidden="relu")
