"""Hostile and broken pickles: every opcode path to a callable, code hidden in containers
and states, hashing and nesting attacks, memo reuse, BUILD twice, declared sizes beyond the
file, and the fuzz findings. Each must end in a `WeightsError` naming the file, with no side
effect, no crash, within the budget; what loads must equal what the file says.
"""

from __future__ import annotations

import copyreg
import importlib
import os
import pickle
import pickletools
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from support import (
    MARKER,
    ReduceTo,
    assert_refused,
    bytes_read_by_this_process,
    random_params,
    refused_in_fresh_process,
    write,
)

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer.formats._unpickler import MAX_DEPTH

# A load that fails on a tiny file must not have built anything big on the way.
SMALL_PEAK = 8 * 2**20

# --------------------------------------------------------------------------- opcode paths

def _text(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _stack_global(module: str, name: str) -> bytes:
    return _text(module) + _text(name) + b"\x93"


COMMAND = f"touch {MARKER}"

OPCODE_CASES = {
    # STACK_GLOBAL (protocol 4) built by hand, then REDUCE / NEWOBJ / NEWOBJ_EX.
    "STACK_GLOBAL os.system REDUCE": (
        b"\x80\x04" + _stack_global("os", "system") + _text(COMMAND) + b"\x85R.", "os.system"),
    "STACK_GLOBAL builtins.getattr": (
        b"\x80\x04" + _stack_global("builtins", "getattr") + b"N" + _text("x") + b"\x86R.",
        "builtins.getattr"),
    "NEWOBJ subprocess.Popen": (
        b"\x80\x02csubprocess\nPopen\n" + b"(" + _text("touch") + _text(MARKER) + b"l\x85\x81.",
        "subprocess.Popen"),
    "NEWOBJ_EX subprocess.Popen": (
        b"\x80\x04" + _stack_global("subprocess", "Popen") + b"(" + _text("touch") + _text(MARKER)
        + b"l\x85}\x92.", "subprocess.Popen"),
    "INST builtins.exec": (
        f"(S'open({MARKER!r}, \"w\")'\nibuiltins\nexec\n.".encode(), "builtins.exec"),
    "OBJ posix.system": (b"\x80\x02(cposix\nsystem\n" + _text(COMMAND) + b"o.", "posix.system"),
    "GLOBAL copyreg._reconstructor": (b"ccopyreg\n_reconstructor\n.", "copyreg._reconstructor"),
    "GLOBAL numpy.load": (b"cnumpy\nload\n.", "numpy.load"),
    "GLOBAL numpy.core.multiarray.scalar": (
        b"cnumpy.core.multiarray\nscalar\n.", "numpy.core.multiarray.scalar"),
    "BINPERSID": (b"\x80\x02" + _text("x") + b"Q.", "persistent IDs"),
    "_codecs.encode through rot13": (
        b"c_codecs\nencode\n(S'abc'\nS'rot13'\ntR.", "refusing _codecs.encode"),
    "_codecs.encode of a non-string": (
        b"c_codecs\nencode\n(I1\nS'latin1'\ntR.", "refusing _codecs.encode"),
    # BUILD on allowed objects whose state is not what they expect.
    "BUILD on a dict": (b"\x80\x02}" + b"}" + _text("__class__") + b"Ns" + b"b.", None),
    "BUILD np.dtype with a nonsense state": (
        b"\x80\x02cnumpy\ndtype\n" + _text("f4") + b"\x85R" + b"(K\x03" + _text("|") + b"t" + b"b.",
        None),
}


@pytest.mark.parametrize("case", list(OPCODE_CASES))
def test_opcode_path_to_a_callable_is_assert_refused(sandbox, case):
    data, match = OPCODE_CASES[case]
    assert_refused(sandbox, data, match)


@pytest.mark.parametrize("width", ["EXT1", "EXT2", "EXT4"])
def test_registered_extension_code_cannot_reach_a_callable(sandbox, width):
    # With a copyreg registration in this process, EXT opcodes name os.system without
    # spelling it; extension codes are refused whatever they name.
    code = {"EXT1": 0xF1, "EXT2": 0xF1F1, "EXT4": 0xF1F1F1}[width]
    copyreg.add_extension(os.system.__module__, "system", code)
    try:
        data = pickle.dumps({"W1": ReduceTo(os.system, COMMAND)}, protocol=2)
        opcode = {"EXT1": b"\x82", "EXT2": b"\x83", "EXT4": b"\x84"}[width]
        assert opcode in data
        assert_refused(sandbox, data, "refusing an extension code")
    finally:
        copyreg.remove_extension(os.system.__module__, "system", code)


def _containers(hidden):
    return {
        "dict value": {"W1": hidden, "b1": np.ones(3)},
        "list in a dict": {"W1": [[1.0, hidden]], "b1": np.ones(3)},
        "tuple in a list": {"W1": [(hidden,)], "b1": np.ones(3)},
        "dict in a dict": {"W1": {"inner": {"deeper": hidden}}, "b1": np.ones(3)},
        "dict key": {hidden: np.ones(3)},
        "set": {"W1": {1.0, hidden}},
        "frozenset": {"W1": frozenset([hidden])},
        "top level list": [np.ones(3), hidden],
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("where", list(_containers(None)))
def test_callable_hidden_in_containers_every_protocol(sandbox, where, protocol):
    data = pickle.dumps(_containers(ReduceTo(os.system, COMMAND))[where], protocol=protocol)
    # Protocols 0-3 spell a set as a call of builtins.set, 4 and 5 with set opcodes: both
    # are refused before os.system is seen.
    assert_refused(sandbox, data, "refusing to load global '((os|posix).system|(builtins|__builtin__)"
                           ".(frozen)?set)'|refusing a set")



# --------------------------------------------------------------------------- code in pickles

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
    params = random_params()
    params["W2"] = np.array([[1.0, "x"], [2.0, 3.0], [4.0, 5.0]], dtype=object)
    path = write(tmp_path / "w.pkl", pickle.dumps(params))
    with pytest.raises(WeightsError, match=r"refusing numpy dtype .O8. \(object\): weights are numbers"):
        mlpinfer.load(path)


# --------------------------------------------------------------------------- resource bombs

def load_peak(path) -> tuple[BaseException | None, int, float]:
    """(error, peak traced bytes, CPU seconds) of mlpinfer.load(path). CPU time, not wall
    time: the bound must not depend on what else the machine is running."""
    tracemalloc.start()
    start = time.process_time()
    error = None
    try:
        mlpinfer.load(path)
    except WeightsError as raised:
        error = raised
    finally:
        seconds = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak, seconds


def test_memo_reuse_at_top_level_is_cheap(tmp_path):
    level = [1.0]
    for _ in range(8):
        level = [level] * 1000  # 10^24 leaves, a few KB pickled thanks to the memo
    path = tmp_path / "laughs.pkl"
    path.write_bytes(pickle.dumps(level, protocol=4))
    error, peak, _ = load_peak(path)
    assert error is not None
    assert "found a pickled list" in str(error)
    assert peak < SMALL_PEAK


def test_memo_reuse_inside_a_weight_is_refused_before_expansion(tmp_path):
    # 3 levels of 150 shared references: 3.4 million floats from a 1 KB file.
    # A weight must be an array stored in the file, not a list to expand.
    level = [1.0]
    for _ in range(3):
        level = [level] * 150
    path = tmp_path / "laughs.pkl"
    path.write_bytes(pickle.dumps({"W1": level, "b1": [1.0]}, protocol=4))
    assert path.stat().st_size < 2000
    error, peak, _ = load_peak(path)
    assert error is not None
    assert peak < SMALL_PEAK, f"a {path.stat().st_size}-byte file made the loader allocate {peak} bytes"


def test_memo_index_far_beyond_the_file_is_cheap(tmp_path):
    # LONG_BINPUT 2^24: the C unpickler grows its memo table past the index, 256 MB here
    # (5 GB for the index 680825748 that fuzz_weights found) from a 10-byte file.
    path = tmp_path / "w.pkl"
    path.write_bytes(b"\x80\x04}r" + struct.pack("<I", 2**24) + b".")
    error, peak, _ = load_peak(path)
    assert peak < SMALL_PEAK, f"a 10-byte file made the loader allocate {peak / 2**20:.0f} MB"
    assert error is not None


def test_self_referencing_list(sandbox):
    cycle: list = []
    cycle.append(cycle)
    assert_refused(sandbox, pickle.dumps({"W1": cycle, "b1": np.ones(1)}))


DEPTH = 100_000

DEEP = {
    "lists": b"\x80\x02" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b".",
    "tuples": b"\x80\x02N" + b"\x85" * DEPTH + b".",
    "dicts": b"\x80\x02" + (b"}" + _text("W1")) * DEPTH + b"}" + b"s" * DEPTH + b".",
    "lists under W1": b"\x80\x02}(" + _text("W1") + b"]" * DEPTH + b"a" * (DEPTH - 1)
                      + _text("b1") + b"]u.",
    "MARKs": b"\x80\x02" + b"(" * DEPTH + b"t" * DEPTH + b".",
}


@pytest.mark.parametrize("shape", list(DEEP))
def test_deep_nesting(sandbox, shape):
    assert_refused(sandbox, DEEP[shape])


class ArrayFromState:
    """Pickles like an ndarray whose header and data the test chooses."""

    def __init__(self, reconstruct_args, state=None):
        self.reconstruct_args, self.state = reconstruct_args, state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        if self.state is None:
            return _reconstruct, self.reconstruct_args
        return _reconstruct, self.reconstruct_args, self.state


def test_build_state_declaring_a_trillion_elements_fails_fast(tmp_path):
    fake = ArrayFromState((np.ndarray, (0,), b"b"),
                          (1, (10**6, 10**6), np.dtype(np.float32), False, bytes(16)))
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"W1": fake, "b1": np.ones(1)}, protocol=2))
    error, peak, seconds = load_peak(path)
    assert error is not None
    assert "needs 4000000000000 bytes, the file gives 16" in str(error)
    assert peak < SMALL_PEAK
    assert seconds < 1


