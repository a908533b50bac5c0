"""Weight files: the formats we read and write, and parameter sets they may not hold.
Hostile and broken files of each format are in hostile/."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import random_network, random_params, write

import mlpinfer
from mlpinfer import WeightsError

# --------------------------------------------------------------------------- good files

def test_textbook_pickle_has_fortran_weights_and_loads(sample_weight_path):
    with open(sample_weight_path, "rb") as f:
        raw = pickle.load(f)  # trusted here: the test compares against it
    assert not raw["W1"].flags.c_contiguous  # the real file stores W1..W3 Fortran-ordered
    network = mlpinfer.load(sample_weight_path)
    for i, layer in enumerate(network.layers, start=1):
        np.testing.assert_array_equal(layer.weights, raw[f"W{i}"])
        np.testing.assert_array_equal(layer.bias, raw[f"b{i}"])
        assert layer.weights.flags.c_contiguous
        assert not layer.weights.flags.writeable


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_of_a_weight_dict_loads(tmp_path, protocol):
    params = random_params()
    path = write(tmp_path / "w.pkl", pickle.dumps(params, protocol=protocol))
    network = mlpinfer.load(path, hidden="relu", output="identity")
    assert network.activations == ("relu", "identity")
    np.testing.assert_array_equal(network.layers[1].weights, params["W2"])


def test_float64_and_fortran_weights_are_converted_once(tmp_path):
    params = {k: np.asfortranarray(v.astype(np.float64)) for k, v in random_params().items()}
    network = mlpinfer.Network.from_params(params)
    for layer in network.layers:
        assert layer.weights.dtype == np.float32
        assert layer.weights.flags.c_contiguous


def test_npz_with_textbook_keys_loads(tmp_path):
    params = random_params()
    np.savez(tmp_path / "w.npz", **params)
    network = mlpinfer.load(tmp_path / "w.npz", output="sigmoid")
    assert network.activations == ("sigmoid", "sigmoid")


def test_format_is_recognised_by_content_not_name(tmp_path):
    params = random_params()
    with open(tmp_path / "really_an_npz.pkl", "wb") as stream:
        np.savez(stream, **params)
    write(tmp_path / "really_a_pickle.npz", pickle.dumps(params))
    for name in ("really_an_npz.pkl", "really_a_pickle.npz"):
        assert mlpinfer.load(tmp_path / name).n_outputs == 2


def test_native_format_round_trips_bit_exactly(tmp_path):
    network = mlpinfer.Network.from_params(random_params(), activations=["tanh", "softmax"],
                                           input_scale=0.25)
    mlpinfer.save(network, tmp_path / "net.npz")
    loaded = mlpinfer.load(tmp_path / "net.npz")
    assert loaded.activations == ("tanh", "softmax")
    assert loaded.input_scale == 0.25
    for mine, theirs in zip(network.layers, loaded.layers, strict=True):
        assert mine.weights.tobytes() == theirs.weights.tobytes()
        assert mine.bias.tobytes() == theirs.bias.tobytes()
    x = np.random.default_rng(1).integers(0, 256, (9, 4), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(x), network.predict(x))
    with zipfile.ZipFile(tmp_path / "net.npz") as archive:
        for name in archive.namelist():  # no pickled member: every array is plain
            assert b"pickle" not in archive.read(name)[:128]


def test_native_file_refuses_activation_arguments(tmp_path):
    mlpinfer.save(mlpinfer.Network.from_params(random_params()), tmp_path / "net.npz")
    with pytest.raises(WeightsError, match=r"records its activations.*hidden"):
        mlpinfer.load(tmp_path / "net.npz", hidden="relu")


def test_save_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    network = mlpinfer.Network.from_params(random_params())

    def failing_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        mlpinfer.save(network, tmp_path / "net.npz")
    assert os.listdir(tmp_path) == []


def test_network_pickles_for_worker_processes():
    network = mlpinfer.Network.from_params(random_params(), activations=["relu", "softmax"])
    clone = pickle.loads(pickle.dumps(network))
    assert repr(clone) == repr(network)
    x = np.random.default_rng(2).standard_normal((5, 4))
    np.testing.assert_array_equal(clone.predict(x), network.predict(x))


# --------------------------------------------------------------------------- inconsistent files

@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"W1": np.ones((2, 2)), "b1": np.ones(2), "W3": np.ones((2, 2)), "b3": np.ones(2)},
         r"without gaps; missing \['W2'\]"),
        ({"W1": np.ones((2, 2)), "b2": np.ones(2)}, r"missing \['b1'\]"),
        ({}, "no weights found"),
        ({"W1": np.ones((2, 2)), "b1": np.ones(2), "extra": np.ones(1)}, "unexpected key 'extra'"),
        ({"W1": np.ones((2, 3)), "b1": np.ones(3), "W2": np.ones((4, 2)), "b2": np.ones(2)},
         "layer 2: W has 4 rows, previous layer has 3 outputs"),
        ({"W1": np.ones((2, 3)), "b1": np.ones(2)}, r"layer 1: b has shape \(2,\), W has 3 columns"),
        ({"W1": np.ones(3), "b1": np.ones(3)}, r"W1 must be 2-D, got shape \(3,\)"),
        ({"W1": np.ones((2, 2), np.int64), "b1": np.ones(2)}, "W1 must be a float array, got dtype int64"),
        ({"W1": np.array([[1.0, np.nan], [0, 0]]), "b1": np.ones(2)}, r"W1 has a non-finite value at index \(0, 1\)"),
        ({"W1": np.full((2, 2), 1e300), "b1": np.ones(2)}, "W1 has a non-finite value.*as float32"),
        ({"W1": np.ones((0, 2)), "b1": np.ones(2)}, "at least one row"),
    ],
)
def test_inconsistent_parameters_are_refused(tmp_path, params, message):
    path = write(tmp_path / "w.pkl", pickle.dumps(params))
    with pytest.raises(WeightsError, match=message):
        mlpinfer.load(path)


def test_not_a_dict(tmp_path):
    with pytest.raises(WeightsError, match="found a pickled list"):
        mlpinfer.load(write(tmp_path / "w.pkl", pickle.dumps([np.ones(3)])))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WeightsError, match="neither an existing file nor a shipped network"):
        mlpinfer.load(tmp_path / "nope.pkl")
    with pytest.raises(WeightsError, match="cannot read weight file"):
        mlpinfer.load(tmp_path)


def test_softmax_over_one_output_is_refused_with_a_hint(tmp_path):
    gate = {"W1": np.ones((2, 1), np.float32), "b1": np.zeros(1, np.float32)}
    path = write(tmp_path / "gate.pkl", pickle.dumps(gate))
    with pytest.raises(WeightsError, match=r"softmax over a single output is always 1.*sigmoid"):
        mlpinfer.load(path)
    assert mlpinfer.load(path, output="sigmoid").classify([[1, 1]]) == 1


def test_softmax_only_as_last_layer():
    with pytest.raises(WeightsError, match="layer 1: softmax is only supported on the last layer"):
        mlpinfer.Network.from_params(random_params(), hidden="softmax")
    with pytest.raises(WeightsError, match="unknown activation 'swish'"):
        mlpinfer.Network.from_params(random_params(), output="swish")


# --------------------------------------------------------------------------- save and convert

def test_save_writes_the_format_its_suffix_names(tmp_path):
    network = mlpinfer.Network.from_params(random_params())
    mlpinfer.save(network, tmp_path / "net.npz")
    mlpinfer.save(network, tmp_path / "net.pkl")
    assert zipfile.is_zipfile(tmp_path / "net.npz")
    assert set(pickle.loads((tmp_path / "net.pkl").read_bytes())) == {"W1", "b1", "W2", "b2"}
    for name in ("net.npz", "net.pkl"):
        loaded = mlpinfer.load(tmp_path / name)
        assert loaded.activations == network.activations
        np.testing.assert_array_equal(loaded.layers[1].weights, network.layers[1].weights)
    with pytest.raises(ValueError, match=r"cannot tell the format to write from 'net.txt'"):
        mlpinfer.save(network, tmp_path / "net.txt")
    with pytest.raises(TypeError, match=r"save writes an mlpinfer\.Network, got dict"):
        mlpinfer.save(random_params(), tmp_path / "net.npz")


def test_convert_refuses_to_write_over_its_source(tmp_path):
    path = tmp_path / "net.npz"
    mlpinfer.save(mlpinfer.Network.from_params(random_params()), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="the destination is the source"):
        mlpinfer.convert(path, tmp_path / "." / "net.npz")
    assert path.read_bytes() == before


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True, "1"])
def test_max_bytes_must_be_a_positive_integer(tmp_path, max_bytes):
    path = write(tmp_path / "w.pkl", pickle.dumps(random_params()))
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        mlpinfer.load(path, max_bytes=max_bytes)


def test_network_knows_nothing_about_files():
    assert not {"save", "to_onnx", "load"} & set(dir(mlpinfer.Network))


@st.composite
def networks(draw):
    widths = draw(st.lists(st.integers(1, 9), min_size=2, max_size=5))
    hidden = st.sampled_from(["identity", "sigmoid", "relu", "tanh"])
    output = "softmax" if widths[-1] > 1 and draw(st.booleans()) else draw(hidden)
    activations = [draw(hidden) for _ in widths[2:]] + [output]
    scale = draw(st.one_of(st.none(), st.floats(1e-6, 1e6)))
    pixel_scale = draw(st.one_of(st.just("auto"), st.none(), st.floats(1e-6, 1e6)))
    # NumPy's str arrays drop trailing NULs: a class ending in one would not be itself.
    labels = st.one_of(st.integers(-2**63, 2**63 - 1),
                       st.text(st.characters(exclude_characters="\0"), max_size=5))
    classes = draw(st.one_of(st.none(), st.lists(labels, min_size=max(2, widths[-1]),
                                                 max_size=max(2, widths[-1]), unique=True)
                             .filter(lambda c: len({type(v) for v in c}) == 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return random_network(widths, rng=rng, activations=activations, input_scale=scale,
                          pixel_scale=pixel_scale, classes=classes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(network=networks(), suffix=st.sampled_from([".npz", ".pkl"]))
def test_property_what_is_saved_loads_back_bit_identical(tmp_path, network, suffix):
    textbook = network.activations == ("sigmoid",) * (len(network.layers) - 1) + ("softmax",)
    path = tmp_path / f"net{suffix}"
    textbook = (textbook and network.input_scale is None and network.pixel_scale == 1 / 255
                and network.classes is None)  # what a .pkl reads back as
    if suffix == ".pkl" and not textbook:
        with pytest.raises(WeightsError, match=r"write \.npz"):
            mlpinfer.save(network, path)
        return
    mlpinfer.save(network, path)
    loaded = mlpinfer.load(path)
    assert loaded.activations == network.activations
    assert loaded.input_scale == network.input_scale
    assert loaded.pixel_scale == network.pixel_scale
    assert repr(loaded.classes) == repr(network.classes)
    for got, want in zip(loaded.layers, network.layers, strict=True):
        assert got.weights.tobytes() == want.weights.tobytes()
        assert got.bias.tobytes() == want.bias.tobytes()
