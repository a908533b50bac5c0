"""Hostile and broken files beyond test_loading.py: every opcode path to a callable, resource
bombs, and corruptions of each format. Each case must end in our own error type, with no
side effect and no crash.

test_loading.py already covers: os.system at protocols 0/2/4/5, eval, exec, Popen, getattr,
__import__, text INST/OBJ/GLOBAL+REDUCE, text persistent ID, EXT1 without a registration,
BUILD state hiding a call, object arrays, empty/truncated/random pickles, BINBYTES8 bombs.
"""

from __future__ import annotations

import copyreg
import gzip
import io
import json
import os
import pickle
import struct
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import MARKER, ReduceTo

import mlpinfer
from mlpinfer import DataError, WeightsError
from mlpinfer.datasets import parse_idx, read_idx
from mlpinfer.formats import _npz

# A load that fails on a tiny file must not have built anything big on the way.
SMALL_PEAK = 8 * 2**20


def small_params():
    rng = np.random.default_rng(0)
    return {"W1": rng.standard_normal((4, 3)).astype(np.float32), "b1": np.zeros(3, np.float32),
            "W2": rng.standard_normal((3, 2)).astype(np.float32), "b2": np.ones(2, np.float32)}


def npz_bytes(arrays, *, compressed=False):
    stream = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(stream, **arrays)
    return stream.getvalue()


def native_bytes(header=None):
    """A native file; ``header`` replaces the JSON header's bytes when given."""
    network = mlpinfer.Network.from_params(small_params(), activations=["relu", "softmax"])
    arrays = dict(network.params())
    text = header if header is not None else _npz.header_bytes(["relu", "softmax"], None).tobytes()
    arrays[_npz.HEADER_KEY] = np.frombuffer(text, dtype=np.uint8)
    return npz_bytes(arrays)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory whose marker file appears only if code from a file ran."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(directory: Path, data: bytes, match: str | None = None, *, name="w.pkl"):
    path = directory / name
    path.write_bytes(data)
    with pytest.raises(WeightsError, match=match):
        mlpinfer.load(path)
    assert not (directory / MARKER).exists(), "code from the file ran"


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
def test_opcode_path_to_a_callable_is_refused(sandbox, case):
    data, match = OPCODE_CASES[case]
    refused(sandbox, data, match)


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
        refused(sandbox, data, "refusing an extension code")
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
    refused(sandbox, data, "refusing to load global '((os|posix).system|(builtins|__builtin__)"
                           ".(frozen)?set)'|refusing a set")


# --------------------------------------------------------------------------- resource bombs

def load_peak(path) -> tuple[BaseException | None, int, float]:
    """(error, peak traced bytes, seconds) of mlpinfer.load(path)."""
    tracemalloc.start()
    start = time.perf_counter()
    error = None
    try:
        mlpinfer.load(path)
    except WeightsError as raised:
        error = raised
    finally:
        seconds = time.perf_counter() - start
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
    refused(sandbox, pickle.dumps({"W1": cycle, "b1": np.ones(1)}))


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
    refused(sandbox, DEEP[shape])


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


def test_npy_header_declaring_a_trillion_elements_fails_fast(tmp_path):
    stream = io.BytesIO()
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    header = header.ljust(117) + "\n"
    with zipfile.ZipFile(stream, "w") as archive:
        for name in ("W1.npy", "b1.npy"):
            archive.writestr(name, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
                             + header.encode() + bytes(64))
    path = tmp_path / "w.npz"
    path.write_bytes(stream.getvalue())
    start = time.perf_counter()
    with pytest.raises(WeightsError):
        mlpinfer.load(path)
    assert time.perf_counter() - start < 1


def _bytes_read_by_this_process() -> int:
    with open("/proc/self/io") as stats:
        for line in stats:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


