"""What uint8 input means: scaled only for networks known to expect it, else refused.

The rule (Network's docstring, README): uint8 pixels are multiplied by ``pixel_scale``.
It is 1/255 for the textbook's networks (sample_weight.pkl, the shipped ones, any
W1..Wn/b1..bn dict: the textbook's format, whose training normalises pixels), the
input scale for a network that scales its own input (a Keras Rescaling layer, an ONNX
Mul, a native file's input_scale), what a native file records, and otherwise unknown:
uint8 input is refused until the user states it.
"""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from framework_support import mnist_floats, write_foreign_onnx
from support import assert_close_to_reference, random_params, reference_outputs

import mlpinfer
from mlpinfer import WeightsError

UNKNOWN = "does not record the scale of the pixels it was trained on"
TRAIN = 3000


@pytest.fixture(scope="module")
def raw_pixel_classifier(mnist_test):
    """An MLPClassifier trained on raw 0..255 pixels, as scikit-learn users often do."""
    neural_network = pytest.importorskip("sklearn.neural_network")
    exceptions = pytest.importorskip("sklearn.exceptions")
    images, labels = mnist_test
    x = images.reshape(len(images), -1)
    model = neural_network.MLPClassifier((64,), max_iter=6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
        model.fit(x[:TRAIN], labels[:TRAIN])  # uint8, read by scikit-learn as 0..255
    return model


def test_raw_pixel_sklearn_model_is_refused_on_uint8_until_the_scale_is_stated(
        raw_pixel_classifier, mnist_test):
    from mlpinfer.importers import from_sklearn

    images, labels = mnist_test
    x_uint8 = images[TRAIN:].reshape(-1, 784)
    y = labels[TRAIN:]
    network = from_sklearn(raw_pixel_classifier)
    assert network.pixel_scale is None
    with pytest.raises(ValueError, match=UNKNOWN) as refused:
        network.accuracy(x_uint8, y)
    assert "with_pixel_scale(1.0)" in str(refused.value)
    theirs = raw_pixel_classifier.score(x_uint8, y)
    assert theirs > 0.5  # a model that learned something, so that agreement means something
    stated = network.with_pixel_scale(1.0)
    assert stated.accuracy(x_uint8, y) == pytest.approx(theirs, abs=2e-3)
    np.testing.assert_array_equal(stated.classify(x_uint8[:500]),
                                  raw_pixel_classifier.predict(x_uint8[:500]))
    # The same statement at import time; float input is the model's own numbers.
    assert from_sklearn(raw_pixel_classifier, pixel_scale=1.0).score(x_uint8, y) == \
        stated.accuracy(x_uint8, y)
    assert network.accuracy(x_uint8.astype(np.float32), y) == stated.accuracy(x_uint8, y)


def test_the_textbook_network_and_shipped_ones_scale_uint8_by_1_255(sample_weight_path,
                                                                     mnist_test):
    images, labels = mnist_test
    textbook = mlpinfer.load(sample_weight_path)
    assert textbook.pixel_scale == 1 / 255
    assert textbook.input_scale is None
    assert textbook.accuracy(images, labels) == 0.9352
    for name in ("digits", "fashion", "xor"):
        assert mlpinfer.load(name).pixel_scale == 1 / 255


def test_a_w_b_pickle_follows_the_textbook_unless_told(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps(random_params((6, 5, 3), rng=rng)))
    pixels = rng.integers(0, 256, (9, 6), dtype=np.uint8)
    textbook = mlpinfer.load(path)
    assert_close_to_reference(textbook.predict(pixels), reference_outputs(textbook, pixels, 1 / 255))
    raw = mlpinfer.load(path, pixel_scale=1.0)
    assert raw.pixel_scale == 1.0
    assert "pixel_scale=1.0" in repr(raw)
    assert_close_to_reference(raw.predict(pixels), reference_outputs(raw, pixels, 1.0))
    # Floats are the network's numbers whatever the pixel scale.
    floats = pixels.astype(np.float32)
    np.testing.assert_array_equal(raw.predict(floats), textbook.predict(floats))


def test_a_network_that_scales_its_input_takes_uint8_as_numbers():
    rng = np.random.default_rng(2)
    network = mlpinfer.Network.from_params(random_params((6, 5, 3), rng=rng), input_scale=0.5)
    assert network.pixel_scale == 0.5
    pixels = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    assert_close_to_reference(network.predict(pixels), reference_outputs(network, pixels, 0.5))


@pytest.mark.parametrize("suffix", [".npz", ".onnx", ".pt"])
@pytest.mark.parametrize(("input_scale", "pixel_scale"),
                         [(None, None), (None, 1.0), (None, 1 / 255), (None, 0.25), (0.5, None),
                          (0.5, 2.0)])
def test_written_files_record_the_pixel_scale_and_classes(tmp_path, suffix, input_scale,
                                                          pixel_scale):
    pytest.importorskip({".onnx": "onnx", ".pt": "torch"}.get(suffix, "numpy"))
    rng = np.random.default_rng(3)
    network = mlpinfer.Network.from_params(random_params((6, 5, 3), rng=rng), input_scale=input_scale,
                                           pixel_scale=pixel_scale, classes=["ant", "bee", "cat"])
    path = tmp_path / f"net{suffix}"
    mlpinfer.save(network, path)
    loaded = mlpinfer.load(path)
    assert loaded.pixel_scale == pixel_scale
    assert loaded.classes.tolist() == ["ant", "bee", "cat"]
    assert repr(loaded) == repr(network)
    pixels = rng.integers(0, 256, (3, 6), dtype=np.uint8)
    if pixel_scale is None:
        with pytest.raises(ValueError, match=UNKNOWN):
            loaded.predict(pixels)
        assert mlpinfer.load(path, pixel_scale=1.0).pixel_scale == 1.0
    else:
        np.testing.assert_array_equal(loaded.predict(pixels), network.predict(pixels))
        assert loaded.classify(pixels).tolist() == network.classify(pixels).tolist()
        other = 0.5 if pixel_scale != 0.5 else 1.0
        with pytest.raises(WeightsError, match="records pixel scale"):
            mlpinfer.load(path, pixel_scale=other)
        assert mlpinfer.load(path, pixel_scale=pixel_scale).pixel_scale == pixel_scale


def test_a_native_file_from_before_pixel_scale_keeps_its_meaning(tmp_path):
    rng = np.random.default_rng(4)
    params = random_params((6, 5, 3), rng=rng)
    for input_scale, expected in ((None, 1 / 255), (0.5, 0.5)):
        header = {"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"],
                  "input_scale": input_scale}
        np.savez(tmp_path / "old.npz", **params,
                 mlpinfer_header=np.frombuffer(json.dumps(header).encode(), np.uint8))
        assert mlpinfer.load(tmp_path / "old.npz").pixel_scale == expected


