"""Weight files: the formats we read, and the ones we refuse without running them."""

from __future__ import annotations

import importlib
import os
import pickle
import zipfile

import numpy as np
import pytest
from support import MARKER, ReduceTo

import mlpinfer
from mlpinfer import WeightsError


def small_params(rng=None):
    rng = rng or np.random.default_rng(0)
    return {"W1": rng.standard_normal((4, 3)).astype(np.float32), "b1": np.zeros(3, np.float32),
            "W2": rng.standard_normal((3, 2)).astype(np.float32), "b2": np.ones(2, np.float32)}


def write(path, data: bytes):
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- good files

def test_textbook_pickle_has_fortran_weights_and_loads(sample_weight_path):
    with open(sample_weight_path, "rb") as f:
        raw = pickle.load(f)  # trusted here: the test compares against it
    assert not raw["W1"].flags.c_contiguous  # the real file stores W1..W3 Fortran-ordered
    network = mlpinfer.load(sample_weight_path)
    for i, layer in enumerate(network.layers, start=1):
        np.testing.assert_array_equal(layer.weights, raw[f"W{i}"])
        np.testing.assert_array_equal(layer.bias, raw[f"b{i}"])
        assert layer.weights.flags.c_contiguous and not layer.weights.flags.writeable


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_of_a_weight_dict_loads(tmp_path, protocol):
    params = small_params()
    path = write(tmp_path / "w.pkl", pickle.dumps(params, protocol=protocol))
    network = mlpinfer.load(path, hidden="relu", output="identity")
    assert network.activations == ("relu", "identity")
    np.testing.assert_array_equal(network.layers[1].weights, params["W2"])


def test_float64_and_fortran_weights_are_converted_once(tmp_path):
    params = {k: np.asfortranarray(v.astype(np.float64)) for k, v in small_params().items()}
    network = mlpinfer.Network.from_params(params)
    for layer in network.layers:
        assert layer.weights.dtype == np.float32 and layer.weights.flags.c_contiguous


def test_npz_with_textbook_keys_loads(tmp_path):
    params = small_params()
    np.savez(tmp_path / "w.npz", **params)
    network = mlpinfer.load(tmp_path / "w.npz", output="sigmoid")
    assert network.activations == ("sigmoid", "sigmoid")


def test_format_is_recognised_by_content_not_name(tmp_path):
    params = small_params()
    with open(tmp_path / "really_an_npz.pkl", "wb") as stream:
        np.savez(stream, **params)
    write(tmp_path / "really_a_pickle.npz", pickle.dumps(params))
    for name in ("really_an_npz.pkl", "really_a_pickle.npz"):
        assert mlpinfer.load(tmp_path / name).n_outputs == 2


