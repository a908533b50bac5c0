"""The values of ONNX tensors, read as data: from the protobuf, or from external files.

`declared_nbytes` checks what a ``TensorProto`` declares before anything is converted,
so that the load budget can be charged first; `tensor_array` then converts it.

External data (what ``torch.onnx.export`` writes by default since PyTorch 2.9: the
weights in ``model.onnx.data`` beside the model) is read only from a regular file inside
the model's own folder: the location is relative, has no ``..`` and resolves (symbolic
links followed) to a path inside that folder; the file is opened without following a
last symbolic link and without blocking (a FIFO must not hang the load), and must be a
regular file (not a device, a FIFO or a directory); offset and length must lie inside
it and the length must be exactly the bytes that the tensor's shape and type declare.
A model in memory (a ``ModelProto`` or a stream) has no folder and is refused.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from .._errors import WeightsError
from ._chain import UnsupportedModelError

__all__ = ["MAX_EXTERNAL_FILES", "TENSOR_TYPE_NAMES", "ExternalFiles", "declared_nbytes", "tensor_array",
           "type_name"]

# TensorProto.DataType codes we read: (name, NumPy dtype of the stored element, the
# typed field that holds the values when raw_data is empty). float16 and bfloat16 sit
# in int32_data as their 16 bits.
_BOOL, _FLOAT16, _BFLOAT16 = 9, 10, 16
_TENSOR_TYPES = {
    1: ("FLOAT", np.dtype("<f4"), "float_data"),
    11: ("DOUBLE", np.dtype("<f8"), "double_data"),
    _FLOAT16: ("FLOAT16", np.dtype("<f2"), "int32_data"),
    _BFLOAT16: ("BFLOAT16", np.dtype("<u2"), "int32_data"),
    7: ("INT64", np.dtype("<i8"), "int64_data"),
    6: ("INT32", np.dtype("<i4"), "int32_data"),
    _BOOL: ("BOOL", np.dtype("u1"), "int32_data"),  # Dropout's training_mode
}
TENSOR_TYPE_NAMES = {0: "UNDEFINED", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16",
                     8: "STRING", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
                     15: "COMPLEX128", **{code: spec[0] for code, spec in _TENSOR_TYPES.items()}}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# The keys of TensorProto.external_data (onnx/external_data_helper.py). "checksum" is an
# optional SHA-1 whose scope the specification leaves open; it changes no value.
_EXTERNAL_KEYS = ("location", "offset", "length", "checksum")
#: Distinct external data files a model may name (exporters write one; each is looked at
#: for the budget, so that a model naming millions costs a refusal, not millions of stats).
MAX_EXTERNAL_FILES = 1000
_TYPED_FIELDS = ("float_data", "double_data", "int32_data", "int64_data", "uint64_data",
                 "string_data")


def type_name(code: int) -> str:
    return TENSOR_TYPE_NAMES.get(code, f"unknown type {code}")


@dataclass(frozen=True)
class _Extent:
    """Where an external tensor's bytes are: ``location`` relative to the model's folder."""

    location: str
    offset: int
    length: int


class ExternalFiles:
    """The folder external tensors are read from (``None``: a model in memory, which has
    none), and the files that the model's tensors name."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._locations: set[str] = set()

    def declare(self, tensor: Any, nbytes: int, what: str) -> None:
        """Check an external tensor's declaration (no file is opened yet)."""
        extent = _extent(tensor, nbytes, what)
        if self.folder is None:
            raise UnsupportedModelError(
                f"{what} keeps its data in the external file {extent.location[:100]!r}, which "
                "a model in memory has no folder to read from: load the .onnx file by its "
                "path (mlpinfer.load(path)), with its data file beside it")
        self._locations.add(extent.location)
        if len(self._locations) > MAX_EXTERNAL_FILES:
            raise WeightsError(f"{what}: expected at most {MAX_EXTERNAL_FILES} external data "
                               "files, found more")

    def total_size(self) -> int:
        """Bytes of the distinct regular files the declared extents name (0 for those that
        cannot be read: `read` says why), part of the model's size for the load budget."""
        assert self.folder is not None or not self._locations
        total = 0
        for location in self._locations:
            try:
                info = os.stat(_inside(self.folder, location, ""))
            except (OSError, WeightsError):
                continue
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
        return total

    def read(self, tensor: Any, nbytes: int, what: str) -> bytearray:
        """The ``nbytes`` an external tensor declared, from its file, or a `WeightsError`
        naming the file and the reason. The caller has charged the budget."""
        extent = _extent(tensor, nbytes, what)
        assert self.folder is not None
        path = _inside(self.folder, extent.location, what)
        flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
        try:
            descriptor = os.open(path, flags)
        except OSError as error:
            raise WeightsError(f"{what}: cannot open its external data file {path!r}: "
                               f"{error.strerror or error}") from None
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise WeightsError(
                    f"{what}: its external data file {path!r} is {_file_kind(info.st_mode)}, "
                    "not a regular file")
            available = info.st_size - extent.offset
            if extent.length < 0 and available != nbytes:
                raise WeightsError(
                    f"{what}: its external data file {path!r} holds {max(available, 0)} bytes "
                    f"from offset {extent.offset}; its shape and type need {nbytes}")
            if available < nbytes:
                raise WeightsError(
                    f"{what}: offset {extent.offset} + length {nbytes} lies beyond the end of "
                    f"its external data file {path!r} ({info.st_size} bytes)")
            return _read_exactly(descriptor, extent.offset, nbytes, path, what)
        finally:
            os.close(descriptor)


