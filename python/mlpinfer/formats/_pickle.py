"""The textbook's ``sample_weight.pkl``: a pickled dict ``W1..Wn``, ``b1..bn`` of arrays.

Read by the restricted unpickler with the globals that rebuilding NumPy arrays needs
(`NUMPY_GLOBALS`, `NUMPY_SETSTATE`, which other pickle readers may reuse), each replaced
by a function that checks its arguments first. Written with ``pickle`` protocol 4.
"""

from __future__ import annotations

import importlib
import math
import pickle
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from .._errors import WeightsError
from .._files import write_atomically
from .._network import Network
from ._budget import Budget
from ._registry import Format, Request
from ._unpickler import RestrictedUnpickler, SetState, empty_dict

__all__ = ["FORMAT", "NUMPY_GLOBALS", "NUMPY_SETSTATE", "read_weight_pickle"]


def _numpy_core_module(name: str) -> Any:
    # NumPy 2 renamed numpy.core to numpy._core and warns on the old name; pickles
    # written by either carry their own spelling, so both map to whichever exists.
    for package in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ImportError:
            continue
    raise ImportError(f"numpy has neither numpy._core.{name} nor numpy.core.{name}")


_MULTIARRAY = _numpy_core_module("multiarray")
_NUMERIC = _numpy_core_module("numeric")


def _latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    """Pickle protocols 0-2 spell a bytes object as ``_codecs.encode(text, "latin1")``.

    Only that spelling is accepted: the codec registry can reach other codecs.
    """
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise WeightsError(f"refusing _codecs.encode with encoding {str(encoding)[:40]!r}")
    return text.encode("latin1")


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to in a weight pickle: a name to hand to
    `_reconstruct_empty`, not a class that the file could call with a shape."""


_NDARRAY_NAME = _NdarrayName()


def _reconstruct_empty(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by BUILD
    with its data, which checks the data against the shape. Any other call would
    allocate whatever the file asks for, so it is refused."""
    if subtype is not _NDARRAY_NAME or type(shape) is not tuple or shape != (0,):
        raise WeightsError(
            "refusing numpy _reconstruct with a non-empty shape or a subtype other than "
            "ndarray: NumPy's own pickles never do that"
        )
    if dtype not in (b"b", "b"):  # "b" in pickles that Python 2 wrote
        raise WeightsError("refusing numpy _reconstruct with a dtype other than b'b'")
    return _MULTIARRAY._reconstruct(np.ndarray, (0,), dtype)


def _numeric_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """What ``numpy.dtype`` resolves to in a weight pickle: ``numpy.dtype(spec, 0, 1)``
    as NumPy pickles it, for numbers only. NumPy's dtype.__setstate__ trusts its input,
    and a datetime dtype given the state of a number crashed the interpreter (a fuzz
    finding); weights are numbers anyway. Without ``copy`` the dtype would be NumPy's
    own instance, shared by the process, whose state the BUILD that follows would set."""
    flags_ok = all(type(f) in (bool, int) and f in (0, 1) for f in (align, copy))
    if type(spec) is not str or not flags_ok or not copy:
        raise WeightsError(
            f"refusing numpy dtype{(str(spec)[:40], align, copy)!r}: not how NumPy pickles a dtype")
    try:
        dtype = np.dtype(spec, align, copy)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"refusing numpy dtype {spec!r:.40}: {error}") from None
    if dtype.kind not in "biufc":  # structured and subarray dtypes are kind "V"
        raise WeightsError(f"refusing numpy dtype {spec!r:.40} ({dtype}): weights are numbers")
    return dtype


