"""Reading weight files without ever running code from them.

Formats, recognised by content rather than by file name:
- a pickle of a dict ``W1..Wn``, ``b1..bn`` (the textbook's ``sample_weight.pkl``),
  read by an unpickler that can only rebuild NumPy arrays and plain containers;
- an ``.npz`` with the same keys (``allow_pickle=False``);
- the native format: such an ``.npz`` plus a JSON header recording the activations
  and the input scale (written by ``Network.save``).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from ._errors import WeightsError

__all__ = [
    "FORMAT_VERSION",
    "HEADER_KEY",
    "UNREADABLE_FORMATS",
    "WeightFile",
    "header_bytes",
    "is_float32_number",
    "ordered_layers",
    "read_weight_file",
    "sniff_format",
    "sniff_path",
]

HEADER_KEY = "mlpinfer_header"
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"


def _numpy_core_module(name: str) -> Any:
    # NumPy 2 renamed numpy.core to numpy._core and warns on the old name; pickles
    # written by either carry their own spelling, so both map to whichever exists.
    for package in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ImportError:
            continue
    raise ImportError(f"numpy has neither numpy._core.{name} nor numpy.core.{name}")


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """Pickle protocols 0-2 spell a bytes object as ``_codecs.encode(text, "latin1")``.

    Only that spelling is accepted: the codec registry can reach other codecs.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WeightsError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to in a weight pickle: a name to hand to
    `_reconstruct_empty`, not a class that the file could call with a shape."""


_NDARRAY_NAME = _NdarrayName()
_MULTIARRAY = _numpy_core_module("multiarray")
# pickle.dumps writes frames of about 64 KiB; a larger one only makes us read ahead.
_MAX_FRAME = 1 << 20


def _reconstruct_empty(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by BUILD
    with its data, which checks the data against the shape. Any other call would
    allocate whatever the file asks for, so it is refused."""
    if subtype is not _NDARRAY_NAME or shape != (0,):
        raise WeightsError(
            "refusing numpy _reconstruct with a non-empty shape or a subtype other than "
            "ndarray: NumPy's own pickles never do that"
        )
    return _MULTIARRAY._reconstruct(np.ndarray, (0,), dtype)


def _numeric_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """What ``numpy.dtype`` resolves to in a weight pickle: ``numpy.dtype(spec, align,
    copy)`` as NumPy pickles it (align and copy are 0/1 in old files), for numbers only.
    NumPy's dtype.__setstate__ trusts its input, and a datetime dtype given the state of
    a number crashed the interpreter (a fuzz finding); weights are numbers anyway."""
    if type(spec) is not str or any(type(f) not in (bool, int) or f not in (0, 1) for f in (align, copy)):
        raise WeightsError(
            f"refusing numpy dtype{(spec, align, copy)!r:.80}: not how NumPy pickles a dtype")
    try:
        dtype = np.dtype(spec, align, copy)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"refusing numpy dtype {spec!r:.40}: {error}") from None
    if dtype.kind not in "biufc":  # structured and subarray dtypes are kind "V"
        raise WeightsError(f"refusing numpy dtype {spec!r:.40} ({dtype}): weights are numbers")
    return dtype