def _extent(tensor: Any, nbytes: int, what: str) -> _Extent:
    """Where an external tensor says its ``nbytes`` are (length -1: to the end of the
    file), checked as far as it can be without opening the file."""
    entries: dict[str, str] = {}
    for entry in tensor.external_data:
        if entry.key not in _EXTERNAL_KEYS:
            raise UnsupportedModelError(
                f"{what}: unknown external_data key {entry.key[:50]!r}; expected "
                f"{', '.join(_EXTERNAL_KEYS)}")
        if entry.key in entries:
            raise WeightsError(f"{what}: external_data gives {entry.key!r} twice")
        entries[entry.key] = entry.value
    location = entries.get("location", "")
    _check_location(location, what)
    offset = _non_negative(entries.get("offset", "0"), "offset", what)
    if "length" not in entries:
        return _Extent(location, offset, -1)
    length = _non_negative(entries["length"], "length", what)
    if length != nbytes:
        raise WeightsError(
            f"{what}: external data of {length} bytes in {location[:100]!r}; its shape "
            f"and type need {nbytes}")
    return _Extent(location, offset, length)


def _check_location(location: str, what: str) -> None:
    if not location:
        raise WeightsError(f"{what}: external data without a location")
    parts = set(PurePosixPath(location).parts) | set(PureWindowsPath(location).parts)
    if "\0" in location or PurePosixPath(location).is_absolute() or \
            PureWindowsPath(location).anchor:
        raise WeightsError(
            f"{what}: external data location {location[:100]!r} is absolute; expected a file "
            "in the model's folder")
    if ".." in parts:
        raise WeightsError(
            f"{what}: external data location {location[:100]!r} contains '..'; expected a file "
            "in the model's folder")


def _inside(folder: Path, location: str, what: str) -> str:
    """The real path of ``location`` in ``folder``, which must stay inside it."""
    base = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, path]) != base:
        raise WeightsError(
            f"{what}: external data location {location[:100]!r} leads outside the model's "
            f"folder {base!r} (to {path!r})")
    return path


