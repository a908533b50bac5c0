"""Hostile and broken ``.npz`` files: truncations, corrupt zip containers and ``.npy``
headers, decompression bombs and member counts, and the fuzz findings. Each must end in a
`WeightsError` naming the file, within the budget; what loads must equal what was written.
"""

from __future__ import annotations

import io
import struct
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import (
    MARKER,
    assert_refused,
    bytes_read_by_this_process,
    npy_bytes,
    npz_bytes,
    random_params,
    refused_in_fresh_process,
    write,
    zip_of_deflated,
)

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer.formats._budget import MAX_ZIP_MEMBERS, RATIO_FLOOR


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_npz_truncated_anywhere(tmp_path, compressed):
    data = npz_bytes(random_params(), compressed=compressed)
    for cut in range(0, len(data), 37):
        path = tmp_path / "w.npz"
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
    assert_refused(sandbox, ZIP_CORRUPTIONS[case](npz_bytes(random_params())), name="w.npz")


def test_corrupt_deflate_stream(sandbox):
    weights = np.random.default_rng(6).standard_normal((200, 200)).astype(np.float32)
    data = bytearray(npz_bytes({"W1": weights, "b1": np.ones(200, np.float32)}, compressed=True))
    # Well past the local header and its zip64 extra field: inside the deflate stream.
    inside = data.find(b"W1.npy") + 1000
    data[inside: inside + 10] = b"\xff" * 10
    assert_refused(sandbox, bytes(data), name="w.npz")


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
    assert_refused(sandbox, stream.getvalue(), name="w.npz")



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
    start = time.process_time()
    with pytest.raises(WeightsError, match=r"expected the 4000000000000 bytes of data that its \.npy header declares"):
        mlpinfer.load(path)
    assert time.process_time() - start < 1