def _frombuffer_of_bytes(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """Protocol 5 pickles rebuild an array as ``_frombuffer(data, dtype, shape, order)``.
    Only bytes are wrapped (a bytearray is copied into bytes): a view of anything else,
    say an array the file rebuilds later, would outlive the memory it points at."""
    if type(buffer) is bytearray:
        buffer = bytes(buffer)
    if (type(buffer) is not bytes or not isinstance(dtype, np.dtype) or dtype.kind not in "biufc"
            or type(shape) is not tuple or not all(type(d) is int and d >= 0 for d in shape)
            or order not in ("C", "F")):
        raise WeightsError(
            "refusing numpy _frombuffer other than of bytes, with a numeric dtype, a shape and "
            "order 'C' or 'F': not how NumPy pickles arrays")
    if math.prod(shape) * dtype.itemsize != len(buffer):
        raise WeightsError(
            f"numpy _frombuffer: shape {shape} of {dtype} needs {math.prod(shape) * dtype.itemsize} "
            f"bytes, the file gives {len(buffer)}")
    return _NUMERIC._frombuffer(buffer, dtype, shape, order)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY_NAME,
        ("numpy", "dtype"): _numeric_dtype,
        ("collections", "OrderedDict"): empty_dict,
        ("_codecs", "encode"): _latin1_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _reconstruct_empty
        allowed[(f"{package}.numeric", "_frombuffer")] = _frombuffer_of_bytes
    return allowed


#: The globals a pickle of NumPy arrays in plain containers may name.
NUMPY_GLOBALS: Mapping[tuple[str, str], Any] = _numpy_globals()


def _set_dtype_state(dtype: np.dtype, state: Any, budget: Budget) -> None:
    """``(3, byte order, None, None, None, -1, -1, flags)``: a dtype without fields, with
    the flags it has. NumPy takes the flags on trust: 1 (holds object references) on a
    float dtype made NumPy fail inside and raise SystemError (a fuzz finding)."""
    plain = (
        type(state) is tuple
        and len(state) == 8
        and state[0] == 3
        and state[1] in ("<", ">", "|", "=")
        and state[2:5] == (None, None, None)
        and state[5:7] == (-1, -1)
        and type(state[7]) is int
        and state[7] == dtype.flags
    )
    if not plain:
        raise budget.fail(
            f"refusing to set the state of a dtype from {str(state)[:60]}: not how NumPy "
            "pickles a dtype")
    dtype.__setstate__(state)


def _set_array_state(array: np.ndarray, state: Any, budget: Budget) -> None:
    """``(1, shape, dtype, fortran_order, data)``, as ndarray.__reduce__ writes it, with
    exactly the bytes the shape needs (charged before NumPy copies them)."""
    plain = (
        type(state) is tuple
        and len(state) == 5
        and state[0] == 1
        and type(state[1]) is tuple
        and all(type(d) is int and d >= 0 for d in state[1])
        and isinstance(state[2], np.dtype)
        and state[2].kind in "biufc"
        and type(state[3]) is bool
        and type(state[4]) is bytes
    )
    if not plain:
        raise budget.fail(
            f"refusing to set the state of an array from {str(state)[:60]}: not how NumPy "
            "pickles an array of numbers")
    needed = math.prod(state[1]) * state[2].itemsize
    if needed != len(state[4]):
        raise budget.fail(
            f"an array of shape {state[1]} and {state[2]} needs {needed} bytes, the file "
            f"gives {len(state[4])}")
    budget.charge(needed, f"an array of shape {state[1]}")
    array.__setstate__(state)


#: How BUILD applies to the objects a NumPy pickle builds (checked first).
NUMPY_SETSTATE: Mapping[type, SetState] = {
    **{type(np.dtype(code)): _set_dtype_state for code in "?bBhHiIlLqQefdgFDG"},
    np.ndarray: _set_array_state,
}


def read_weight_pickle(stream: BinaryIO, size: int, budget: Budget) -> dict[str, np.ndarray]:
    """The dict of arrays a weight pickle holds, or `WeightsError` naming the file."""
    loaded = RestrictedUnpickler(stream, size, allowed=NUMPY_GLOBALS, budget=budget,
                                 setstate=NUMPY_SETSTATE).load()
    if type(loaded) is not dict:
        raise budget.fail(
            f"expected a dict of arrays W1..Wn, b1..bn, found a pickled {type(loaded).__name__}")
    for key, value in loaded.items():
        # Only arrays: turning a pickled (possibly self-referencing) list into an
        # array could take minutes and gigabytes.
        if type(value) is not np.ndarray:
            raise budget.fail(
                f"{key[:40]!r} is a pickled {type(value).__name__}; expected a NumPy array")
    return loaded


def _read(request: Request) -> Network:
    with request.open() as stream:
        params = read_weight_pickle(stream, request.size, request.budget)
    return request.network_from(params)


def _write(network: Network, path: Any) -> None:
    # The textbook format records only weights: readers assume the rest (what
    # mlpinfer.load assumes for a .pkl), so a network that differs is refused.
    textbook = ("sigmoid",) * (len(network.layers) - 1) + ("softmax",)
    if (network.activations != textbook or network.input_scale is not None
            or network.pixel_scale != 1 / 255 or network.classes is not None
            or network.input_transform is not None
            or any(layer.norm is not None for layer in network.layers)):
        raise WeightsError(
            f"a .pkl records only weights and reads back as sigmoid hidden layers, a softmax "
            f"output, float input as given, uint8 pixels / 255 and index labels; this "
            f"network is {network!r}: write .npz (the native format) to keep its "
            "activations, scales, input transform and classes"
        )
    params = {name: array.copy() for name, array in network.params().items()}
    write_atomically(path, lambda stream: pickle.dump(params, stream, protocol=4))


FORMAT = Format(
    name="pickle",
    description="textbook sample_weight.pkl (a pickled dict W1..Wn, b1..bn)",
    recognise=lambda probe: not probe.is_zip,
    catch_all=True,
    read=_read,
    write=_write,
    suffixes=(".pkl",),
    options=frozenset({"hidden", "output", "input_scale"}),
    records="only weights",
)