SPARSE = {
    # name: (first bytes, file suffix)
    "zeros": (b"", ".pkl"),
    "pickle header then zeros": (b"\x80\x04", ".pkl"),
    # FRAME declares the whole file as one frame; pickle.dumps never writes frames above
    # ~64 KB, so the loader has no reason to read this one before looking at it.
    "pickle FRAME over the whole file": (b"\x80\x04\x95" + struct.pack("<Q", 2**30), ".pkl"),
    "zip magic then zeros": (b"PK\x03\x04", ".npz"),
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts reads in /proc/self/io")
@pytest.mark.parametrize("case", list(SPARSE))
def test_gigabytes_of_garbage_are_not_read(tmp_path, case):
    head, suffix = SPARSE[case]
    path = tmp_path / f"garbage{suffix}"
    with open(path, "wb") as stream:
        stream.write(head)
        stream.truncate(2**30 + len(head))  # sparse: costs no disk
    before = _bytes_read_by_this_process()
    start = time.perf_counter()
    with pytest.raises(WeightsError):
        mlpinfer.load(path)
    read = _bytes_read_by_this_process() - before
    assert read < 2**20, f"read {read} bytes of a 1 GB garbage file"
    assert time.perf_counter() - start < 2


# --------------------------------------------------------------------------- npz and native

@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_npz_truncated_anywhere(tmp_path, compressed):
    data = npz_bytes(small_params(), compressed=compressed)
    for cut in range(0, len(data), 37):
        path = tmp_path / "w.npz"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            mlpinfer.load(path)


def test_native_truncated_anywhere(tmp_path):
    data = native_bytes()
    for cut in range(1, len(data), 41):
        path = tmp_path / "net.npz"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            mlpinfer.load(path)


def test_random_bytes_behind_the_zip_magic(tmp_path):
    rng = np.random.default_rng(11)
    for i in range(30):
        path = tmp_path / f"r{i}.npz"
        path.write_bytes(b"PK\x03\x04" + rng.bytes(int(rng.integers(0, 3000))))
        with pytest.raises(WeightsError):
            mlpinfer.load(path)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_single_byte_corruptions_of_an_npz(tmp_path, compressed):
    # Every outcome is either the intact network (the byte did not matter, e.g. a zip
    # timestamp) or a WeightsError; nothing else may escape.
    data = npz_bytes(small_params(), compressed=compressed)
    rng = np.random.default_rng(5)
    for position in rng.choice(len(data), size=min(len(data), 300), replace=False):
        corrupt = bytearray(data)
        corrupt[position] ^= int(rng.integers(1, 256))
        path = tmp_path / "w.npz"
        path.write_bytes(bytes(corrupt))
        try:
            network = mlpinfer.load(path)
        except WeightsError:
            continue
        assert network.n_inputs == 4 or position > 0


def _set_zip_field(data: bytes, offset_in_central: int, value: bytes) -> bytes:
    patched = bytearray(data)
    start = patched.find(b"PK\x01\x02")
    while start != -1:
        patched[start + offset_in_central: start + offset_in_central + len(value)] = value
        start = patched.find(b"PK\x01\x02", start + 4)
    return bytes(patched)


ZIP_CORRUPTIONS = {
    "encrypted flag": lambda d: _set_zip_field(d, 8, b"\x01\x00"),
    "unsupported compression method 99": lambda d: _set_zip_field(d, 10, b"\x63\x00"),
    "bzip2 method on stored data": lambda d: _set_zip_field(d, 10, b"\x0c\x00"),
    "lzma method on stored data": lambda d: _set_zip_field(d, 10, b"\x0e\x00"),
    "central directory offset past the end": lambda d: d[:-6] + struct.pack("<I", 2**31) + d[-2:],
    "entry count of 65535": lambda d: d[:-12] + b"\xff\xff\xff\xff" + d[-8:],
}


@pytest.mark.parametrize("case", list(ZIP_CORRUPTIONS))
def test_zip_container_corruptions(sandbox, case):
    refused(sandbox, ZIP_CORRUPTIONS[case](npz_bytes(small_params())), name="w.npz")


def test_corrupt_deflate_stream(sandbox):
    weights = np.random.default_rng(6).standard_normal((200, 200)).astype(np.float32)
    data = bytearray(npz_bytes({"W1": weights, "b1": np.ones(200, np.float32)}, compressed=True))
    # Well past the local header and its zip64 extra field: inside the deflate stream.
    inside = data.find(b"W1.npy") + 1000
    data[inside: inside + 10] = b"\xff" * 10
    refused(sandbox, bytes(data), name="w.npz")


def _npy(header: str, payload: bytes = bytes(48), version: bytes = b"\x01\x00") -> bytes:
    raw = header.encode("latin1")
    raw = raw + b" " * (-(len(raw) + 11) % 64) + b"\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(raw)) + raw + payload


NPY_HEADERS = {
    "bad magic": b"\x93NUMPX\x01\x00" + bytes(100),
    "version 9.9": _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }",
                        version=b"\x09\x09"),
    "header length past the end": b"\x93NUMPY\x01\x00\xff\xff{'descr'",
    "header of 200 KB (version 2)": b"\x93NUMPY\x02\x00" + struct.pack("<I", 200_000)
                                    + b"{" + b" " * 199_998 + b"}",
    "not a literal: a call": _npy(f"__import__('os').system('touch {MARKER}')"),
    "not a dict": _npy("[1, 2, 3]"),
    "missing shape": _npy("{'descr': '<f4', 'fortran_order': False, }"),
    "negative shape": _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 3), }"),
    "float shape": _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4.5, 3), }"),
    "fortran_order not a bool": _npy("{'descr': '<f4', 'fortran_order': 'yes', 'shape': (4, 3), }"),
    "object descr": _npy("{'descr': '|O', 'fortran_order': False, 'shape': (4, 3), }"),
    "nonsense descr": _npy("{'descr': 'nonsense', 'fortran_order': False, 'shape': (4, 3), }"),
    "structured descr with an object field": _npy(
        "{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (4, 3), }"),
    "descr with a huge subarray": _npy(
        "{'descr': ('<f4', (100000, 100000)), 'fortran_order': False, 'shape': (4, 3), }"),
    "shape product overflows": _npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2**40, 2**40), }"),
    "payload shorter than the shape": _npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", payload=bytes(47)),
}