def _allowed_globals() -> dict[tuple[str, str], Any]:
    numeric = _numpy_core_module("numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY_NAME,
        ("numpy", "dtype"): _numeric_dtype,
        ("collections", "OrderedDict"): dict,
        ("_codecs", "encode"): _latin1_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _reconstruct_empty
        # Protocol 5 pickles rebuild arrays from a buffer; NumPy checks its size.
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


def _is_plain_dtype_state(dtype: np.dtype, state: Any) -> bool:
    """``(3, byte order, None, None, None, -1, -1, flags)``: a dtype without fields, with
    the flags it has. NumPy takes the flags on trust: 1 (holds object references) on a
    float dtype made NumPy fail inside and raise SystemError (a fuzz finding)."""
    return (
        type(state) is tuple
        and len(state) == 8
        and state[0] == 3
        and state[1] in ("<", ">", "|", "=")
        and state[2:5] == (None, None, None)
        and state[5:7] == (-1, -1)
        and type(state[7]) is int
        and state[7] == dtype.flags
    )


def _is_array_state(state: Any) -> bool:
    """``(1, shape, dtype, fortran_order, data)``, as ndarray.__reduce__ writes it."""
    return (
        type(state) is tuple
        and len(state) == 5
        and state[0] == 1
        and type(state[1]) is tuple
        and all(type(d) is int and d >= 0 for d in state[1])
        and isinstance(state[2], np.dtype)
        and type(state[3]) is bool
        and isinstance(state[4], (bytes, bytearray, list))
    )


class _ArrayOnlyUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Resolves only the globals that rebuilding NumPy arrays needs.

    The pure-Python unpickler, not the C one: its memo is a dict, so ``LONG_BINPUT
    680825748`` cannot make it allocate gigabytes, and its frames can be capped.
    """

    _allowed = _allowed_globals()
    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise WeightsError(
                f"refusing to load global '{module}.{name}': a weight pickle may only "
                "contain NumPy arrays in a dict (this file would run code while loading)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError("refusing a pickle with persistent IDs: weight pickles have none")

    def __init__(self, file: Any, size: int) -> None:
        super().__init__(file)
        self._size = size

    def _load_bytearray8(self) -> None:
        # The stock handler allocates the declared size before reading a byte of it.
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._size:
            raise WeightsError(
                f"truncated file: a bytearray of {length} bytes in a file of {self._size}"
            )
        self.append(bytearray(self.read(length)))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def _load_build(self) -> None:
        # NumPy's own __setstate__ trusts its input (a 6-tuple given to dtype's crashes the
        # interpreter, a fuzz finding): only the shapes of state that NumPy itself writes
        # reach it.
        state = self.stack.pop()
        target = self.stack[-1]
        plain_dtype = isinstance(target, np.dtype) and _is_plain_dtype_state(target, state)
        plain_array = type(target) is np.ndarray and _is_array_state(state)
        if plain_dtype or plain_array:
            target.__setstate__(state)
        else:
            raise WeightsError(
                f"refusing to set the state of a {type(target).__name__} from "
                f"{type(state).__name__} {str(state)[:60]}: not how NumPy pickles arrays"
            )

    dispatch[pickle.BUILD[0]] = _load_build

    def _load_frame(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        if size > _MAX_FRAME:
            raise WeightsError(f"refusing a pickle frame of {size} bytes (at most {_MAX_FRAME})")
        self._unframer.load_frame(size)

    dispatch[pickle.FRAME[0]] = _load_frame


class _BoundedReader(io.RawIOBase):
    """A file reader that refuses reads past the end instead of attempting them.

    A pickle can declare a multi-gigabyte bytes object in a few bytes; the stock
    file object would allocate the declared size before noticing the file is short.
    """

    def __init__(self, raw: BinaryIO, size: int) -> None:
        super().__init__()
        self._raw = raw
        self._remaining = size

    def readable(self) -> bool:
        return True

    def _claim(self, wanted: int) -> None:
        if wanted > self._remaining:
            raise WeightsError(
                f"truncated file: the pickle asks for {wanted} more bytes, "
                f"{self._remaining} remain"
            )

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        self._claim(len(view))
        got = self._raw.readinto(view)
        self._remaining -= got
        return got

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._remaining
        self._claim(size)
        data = self._raw.read(size)
        self._remaining -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._remaining if size is None or size < 0 else min(size, self._remaining)
        line = self._raw.readline(limit)
        self._remaining -= len(line)
        return line


class WeightFile:
    """What a weight file holds: parameters, and the recorded settings if native."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        activations: list[str] | None,
        input_scale: float | None,
        pixel_scale: float | str | None = "auto",
        classes: list[Any] | None = None,
    ) -> None:
        self.params = params
        self.activations = activations
        self.input_scale = input_scale
        self.pixel_scale = pixel_scale  # "auto": not recorded (files before pixel_scale)
        self.classes = classes