def test_protocol5_buffer_with_a_huge_shape_fails_fast(tmp_path):
    from numpy._core.numeric import _frombuffer

    # Protocol 5 rebuilds arrays through _frombuffer(buffer, dtype, shape, order): declare
    # 10^12 elements over 96 bytes actually stored.
    fake = ReduceTo(_frombuffer, bytearray(96), np.dtype(np.float64), (10**6, 10**6), "C")
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"W1": fake, "b1": np.ones(1)}, protocol=5))
    error, peak, seconds = load_peak(path)
    assert error is not None
    assert peak < SMALL_PEAK
    assert seconds < 1


@pytest.mark.parametrize(
    "how",
    [
        # What numpy writes is _reconstruct(ndarray, (0,), b"b") then the data; a file
        # may instead ask for the full shape up front and bring no data at all.
        pytest.param(lambda: ArrayFromState((np.ndarray, (4000, 4000), "f8")), id="_reconstruct shape"),
        pytest.param(lambda: ReduceTo(np.ndarray, (4000, 4000), "f8"), id="ndarray REDUCE"),
    ],
)
def test_array_without_data_in_the_file_is_refused_without_allocating(tmp_path, how):
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"W1": how(), "b1": np.ones(1)}, protocol=2))
    assert path.stat().st_size < 1000
    error, peak, _ = load_peak(path)
    assert peak < SMALL_PEAK, (
        f"a {path.stat().st_size}-byte file made the loader allocate {peak / 2**20:.0f} MB"
    )
    assert error is not None