def test_native_format_round_trips_bit_exactly(tmp_path):
    network = mlpinfer.Network.from_params(small_params(), activations=["tanh", "softmax"],
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
    mlpinfer.save(mlpinfer.Network.from_params(small_params()), tmp_path / "net.npz")
    with pytest.raises(WeightsError, match="records its activations.*hidden"):
        mlpinfer.load(tmp_path / "net.npz", hidden="relu")


def test_save_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    network = mlpinfer.Network.from_params(small_params())

    def failing_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        mlpinfer.save(network, tmp_path / "net.npz")
    assert os.listdir(tmp_path) == []


def test_network_pickles_for_worker_processes():
    network = mlpinfer.Network.from_params(small_params(), activations=["relu", "softmax"])
    clone = pickle.loads(pickle.dumps(network))
    assert repr(clone) == repr(network)
    x = np.random.default_rng(2).standard_normal((5, 4))
    np.testing.assert_array_equal(clone.predict(x), network.predict(x))


# --------------------------------------------------------------------------- hostile pickles

class ReduceWithState:
    """Rebuilds an allowed object, then hands it a state that is itself a call."""

    def __init__(self, constructor, state):
        self.constructor, self.state = constructor, state

    def __reduce__(self):
        return (*self.constructor, self.state)


def hostile_pickles(marker):
    import builtins
    import subprocess

    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    pickles = {}
    for protocol in (0, 2, 4, 5):
        pickles[f"os.system p{protocol}"] = pickle.dumps({"W1": ReduceTo(os.system, command)},
                                                        protocol=protocol)
        pickles[f"eval p{protocol}"] = pickle.dumps(ReduceTo(builtins.eval, code), protocol=protocol)
    pickles["subprocess.Popen"] = pickle.dumps(ReduceTo(subprocess.Popen, ["touch", str(marker)]))
    pickles["exec"] = pickle.dumps(ReduceTo(builtins.exec, code))
    pickles["getattr"] = pickle.dumps(
        ReduceTo(builtins.getattr, ReduceTo(importlib.import_module, "os"), "system"))
    pickles["__import__"] = pickle.dumps(ReduceTo(builtins.__import__, "os"))
    # Hand-written opcodes that pickle.dumps would not produce.
    pickles["INST"] = f"(S'{command}'\nios\nsystem\n.".encode()
    pickles["OBJ"] = f"(cos\nsystem\nS'{command}'\no.".encode()
    pickles["GLOBAL+REDUCE"] = f"cos\nsystem\n(S'{command}'\ntR.".encode()
    pickles["persistent id"] = b"P1\n."
    pickles["extension code"] = b"\x80\x02\x82\x01."
    # A dict of arrays whose array carries a hidden callable via BUILD state.
    pickles["BUILD __setstate__"] = pickle.dumps(
        ReduceWithState(np.ndarray.__reduce__(np.zeros(1))[:2], ReduceTo(os.system, command)))
    return pickles


@pytest.mark.parametrize("case", list(hostile_pickles("m")))
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER
    path = write(tmp_path / "evil.pkl", hostile_pickles(marker)[case])
    with pytest.raises(WeightsError) as raised:
        mlpinfer.load(path)
    assert not marker.exists(), "code from the pickle ran"
    message = str(raised.value)
    if "os.system" in case or case in ("INST", "OBJ", "GLOBAL+REDUCE", "BUILD __setstate__"):
        assert "os.system" in message or "posix.system" in message


def test_object_dtype_array_is_refused(tmp_path):
    """Refused where the pickle names the dtype: weights are numbers, and NumPy trusts
    the state it then sets on a dtype (a datetime one crashed it: SECURITY.md F17)."""
    params = small_params()
    params["W2"] = np.array([[1.0, "x"], [2.0, 3.0], [4.0, 5.0]], dtype=object)
    path = write(tmp_path / "w.pkl", pickle.dumps(params))
    with pytest.raises(WeightsError, match=r"refusing numpy dtype .O8. \(object\): weights are numbers"):
        mlpinfer.load(path)


# --------------------------------------------------------------------------- broken files

def test_empty_file(tmp_path):
    with pytest.raises(WeightsError, match="empty file"):
        mlpinfer.load(write(tmp_path / "w.pkl", b""))


def test_truncated_textbook_pickle(tmp_path, sample_weight_path):
    data = sample_weight_path.read_bytes()
    for cut in (1, 100, len(data) // 2, len(data) - 1):
        with pytest.raises(WeightsError):
            mlpinfer.load(write(tmp_path / "w.pkl", data[:cut]))


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(20):
        data = rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
        with pytest.raises(WeightsError):
            mlpinfer.load(write(tmp_path / f"r{i}.bin", data))


@pytest.mark.parametrize("declared", [2**33, 2**40])
def test_declared_huge_bytes_fail_fast(tmp_path, declared):
    # BINBYTES8 declaring gigabytes in a 14-byte file: refused without reading or
    # touching that much memory.
    data = b"\x80\x04\x8e" + declared.to_bytes(8, "little") + b"abc"
    with pytest.raises(WeightsError, match="truncated"):
        mlpinfer.load(write(tmp_path / "w.pkl", data))


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "w.npz", **small_params())
    data = (tmp_path / "w.npz").read_bytes()
    with pytest.raises(WeightsError):
        mlpinfer.load(write(tmp_path / "t.npz", data[: len(data) // 2]))


def test_npz_decompression_bomb_is_refused_before_inflating(tmp_path):
    params = dict(small_params(), W1=np.zeros((4, 40 * 2**20 // 16), np.float32))
    with open(tmp_path / "bomb.npz", "wb") as stream:
        np.savez_compressed(stream, **params)
    assert (tmp_path / "bomb.npz").stat().st_size < 2**20  # 40 MB of zeros in a few KB
    with pytest.raises(WeightsError, match=r"'W1.npy' \(inflating from .*budget of this load"):
        mlpinfer.load(tmp_path / "bomb.npz")


def test_npz_with_pickled_member_is_refused(tmp_path):
    params = dict(small_params(), W1=np.array([[1.0, None]] * 4, dtype=object))
    np.savez(tmp_path / "w.npz", **params)
    with pytest.raises(WeightsError, match="allow_pickle"):
        mlpinfer.load(tmp_path / "w.npz")


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
    with pytest.raises(WeightsError, match="softmax over a single output is always 1.*sigmoid"):
        mlpinfer.load(path)
    assert mlpinfer.load(path, output="sigmoid").classify([[1, 1]]) == 1


def test_softmax_only_as_last_layer():
    with pytest.raises(WeightsError, match="layer 1: softmax is only supported on the last layer"):
        mlpinfer.Network.from_params(small_params(), hidden="softmax")
    with pytest.raises(WeightsError, match="unknown activation 'gelu'"):
        mlpinfer.Network.from_params(small_params(), output="gelu")