def read_weight_file(path: str | os.PathLike[str]) -> WeightFile:
    try:
        with open(path, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            head = raw.read(4)
            raw.seek(0)
            if size == 0:
                raise WeightsError(f"{os.fspath(path)}: empty file, expected a weight file")
            kind = sniff_format(raw)
            raw.seek(0)
            if kind in UNREADABLE_FORMATS:
                raise WeightsError(f"{os.fspath(path)}: {UNREADABLE_FORMATS[kind]}")
            if head == _ZIP_MAGIC:
                return _read_npz(raw, path)
            return WeightFile(_unpickle(raw, size, path), None, None)
    except OSError as error:
        raise WeightsError(f"cannot read weight file {os.fspath(path)!r}: {error.strerror or error}") from None


# Formats recognised by content that no reader here handles (mlpinfer.load sends ONNX,
# Keras and PyTorch files to mlpinfer.importers before this module sees them).
UNREADABLE_FORMATS = {
    "hdf5": "an HDF5 file (a legacy Keras .h5 model?), which mlpinfer does not read: "
            "save the model as .keras",
}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def sniff_path(path: str | os.PathLike[str]) -> str:
    """`sniff_format` of a file, or "unreadable" when it cannot be opened."""
    try:
        with open(path, "rb") as stream:
            return sniff_format(stream)
    except OSError:
        return "unreadable"


def sniff_format(stream: BinaryIO) -> str:
    """What a file holds, judged by content: "npz", "pickle", "onnx", "keras", "torch"
    or "hdf5"."""
    head = stream.read(16)
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(_ZIP_MAGIC):
        stream.seek(0)
        try:
            names = zipfile.ZipFile(stream).namelist()
        except Exception:  # noqa: BLE001 - reported as a broken .npz by the reader
            return "npz"
        if "config.json" in names and "model.weights.h5" in names:
            return "keras"
        if any(name.endswith("/data.pkl") for name in names):
            return "torch"
        return "npz"
    # ONNX is a protobuf ModelProto whose first field is ir_version (tag 0x08, a small
    # varint); no pickle starts with byte 0x08, which is not a pickle opcode.
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in (
        0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72
    ):
        return "onnx"
    return "pickle"


def _unpickle(raw: BinaryIO, size: int, path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    name = os.fspath(path)
    try:
        loaded = _ArrayOnlyUnpickler(_BoundedReader(raw, size), size).load()
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to parse a hostile file is ours
        raise WeightsError(
            f"{name}: not a readable weight pickle or .npz ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(loaded, Mapping):
        raise WeightsError(
            f"{name}: expected a dict of arrays W1..Wn, b1..bn, "
            f"found a pickled {type(loaded).__name__}"
        )
    for key, value in loaded.items():
        # Only arrays: turning a pickled (possibly self-referencing) list into an
        # array could take minutes and gigabytes.
        if not isinstance(value, np.ndarray):
            raise WeightsError(
                f"{name}: {key!r} is a pickled {type(value).__name__}; a weight pickle "
                "holds NumPy arrays"
            )
    return dict(loaded)


# np.savez stores arrays as they are, and savez_compressed shrinks real weights a few
# times; a member that inflates more than this from a few megabytes up is a zip bomb.
_MAX_INFLATION = 100
_INFLATION_CHECKED_FROM = 16 << 20


def _refuse_zip_bombs(raw: BinaryIO, path: str | os.PathLike[str]) -> None:
    with zipfile.ZipFile(raw) as archive:
        for member in archive.infolist():
            if (member.file_size > _INFLATION_CHECKED_FROM
                    and member.file_size > _MAX_INFLATION * max(member.compress_size, 1)):
                raise WeightsError(
                    f"{os.fspath(path)}: member {member.filename!r} inflates from "
                    f"{member.compress_size} to {member.file_size} bytes; refusing a "
                    "decompression bomb"
                )
    raw.seek(0)


def _read_npz(raw: BinaryIO, path: str | os.PathLike[str]) -> WeightFile:
    try:
        _refuse_zip_bombs(raw, path)
        with np.load(raw, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, zlib and .npy parsers raise many types
        raise WeightsError(
            f"{os.fspath(path)}: not a readable .npz of plain arrays ({type(error).__name__}: {error})"
        ) from None
    header = arrays.pop(HEADER_KEY, None)
    if header is None:
        return WeightFile(arrays, None, None)
    return _with_header(arrays, header, path)


def _with_header(
    arrays: dict[str, np.ndarray], header: np.ndarray, path: str | os.PathLike[str]
) -> WeightFile:
    try:
        meta = json.loads(header.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, or nested too deep
        raise WeightsError(f"{os.fspath(path)}: corrupt mlpinfer header ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != "mlpinfer":
        raise WeightsError(f"{os.fspath(path)}: header is not an mlpinfer network header")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{os.fspath(path)}: format version {version!r}; this mlpinfer reads version "
            f"{FORMAT_VERSION} (upgrade mlpinfer for newer files)"
        )
    activations = meta.get("activations")
    scale = meta.get("input_scale")
    if not isinstance(activations, list) or not all(isinstance(a, str) for a in activations):
        raise WeightsError(f"{os.fspath(path)}: header 'activations' must be a list of names")
    if scale is not None and not is_float32_number(scale):
        raise WeightsError(
            f"{os.fspath(path)}: header 'input_scale' must be null or a number within "
            f"float32's range, got {str(scale)[:40]}"
        )
    # Files written before pixel_scale existed scaled uint8 as Network's "auto" does.
    pixel_scale = meta.get("pixel_scale", "auto")
    if pixel_scale not in (None, "auto") and not is_float32_number(pixel_scale):
        raise WeightsError(
            f"{os.fspath(path)}: header 'pixel_scale' must be null or a number within "
            f"float32's range, got {str(pixel_scale)[:40]}"
        )
    classes = meta.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not all(isinstance(c, (str, int, float)) for c in classes)
    ):
        raise WeightsError(
            f"{os.fspath(path)}: header 'classes' must be null or a list of numbers or strings"
        )
    return WeightFile(arrays, activations, None if scale is None else float(scale),
                      pixel_scale, classes)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_float32_number(value: Any) -> bool:
    """A real number (not a bool) that float32, the engine's precision, holds as finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        number = float(value)
    except OverflowError:
        return False
    return math.isfinite(number) and abs(number) <= _FLOAT32_MAX


def header_bytes(
    activations: list[str],
    input_scale: float | None,
    pixel_scale: float | None = None,
    classes: list[Any] | None = None,
) -> np.ndarray:
    text = json.dumps(
        {
            "format": "mlpinfer",
            "version": FORMAT_VERSION,
            "activations": activations,
            "input_scale": input_scale,
            "pixel_scale": pixel_scale,
            "classes": classes,
        }
    )
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


_PARAM_NAME = re.compile(r"([Wb])([1-9][0-9]*)\Z")


def ordered_layers(params: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """``[(W1, b1), ..., (Wn, bn)]``; the keys must be exactly W1..Wn, b1..bn."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping of W1..Wn, b1..bn to arrays, got {type(params).__name__}"
        )
    found: dict[str, dict[int, Any]] = {"W": {}, "b": {}}
    for key, value in params.items():
        match = _PARAM_NAME.match(key) if isinstance(key, str) else None
        if match is None:
            raise WeightsError(f"unexpected key {key!r}: expected only W1..Wn and b1..bn")
        found[match.group(1)][int(match.group(2))] = value
    depth = len(found["W"])
    if depth == 0:
        raise WeightsError(f"no weights found: expected keys W1..Wn, b1..bn, got {sorted(params)!r}")
    expected = set(range(1, depth + 1))
    for kind in ("W", "b"):
        if set(found[kind]) != expected:
            missing = sorted(expected - set(found[kind]))
            extra = sorted(set(found[kind]) - expected)
            raise WeightsError(
                f"keys must be W1..W{depth} and b1..b{depth} without gaps; "
                f"missing {[kind + str(i) for i in missing]}, unexpected {[kind + str(i) for i in extra]}"
            )
    return [(found["W"][i], found["b"][i]) for i in range(1, depth + 1)]