SPARSE = {
    # name: (first bytes, file suffix)
    "zeros": (b"", ".pkl"),
    "pickle header then zeros": (b"\x80\x04", ".pkl"),
    # FRAME declares the whole file as one frame; pickle.dumps never writes frames above
    # ~64 KB, so the loader has no reason to read this one before looking at it.
    "pickle FRAME over the whole file": (b"\x80\x04\x95" + struct.pack("<Q", 2**30), ".pkl"),
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts reads in /proc/self/io")
@pytest.mark.parametrize("case", list(SPARSE))
def test_gigabytes_of_garbage_are_not_read(tmp_path, case):
    head, suffix = SPARSE[case]
    path = tmp_path / f"garbage{suffix}"
    with open(path, "wb") as stream:
        stream.write(head)
        stream.truncate(2**30 + len(head))  # sparse: costs no disk
    before = bytes_read_by_this_process()
    start = time.process_time()
    with pytest.raises(WeightsError):
        mlpinfer.load(path)
    read = bytes_read_by_this_process() - before
    assert read < 2**20, f"read {read} bytes of a 1 GB garbage file"
    assert time.process_time() - start < 2



# --------------------------------------------------------------------------- broken pickles

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


# --------------------------------------------------------------------------- fuzz findings

REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "regressions"


@pytest.mark.parametrize("name", sorted(p.name for p in REGRESSIONS.glob("*.pkl")))
def test_fuzz_finding_is_assert_refused(sandbox, name):
    """Inputs that fuzz/ found escaping as another exception type; see SECURITY.md."""
    assert_refused(sandbox, (REGRESSIONS / name).read_bytes(), name=name)



# --------------------------------------------------------------------------- what the file says

def _fragment(obj) -> bytes:
    """The opcodes that push ``obj`` (protocol 3: bytes as BINBYTES; without PROTO, STOP or
    unused memo entries), to splice into a hand-built pickle whose own memo entries are
    numbered from 200 on."""
    return pickletools.optimize(pickle.dumps(obj, protocol=3))[2:-1]


def _key(name: str) -> bytes:
    return _text(name)


TIED = np.arange(12, dtype=np.float32).reshape(4, 3) / 7

BENIGN = {
    **{f"protocol {p}": (random_params((5, 4, 3)), p) for p in range(pickle.HIGHEST_PROTOCOL + 1)},
    "float64 and Fortran order": (
        {key: np.asfortranarray(value.astype(np.float64))
         for key, value in random_params((6, 5, 2)).items()}, 2),
    "big-endian": ({key: value.astype(">f4") for key, value in random_params((3, 3, 2)).items()}, 4),
    "one array used by two layers": (
        {"W1": TIED[:, :3], "b1": np.zeros(3, np.float32), "W2": TIED[:3, :3],
         "b2": np.zeros(3, np.float32)}, 4),
    "a (1, n) bias row": ({"W1": np.ones((2, 3), np.float32), "b1": np.ones((1, 3), np.float32)}, 3),
}


@pytest.mark.parametrize("case", list(BENIGN))
def test_what_loads_equals_what_the_file_says(tmp_path, case):
    """Checked against Python's own unpickler, which may read these files: we wrote them."""
    params, protocol = BENIGN[case]
    data = pickle.dumps(params, protocol=protocol)
    expected = pickle.loads(data)
    network = mlpinfer.load(write(tmp_path / "w.pkl", data), hidden="relu")
    for index, layer in enumerate(network.layers, start=1):
        np.testing.assert_array_equal(layer.weights, expected[f"W{index}"].astype(np.float32))
        np.testing.assert_array_equal(layer.bias, expected[f"b{index}"].reshape(-1).astype(np.float32))


def test_tied_weights_are_one_array_used_twice_in_the_file(tmp_path):
    shared = np.ones((3, 3), np.float32)
    data = pickle.dumps({"W1": shared, "b1": np.zeros(3), "W2": shared, "b2": np.zeros(3)}, protocol=4)
    assert len(data) < 2 * shared.nbytes + 400  # the second use is a memo reference
    network = mlpinfer.load(write(tmp_path / "w.pkl", data))
    assert network.layers[0].weights.tolist() == network.layers[1].weights.tolist() == shared.tolist()


def test_the_textbook_file_equals_pythons_reading(sample_weight_path):
    expected = pickle.loads(sample_weight_path.read_bytes())  # the course's own file
    network = mlpinfer.load(sample_weight_path)
    for index, layer in enumerate(network.layers, start=1):
        np.testing.assert_array_equal(layer.weights, expected[f"W{index}"].astype(np.float32))
        np.testing.assert_array_equal(layer.bias, expected[f"b{index}"].astype(np.float32))


# --------------------------------------------------------------------------- hashing and nesting

RED_TEAM_DEPTH = 150_000  # hashing a tuple this deep overflowed the C stack (SIGSEGV)
DEEP_TUPLE = b")" + b"\x85" * RED_TEAM_DEPTH  # EMPTY_TUPLE, then TUPLE1 around it

HASH_ATTACKS = {
    "dict key": b"\x80\x02}" + DEEP_TUPLE + b"Ns.",
    "dict key via DICT": b"\x80\x02(" + DEEP_TUPLE + b"Nd.",
    "dict key via SETITEMS": b"\x80\x02}(" + DEEP_TUPLE + b"Nu.",
    "set member": b"\x80\x04\x8f(" + DEEP_TUPLE + b"\x90.",
    "frozenset member": b"\x80\x04(" + DEEP_TUPLE + b"\x91.",
    "set via builtins.set": b"\x80\x02c__builtin__\nset\n]" + DEEP_TUPLE + b"a\x85R.",
}


@pytest.mark.parametrize("case", list(HASH_ATTACKS))
def test_deep_tuples_are_refused_before_anything_hashes_them(tmp_path, case):
    refused_in_fresh_process(write(tmp_path / "w.pkl", HASH_ATTACKS[case]),
                             match=f"nested more than {MAX_DEPTH} deep|refusing a set|builtins.set|__builtin__.set")


@pytest.mark.parametrize(("key", "kind"), [(b"K\x01", "int"), (b")\x85", "tuple"), (b"N", "NoneType"),
                                           (b"\x88", "bool"), (b"C\x02W1", "bytes")])
def test_dict_keys_other_than_strings_are_refused(sandbox, key, kind):
    data = b"\x80\x02}" + key + _fragment(np.ones((2, 2))) + b"s."
    assert_refused(sandbox, data, f"dict key of type {kind}")


def test_nesting_is_refused_one_level_beyond_the_limit_only(tmp_path):
    def nested(depth):  # {"W1": array, "b1": array, "x": ((((...)))) depth deep}
        return b"\x80\x02}" + _key("x") + b")" + b"\x85" * (depth - 1) + b"s."

    with pytest.raises(WeightsError, match="'x' is a pickled tuple"):
        mlpinfer.load(write(tmp_path / "ok.pkl", nested(MAX_DEPTH - 1)))
    with pytest.raises(WeightsError, match=f"nested more than {MAX_DEPTH} deep"):
        mlpinfer.load(write(tmp_path / "deep.pkl", nested(MAX_DEPTH + 1)))


def test_a_container_cannot_change_once_inside_another(sandbox):
    # [] put in a tuple, then grown through the memo: what the tuple recorded would be untrue.
    data = b"\x80\x02]q\x00\x85" + b"h\x00" + _fragment(np.ones(2)) + b"a0."
    assert_refused(sandbox, data, "after it was placed inside another")


def test_a_list_cannot_hold_itself(sandbox):
    assert_refused(sandbox, b"\x80\x02]q\x00h\x00a.", "holds itself")


# --------------------------------------------------------------------------- BUILD and buffers

_FROMBUFFER = b"cnumpy.core.numeric\n_frombuffer\n"


def _array_state(values: np.ndarray) -> bytes:
    return _fragment((1, values.shape, values.dtype, False, values.tobytes()))


def _double_build(size: int, *, view: bool) -> bytes:
    """{"W1": A or a _frombuffer view of A, "b1": ...}, then A rebuilt from another state.
    Python's unpickler frees A's buffer under the view (segfault at 8 MB; at a few bytes,
    W1 silently holds whatever was written into the freed memory next)."""
    a = np.full((size, 4), 0.5, np.float32)
    first = _fragment(a) + b"q\xc8"
    value = (_FROMBUFFER + b"(" + first + _fragment(np.dtype(np.float32)) + _fragment(a.shape)
             + _key("C") + b"tR") if view else first
    again = b"h\xc8" + _array_state(np.arange(1000, 1000 + 4 * size, dtype=np.float32).reshape(size, 4)) + b"b0"
    return (b"\x80\x02}" + _key("W1") + value + b"s" + _key("b1") + _fragment(np.zeros(4, np.float32))
            + b"s" + again + b".")


@pytest.mark.parametrize("view", [True, False], ids=["through a _frombuffer view", "plain"])
@pytest.mark.parametrize("rows", [25, 2**19], ids=["small (wrong weights)", "8 MB (segfault)"])
def test_build_twice_on_one_array_is_refused(tmp_path, rows, view):
    refused_in_fresh_process(write(tmp_path / "w.pkl", _double_build(rows, view=view)),
                             match="_frombuffer other than of bytes|already in use|twice")


def test_build_twice_before_use_is_refused(sandbox):
    a = np.full((3, 4), 0.5, np.float32)
    data = (b"\x80\x02}" + _key("W1") + _fragment(a) + _array_state(a + 1) + b"b" + b"s"
            + _key("b1") + _fragment(np.zeros(4, np.float32)) + b"s.")
    assert_refused(sandbox, data, "twice")


def test_frombuffer_wraps_bytes_only(sandbox):
    # A bytes-like that is not bytes: a memoryview of a bytearray the pickle can change later.
    data = (b"\x80\x05}" + _key("W1") + _FROMBUFFER + b"(" + b"\x96" + struct.pack("<Q", 16)
            + bytes(16) + b"\x98" + _fragment(np.dtype(np.float32)) + _fragment((2, 2)) + _key("C")
            + b"tRs.")
    assert_refused(sandbox, data, "out-of-band buffer|_frombuffer other than of bytes")


def test_a_dtype_is_never_numpys_shared_instance(sandbox):
    # numpy.dtype("f8", 0, 0) is NumPy's own float64, shared by the whole process, and the
    # BUILD that follows would set its state. NumPy always pickles dtypes with copy=1.
    # (NumPy 2.4.6 keeps a shared dtype's byte order; nothing promises it for the rest.)
    data = (b"\x80\x02cnumpy\ndtype\n" + _key("f8") + b"K\x00K\x00\x87R"
            + _fragment((3, ">", None, None, None, -1, -1, 0)) + b"b.")
    assert_refused(sandbox, data, "not how NumPy pickles a dtype")


# --------------------------------------------------------------------------- budget

def test_one_array_used_by_300_layers_is_refused_within_budget(tmp_path):
    shared = np.zeros((512, 512), np.float32)  # 1 MB, stored once; 300 uses would be 300 MB
    bias = np.zeros(512, np.float32)
    params = {}
    for index in range(1, 301):
        params[f"W{index}"], params[f"b{index}"] = shared, bias
    path = write(tmp_path / "w.pkl", pickle.dumps(params, protocol=4))
    assert path.stat().st_size < 1.1 * shared.nbytes
    refused_in_fresh_process(path, match="another use of a ndarray.*budget of this load")


def test_an_empty_array_fetched_before_its_data_is_refused(tmp_path):
    # _reconstruct's empty array, memoized and fetched 300 times while it holds nothing
    # (each use charged 0 bytes), then given 1 MB by BUILD: 300 layers of 1 MB for 1 MB.
    empty = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + b"K\x00\x85"
             + b"C\x01b" + b"\x87R")
    bias = _fragment(np.zeros(512, np.float32)) + b"q\xc9"
    uses = b"".join(_key(f"b{index}") + b"h\xc9" + _key(f"W{index}") + b"h\xc8"
                    for index in range(1, 301))
    state = _array_state(np.zeros((512, 512), np.float32))
    # BUILD on the last reference while all 300 are still on the stack, then SETITEMS.
    data = b"\x80\x02" + empty + b"q\xc8" + bias + b"0}(" + uses + state + b"bu."
    refused_in_fresh_process(write(tmp_path / "w.pkl", data), match="already in use")