@pytest.mark.parametrize("case", list(NPY_HEADERS))
def test_npy_member_header_corruptions(sandbox, case):
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        archive.writestr("W1.npy", NPY_HEADERS[case])
        archive.writestr("b1.npy", _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                                        payload=bytes(12)))
    refused(sandbox, stream.getvalue(), name="w.npz")


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
    refused(sandbox, native_bytes(header), match, name="net.npz")


def test_native_file_with_an_extra_array_is_refused(tmp_path):
    data = npz_bytes(dict(small_params(), **{_npz.HEADER_KEY: np.frombuffer(
        json.dumps({"format": "mlpinfer", "version": 1, "activations": ["relu", "softmax"],
                    "input_scale": None}).encode(), np.uint8)}, W3=np.ones((2, 2))))
    path = tmp_path / "net.npz"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match="without gaps"):
        mlpinfer.load(path)


# --------------------------------------------------------------------------- fuzz findings

REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz" / "regressions"


@pytest.mark.parametrize("name", sorted(p.name for p in REGRESSIONS.iterdir()))
def test_fuzz_finding_is_refused(sandbox, name):
    """Inputs that fuzz/ found escaping as another exception type; see SECURITY.md."""
    refused(sandbox, (REGRESSIONS / name).read_bytes(), name=name)


# --------------------------------------------------------------------------- IDX
# test_datasets.py covers empty, short, wrong magic, wrong type code, truncated, extra bytes,
# a header declaring 2^64 bytes, a 1 GB sparse file and a gzip bomb. Added here: sweeps.

def _idx(array: np.ndarray) -> bytes:
    magic = 0x0801 if array.ndim == 1 else 0x0803
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


GOOD_IDX = _idx(np.random.default_rng(1).integers(0, 256, (3, 5, 7), dtype=np.uint8))


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_idx_truncated_at_every_byte(compress):
    for cut in range(len(GOOD_IDX)):
        content = GOOD_IDX[:cut]
        with pytest.raises(DataError):
            parse_idx(gzip.compress(content, mtime=0) if compress else content)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_idx_random_bytes_behind_a_valid_magic(compress):
    rng = np.random.default_rng(2)
    for _ in range(200):
        content = rng.choice([b"\x00\x00\x08\x01", b"\x00\x00\x08\x03"]) + rng.bytes(
            int(rng.integers(0, 64)))
        try:
            array = parse_idx(gzip.compress(content, mtime=0) if compress else content)
        except DataError:
            continue
        # Accepted only when the header agreed with the payload exactly.
        header = 8 if content[3] == 1 else 16
        assert array.dtype == np.uint8
        assert array.size == len(content) - header


def test_idx_header_corruptions_never_escape_as_other_errors():
    for position in range(16):
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            corrupt = bytearray(GOOD_IDX)
            corrupt[position] = value
            try:
                array = parse_idx(bytes(corrupt))
            except DataError:
                continue
            assert array.size == len(GOOD_IDX) - 16


def test_idx_gzip_random_bytes():
    rng = np.random.default_rng(4)
    for _ in range(100):
        with pytest.raises(DataError):
            parse_idx(b"\x1f\x8b" + rng.bytes(int(rng.integers(0, 200))))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts reads in /proc/self/io")
def test_idx_several_gigabytes_of_garbage(tmp_path):
    path = tmp_path / "images"
    with open(path, "wb") as stream:
        stream.write(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28))
        stream.truncate(4 * 2**30)
    before = _bytes_read_by_this_process()
    with pytest.raises(DataError, match="10 images"):
        read_idx(path)
    assert _bytes_read_by_this_process() - before < 2**20