def test_an_onnx_model_without_a_scale_is_unknown_and_can_be_stated(tmp_path, mnist_test):
    pytest.importorskip("onnx")
    textbook = mlpinfer.load("digits")
    write_foreign_onnx(textbook, tmp_path / "net.onnx")  # no input scale: no Mul
    loaded = mlpinfer.load(tmp_path / "net.onnx")
    images = mnist_test[0][:50]
    with pytest.raises(ValueError, match=UNKNOWN):
        loaded.predict(images)
    stated = mlpinfer.load(tmp_path / "net.onnx", pixel_scale=1 / 255)
    np.testing.assert_array_equal(stated.predict(images), textbook.predict(images))
    floats, _ = mnist_floats((images, None))
    np.testing.assert_array_equal(loaded.predict(floats), textbook.predict(floats))


def test_the_cli_states_the_pixel_scale(tmp_path, capsys):
    pytest.importorskip("onnx")
    from mlpinfer._cli import main
    from mlpinfer._shipped import load_digits_sample
    write_foreign_onnx(mlpinfer.load("digits"), tmp_path / "net.onnx")
    images, labels = load_digits_sample()
    assert main(["evaluate", "--weights", str(tmp_path / "net.onnx"), "--json"]) == 2
    assert UNKNOWN in capsys.readouterr().err
    assert main(["evaluate", "--weights", str(tmp_path / "net.onnx"), "--json",
                 "--pixel-scale", "1/255"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == mlpinfer.load("digits").accuracy(images, labels)


@pytest.mark.parametrize("bad", [float("nan"), 1e300, "1/255", None])
def test_with_pixel_scale_wants_a_finite_number(bad):
    network = mlpinfer.load("xor")
    with pytest.raises((TypeError, WeightsError), match="pixel_scale"):
        network.with_pixel_scale(bad)


def test_info_and_bench_say_when_the_pixel_scale_is_not_recorded(tmp_path, capsys):
    pytest.importorskip("onnx")
    from mlpinfer._cli import main
    write_foreign_onnx(mlpinfer.load("digits"), tmp_path / "net.onnx")
    assert main(["info", str(tmp_path / "net.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pixel_scale"] is None
    assert main(["bench", "--weights", str(tmp_path / "net.onnx"), "--images", "8"]) == 2
    assert "does not record the scale of its pixels" in capsys.readouterr().err


def test_dask_keys_tell_networks_apart_by_pixel_scale():
    pytest.importorskip("dask")
    from mlpinfer.dask import _network_key

    network = mlpinfer.load("xor")
    assert _network_key(network).key != _network_key(network.with_pixel_scale(1.0)).key
    assert _network_key(network).key == _network_key(mlpinfer.load("xor")).key


def test_a_pickle_is_written_only_for_the_pixel_scale_it_reads_back_with(tmp_path):
    pytest.importorskip("onnx")
    write_foreign_onnx(mlpinfer.load("digits"), tmp_path / "net.onnx")
    # A .pkl reads back with uint8 pixels / 255: an unknown scale must not become that.
    with pytest.raises(WeightsError, match="uint8 pixels / 255"):
        mlpinfer.convert(tmp_path / "net.onnx", tmp_path / "net.pkl")
    assert not (tmp_path / "net.pkl").exists()
    mlpinfer.convert(tmp_path / "net.onnx", tmp_path / "net.pkl", pixel_scale=1 / 255)
    assert mlpinfer.load(tmp_path / "net.pkl").pixel_scale == 1 / 255
    with pytest.raises(WeightsError, match="uint8 pixels / 255"):
        mlpinfer.convert(tmp_path / "net.onnx", tmp_path / "raw.pkl", pixel_scale=1.0)
