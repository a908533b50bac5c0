"""Fuzz the npz and native readers with structured archives.

    python fuzz/fuzz_npz.py [libFuzzer options] [corpus directories]

Byte-level mutation of a zip mostly breaks its CRCs and stops in zipfile; this harness
instead builds a well-formed archive from the input (member names, .npy headers, array
dtypes/shapes/bytes, the native JSON header, compression) and then optionally flips one
byte, so the .npy parser, the header checks, the layer checks and the engine are reached.
The only acceptable failure is WeightsError.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import atheris

with atheris.instrument_imports(include=["mlpinfer", "zipfile", "numpy.lib._format_impl"]):
    import numpy as np

    import mlpinfer  # noqa: F401 - imported here to be instrumented; _findings calls it

from _findings import fuzz, load_and_run

_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIRECTORY, f"mlpinfer-fuzz-npz-{os.getpid()}.npz")

_NAMES = ["W1", "b1", "W2", "b2", "W3", "b3", "mlpinfer_header", "W0", "x", "W1.npy"]
_DTYPES = ["<f4", ">f4", "<f8", "<f2", "<i8", "|u1", "<c8", "|b1", "<U2", "|V4", "|O"]
_ACTIVATIONS = ["identity", "sigmoid", "relu", "tanh", "softmax", "gelu", ""]


def _array_member(fdp: atheris.FuzzedDataProvider) -> bytes:
    dtype = np.dtype(fdp.PickValueInList(_DTYPES))
    shape = tuple(fdp.ConsumeIntInRange(0, 6) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    count = int(np.prod(shape, dtype=np.int64))
    raw = fdp.ConsumeBytes(count * dtype.itemsize)
    header = {"descr": np.lib.format.dtype_to_descr(dtype),
              "fortran_order": fdp.ConsumeBool(), "shape": shape}
    if fdp.ConsumeBool():
        header["shape"] = tuple(fdp.ConsumeIntInRange(-2, 2**40) for _ in shape)
    text = repr(header) if fdp.ConsumeProbability() < 0.9 else fdp.ConsumeUnicodeNoSurrogates(60)
    text = text.encode("latin1", "replace")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    version = fdp.PickValueInList([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x00"])
    length = (len(text).to_bytes(2, "little") if version == b"\x01\x00"
              else len(text).to_bytes(4, "little"))
    return b"\x93NUMPY" + version + length + text + raw


def _header_member(fdp: atheris.FuzzedDataProvider) -> bytes:
    meta = {"format": fdp.PickValueInList(["mlpinfer", "other"]),
            "version": fdp.PickValueInList([1, 1, 2, "1", None, True]),
            "activations": [fdp.PickValueInList(_ACTIVATIONS)
                            for _ in range(fdp.ConsumeIntInRange(0, 4))],
            "input_scale": fdp.PickValueInList(
                [None, 1.0, 1 / 255, 0.0, -1.0, 1e300, float("nan"), float("inf"), "x", 10**400])}
    if fdp.ConsumeProbability() < 0.1:
        return fdp.ConsumeBytes(40)
    return json.dumps(meta).encode()


def build(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    stream = io.BytesIO()
    method = fdp.PickValueInList([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
    with zipfile.ZipFile(stream, "w", method) as archive:
        for _ in range(fdp.ConsumeIntInRange(1, 6)):
            name = fdp.PickValueInList(_NAMES)
            if name == "mlpinfer_header":
                payload = _array_from_bytes(_header_member(fdp))
            else:
                payload = _array_member(fdp)
            archive.writestr(name if name.endswith(".npy") else name + ".npy", payload)
    archive_bytes = bytearray(stream.getvalue())
    if fdp.ConsumeBool() and archive_bytes:
        position = fdp.ConsumeIntInRange(0, len(archive_bytes) - 1)
        archive_bytes[position] = fdp.ConsumeIntInRange(0, 255)
    return bytes(archive_bytes)


def _array_from_bytes(raw: bytes) -> bytes:
    stream = io.BytesIO()
    np.save(stream, np.frombuffer(raw, dtype=np.uint8), allow_pickle=False)
    return stream.getvalue()


def check(data: bytes) -> None:
    with open(_PATH, "wb") as stream:
        stream.write(build(data))
    load_and_run(_PATH, 2)


if __name__ == "__main__":
    fuzz(check, _PATH)