def _non_negative(text: str, key: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise WeightsError(f"{what}: external data {key} {text[:30]!r} is not a non-negative "
                           "integer")
    return int(text)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def _read_exactly(descriptor: int, offset: int, nbytes: int, path: str, what: str) -> bytearray:
    """``nbytes`` from ``offset``, read into one buffer of that size (no second copy)."""
    buffer = bytearray(nbytes)
    view = memoryview(buffer)
    done = 0
    with os.fdopen(descriptor, "rb", buffering=0, closefd=False) as stream:
        stream.seek(offset)
        while done < nbytes:
            count = stream.readinto(view[done:])
            if not count:
                raise WeightsError(f"{what}: its external data file {path!r} ended after "
                                   f"{offset + done} bytes while being read")
            done += count
    return buffer


_MAX_RANK = 8
_MAX_ELEMENTS = 2**40  # ahead of any budget (1 GiB by default), far below NumPy's 2^63 bytes


def declared_nbytes(tensor: Any, what: str, external: ExternalFiles) -> int:
    """The bytes ``tensor`` becomes, from its declaration; checks that the file holds
    them (raw_data of exactly that size, that many typed values, or an external extent
    of that length) and nothing else."""
    if tensor.HasField("segment"):
        raise UnsupportedModelError(f"{what} is a segment of a larger tensor: unsupported")
    if tensor.data_type not in _TENSOR_TYPES:
        raise UnsupportedModelError(
            f"{what} has element type {type_name(tensor.data_type)}; expected one of "
            f"{', '.join(spec[0] for spec in _TENSOR_TYPES.values())}"
        )
    type_label, dtype, field = _TENSOR_TYPES[tensor.data_type]
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise WeightsError(f"{what} has a negative dimension: {dims}")
    # An empty tensor may still declare other dimensions whose product overflows NumPy's
    # index type (reshape then raises ValueError, size 0 or not); no tensor of a dense
    # network has more than a few axes.
    if len(dims) > _MAX_RANK or math.prod(d for d in dims if d) > _MAX_ELEMENTS:
        raise WeightsError(f"{what} declares shape {dims[:_MAX_RANK + 1]}: expected at most "
                           f"{_MAX_RANK} dimensions and {_MAX_ELEMENTS} elements")
    count = math.prod(dims)
    nbytes = count * dtype.itemsize
    filled = [f for f in _TYPED_FIELDS if len(getattr(tensor, f))]
    raw = len(tensor.raw_data)
    if tensor.data_location == _EXTERNAL or len(tensor.external_data):
        if tensor.data_location != _EXTERNAL or raw or filled:
            raise WeightsError(f"{what}: expected external data only with data_location "
                               "EXTERNAL and no data in the model itself")
        external.declare(tensor, nbytes, what)
    elif raw:
        if filled:
            raise WeightsError(f"{what} holds raw_data and {filled[0]}: expected one of them")
        if raw != nbytes:
            raise WeightsError(
                f"{what}: {type_label} of shape {dims} needs {nbytes} bytes of "
                f"raw_data, the file holds {raw}"
            )
    elif filled not in ([], [field]) or len(getattr(tensor, field)) != count:
        found = ", ".join(f"{len(getattr(tensor, f))} values in {f}" for f in filled) or "no data"
        raise WeightsError(
            f"{what}: {type_label} of shape {dims} needs {count} values in {field}, "
            f"found {found}"
        )
    return nbytes


def tensor_array(tensor: Any, what: str, external: ExternalFiles) -> np.ndarray:
    """The values of a tensor that `declared_nbytes` has checked."""
    _, dtype, field = _TENSOR_TYPES[tensor.data_type]
    if tensor.data_location == _EXTERNAL:
        nbytes = math.prod(tensor.dims) * dtype.itemsize
        values = np.frombuffer(external.read(tensor, nbytes, what), dtype=dtype)
    elif tensor.raw_data:
        values = np.frombuffer(tensor.raw_data, dtype=dtype)
    elif field == "int32_data" and dtype.itemsize == 2:
        bits = np.array(tensor.int32_data, dtype=np.int64)
        if bits.size and (bits.min() < 0 or bits.max() > 0xFFFF):
            raise WeightsError(f"{what}: 16-bit values in int32_data beyond 0..65535")
        values = bits.astype(np.uint16)  # the bits, reinterpreted below
    else:
        values = np.array(getattr(tensor, field), dtype=np.int64 if tensor.data_type == _BOOL
                          else dtype)
    if tensor.data_type == _BOOL:
        if values.size and (values.min() < 0 or values.max() > 1):
            raise WeightsError(f"{what}: BOOL values other than 0 and 1")
        values = values.astype(np.bool_)
    elif tensor.data_type == _FLOAT16:
        values = values.view(np.float16)
    elif tensor.data_type == _BFLOAT16:  # the top half of a float32
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values.reshape(tuple(tensor.dims))