def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "w.npz", **random_params())
    data = (tmp_path / "w.npz").read_bytes()
    with pytest.raises(WeightsError):
        mlpinfer.load(write(tmp_path / "t.npz", data[: len(data) // 2]))


def test_npz_decompression_bomb_is_refused_before_inflating(tmp_path):
    params = dict(random_params(), W1=np.zeros((4, 40 * 2**20 // 16), np.float32))
    with open(tmp_path / "bomb.npz", "wb") as stream:
        np.savez_compressed(stream, **params)
    assert (tmp_path / "bomb.npz").stat().st_size < 2**20  # 40 MB of zeros in a few KB
    with pytest.raises(WeightsError, match=r"'W1.npy' \(inflating from .*budget of this load"):
        mlpinfer.load(tmp_path / "bomb.npz")


def test_npz_with_pickled_member_is_refused(tmp_path):
    params = dict(random_params(), W1=np.array([[1.0, None]] * 4, dtype=object))
    np.savez(tmp_path / "w.npz", **params)
    with pytest.raises(WeightsError, match="expected an array of numbers, found dtype object"):
        mlpinfer.load(tmp_path / "w.npz")




# --------------------------------------------------------------------------- what the file says

WRITTEN = {
    "stored": (random_params((5, 4, 3)), False),
    "deflated": (random_params((5, 4, 3)), True),
    "float64, Fortran order": ({k: np.asfortranarray(v.astype(np.float64))
                                for k, v in random_params((6, 5, 2)).items()}, True),
    "big-endian": ({k: v.astype(">f4") for k, v in random_params((3, 3, 2)).items()}, False),
}


@pytest.mark.parametrize("case", list(WRITTEN))
def test_what_loads_equals_what_was_written(tmp_path, case):
    params, compressed = WRITTEN[case]
    network = mlpinfer.load(write(tmp_path / "w.npz", npz_bytes(params, compressed=compressed)))
    for index, layer in enumerate(network.layers, start=1):
        np.testing.assert_array_equal(layer.weights, params[f"W{index}"].astype(np.float32))
        np.testing.assert_array_equal(layer.bias, params[f"b{index}"].astype(np.float32))


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_single_byte_corruptions_load_the_written_weights_or_nothing(tmp_path, compressed):
    # A byte that does not matter (a zip timestamp) leaves the written network; any other
    # is a WeightsError. Never other weights: the CRC and the .npy header are checked.
    params = random_params()
    data = npz_bytes(params, compressed=compressed)
    rng = np.random.default_rng(5)
    loaded = 0
    for position in rng.choice(len(data), size=min(len(data), 300), replace=False):
        corrupt = bytearray(data)
        corrupt[position] ^= int(rng.integers(1, 256))
        try:
            network = mlpinfer.load(write(tmp_path / "w.npz", bytes(corrupt)))
        except WeightsError:
            continue
        loaded += 1
        for index, layer in enumerate(network.layers, start=1):
            assert np.array_equal(layer.weights, params[f"W{index}"]), f"byte {position}: other weights"
            assert np.array_equal(layer.bias, params[f"b{index}"]), f"byte {position}: other biases"
    assert loaded < 300


def test_a_npy_header_declaring_fewer_elements_than_the_member_holds(sandbox):
    # NumPy reads what the header declares and stops: the rest would be ignored silently.
    members = {"W1.npy": npy_bytes(np.ones((4, 2), np.float32)) + bytes(16),
               "b1.npy": npy_bytes(np.ones(2, np.float32))}
    assert_refused(sandbox, zip_of_deflated(members), r"expected the 32 bytes of data that its "
                   r"\.npy header declares \(\(4, 2\) of float32\), found 48", name="w.npz")


# --------------------------------------------------------------------------- bombs and budgets

def test_128_members_just_under_the_old_per_member_check_are_refused_within_budget(tmp_path):
    # The red team's file: members of just under 16 MiB (where the inflation ratio used to
    # be checked, per member), 128 of them: 2.1 GB from 2 MB.
    member = npy_bytes(np.zeros(((16 << 20) - 128) // 4, np.float32))
    path = write(tmp_path / "w.npz", zip_of_deflated({"W.npy": member}, repeat=128))
    assert path.stat().st_size < 3 << 20
    refused_in_fresh_process(path, match=r"zip member '\d+W.npy' \(inflating from .*budget of this load")


def test_a_compressible_network_loads_with_max_bytes(tmp_path):
    params = dict(random_params(), W1=np.zeros((4, RATIO_FLOOR // 4 // 4 + 1), np.float32),
                  b1=np.zeros(RATIO_FLOOR // 4 // 4 + 1, np.float32), W2=np.zeros((RATIO_FLOOR // 16 + 1, 2), np.float32))
    path = write(tmp_path / "zeros.npz", npz_bytes(params, compressed=True))
    with pytest.raises(WeightsError, match="pass max_bytes="):
        mlpinfer.load(path)
    assert mlpinfer.load(path, max_bytes=1 << 30).n_inputs == 4


def test_a_zip_declaring_more_members_than_allowed_is_refused_before_parsing(sandbox):
    data = bytearray(npz_bytes(random_params()))
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = struct.pack("<HH", 60_000, 60_000)
    assert_refused(sandbox, bytes(data), f"at most {MAX_ZIP_MEMBERS} members", name="w.npz")


def test_a_member_declaring_fewer_bytes_than_it_inflates_to(sandbox):
    members = {"W1.npy": npy_bytes(np.ones((4, 3), np.float32)), "b1.npy": npy_bytes(np.ones(3, np.float32))}
    data = bytearray(zip_of_deflated(members))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + offset:at + offset + 4] = struct.pack("<I", 20)  # W1.npy "holds 20 bytes"
    assert_refused(sandbox, bytes(data), "W1.npy", name="w.npz")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts reads in /proc/self/io")
def test_a_gigabyte_of_zeros_behind_the_zip_magic_is_not_read(tmp_path):
    path = tmp_path / "garbage.npz"
    with open(path, "wb") as stream:
        stream.write(b"PK\x03\x04")
        stream.truncate(2**30)  # sparse: costs no disk
    before = bytes_read_by_this_process()
    with pytest.raises(WeightsError):
        mlpinfer.load(path)
    assert bytes_read_by_this_process() - before < 2**20


# --------------------------------------------------------------------------- names and headers

NOT_NPY = {
    "text": b"hello, world",
    "a pickle": b"\x80\x04K\x01.",
    "a .npy magic and nothing else": b"\x93NUMPY",
    "empty": b"",
    "a zip inside": npz_bytes({"W1": np.ones(2)}),
}


@pytest.mark.parametrize("case", list(NOT_NPY))
def test_members_that_are_not_npy_are_our_error(sandbox, case):
    members = {"W1.npy": NOT_NPY[case], "b1.npy": npy_bytes(np.ones(3, np.float32))}
    assert_refused(sandbox, zip_of_deflated(members), r"member 'W1.npy': expected a .npy array",
                   name="w.npz")


def test_members_not_named_npy_are_refused(sandbox):
    members = {"W1.npy": npy_bytes(np.ones((2, 2))), "b1.txt": npy_bytes(np.ones(2))}
    assert_refused(sandbox, zip_of_deflated(members), "expected .npy members", name="w.npz")


def test_key_names_of_5000_digits_are_our_error(sandbox):
    members = {"W" + "1" * 5000 + ".npy": npy_bytes(np.ones((2, 2))), "b1.npy": npy_bytes(np.ones(2))}
    error = assert_refused(sandbox, zip_of_deflated(members), "unexpected key 'W1111", name="w.npz")
    assert len(str(error)) < 1000


# --------------------------------------------------------------------------- fuzz findings

REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "regressions"


@pytest.mark.parametrize("name", sorted(p.name for p in REGRESSIONS.glob("*.npz")))
def test_fuzz_finding_is_refused(sandbox, name):
    """Inputs that fuzz/ found escaping as another exception type; see SECURITY.md."""
    assert_refused(sandbox, (REGRESSIONS / name).read_bytes(), name=name)