def test_a_container_of_arrays_fetched_again_counts_every_use(tmp_path):
    # T0 = (A, A), T1 = (T0, T0), ...: each level doubles the uses; 1 MB and 10 levels is 1 GB.
    shared = np.zeros(2**18, np.float32)
    data = b"\x80\x02" + _fragment(shared) + b"q\x00h\x00\x86q\x01"
    for level in range(1, 11):
        data += b"h" + bytes([level]) + b"\x86q" + bytes([level + 1])
    path = write(tmp_path / "w.pkl", data + b".")
    refused_in_fresh_process(path, match="budget of this load")


def test_max_bytes_lets_a_genuinely_shared_network_load(tmp_path):
    shared = np.ones((64, 64), np.float32)
    params = {}
    for index in range(1, 21):
        params[f"W{index}"], params[f"b{index}"] = shared, np.zeros(64, np.float32)
    path = write(tmp_path / "w.pkl", pickle.dumps(params, protocol=4))
    with pytest.raises(WeightsError, match="pass max_bytes= to allow more"):
        mlpinfer.load(path, max_bytes=10 * shared.nbytes)
    assert len(mlpinfer.load(path, max_bytes=30 * shared.nbytes).layers) == 20


def test_key_names_of_5000_digits_are_our_error(sandbox):
    data = pickle.dumps({"W" + "1" * 5000: np.ones((2, 2)), "b1": np.ones(2)})
    assert_refused(sandbox, data, "unexpected key 'W1111")
