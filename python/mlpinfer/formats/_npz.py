"""``.npz`` weights: the textbook keys as arrays, and the native format, which adds a
JSON header recording the activations (with their parameters), the input and pixel
scales, the classes and the layers' LayerNorms (written by `mlpinfer.save`).

A LayerNorm's arrays are the members ``gamma<i>`` and ``beta<i>`` of layer i, its
epsilon and place (``after_activation``) the header's ``norms`` entry i. A file with a
LayerNorm is version 2, so that a reader of version 1, which knows no LayerNorm, refuses
it rather than computing without one. An input transform (`mlpinfer.InputTransform`) is
the float64 members ``input_shift`` and ``input_multiplier`` with ``"input_transform":
true`` in the header, and makes the file version 3 for the same reason. A multi-label
classifier (`Network.multilabel`) is ``"multilabel": true`` and version 4: a reader that
ignored the key would classify it. Every other file stays version 1.

Members are read with ``allow_pickle=False`` after `open_zip` has charged their declared
sizes to the budget; each ``.npy`` header is parsed by NumPy, and anything it raises on
a broken one ends as our `WeightsError`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import MlpinferError
from .._files import write_atomically
from .._network import InputTransform, Layer, LayerNorm, Network
from .._params import is_float32_number, ordered_layers
from ._budget import Budget, open_zip
from ._recorded import checked_classes, checked_scale, read_json
from ._registry import Format, Request

__all__ = ["FORMAT_VERSION", "HEADER_KEY", "NATIVE", "NPZ", "header_bytes", "read_npz"]

HEADER_KEY = "mlpinfer_header"
FORMAT_VERSION = 4  # the newest this mlpinfer reads; the oldest that holds a file is written
_TRANSFORM_KEYS = ("input_shift", "input_multiplier")
_NORM_KEY = re.compile(r"(gamma|beta)([1-9][0-9]{0,5})\Z")
_HEADER_MEMBER = f"{HEADER_KEY}.npy"


def read_npz(stream: Any, budget: Budget) -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` as an array, or `WeightsError` naming the file."""
    with open_zip(stream, budget, what="an .npz of arrays") as archive:
        arrays: dict[str, np.ndarray] = {}
        for member in archive.infolist():
            key = member.filename.removesuffix(".npy")
            label = f"member {member.filename[:80]!r}"
            if not member.filename.endswith(".npy") or key in arrays:
                raise budget.fail(f"expected .npy members with distinct names, found {label}")
            try:
                with archive.open(member) as entry:
                    _check_npy_header(entry, member.file_size, label, budget)
                with archive.open(member) as entry:
                    array = np.lib.format.read_array(entry, allow_pickle=False)
                    entry.read(1)  # reaching the end checks the CRC
            except MlpinferError:
                raise
            except Exception as error:  # noqa: BLE001 - zip, zlib and .npy parsers raise many types
                raise budget.fail(
                    f"{label}: expected a .npy array of numbers, found {type(error).__name__}: "
                    f"{str(error)[:200]}") from None
            arrays[key] = array
    return arrays


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _check_npy_header(entry: Any, member_size: int, label: str, budget: Budget) -> None:
    """The .npy header must declare numbers filling exactly the rest of the member: NumPy
    allocates what the shape says before reading (a terabyte from a 1 KB member), and
    reads only that much (bytes after it were ignored, so a shape could hide data)."""
    version = np.lib.format.read_magic(entry)
    if version not in _HEADER_READERS:
        raise budget.fail(f"{label}: expected .npy version 1.0 or 2.0, found {version}")
    shape, _, dtype = _HEADER_READERS[version](entry)
    if dtype.hasobject or dtype.kind not in "biufc":
        raise budget.fail(f"{label}: expected an array of numbers, found dtype {dtype}")
    declared = math.prod(shape) * dtype.itemsize
    holds = member_size - entry.tell()
    if declared != holds:
        raise budget.fail(
            f"{label}: expected the {declared} bytes of data that its .npy header declares "
            f"({shape} of {dtype}), found {holds}")


def header_bytes(
    activations: list[str],
    input_scale: float | None,
    pixel_scale: float | None = None,
    classes: list[Any] | None = None,
    norms: list[dict[str, Any] | None] | None = None,
    input_transform: bool = False,
    multilabel: bool = False,
) -> np.ndarray:
    """The JSON header; ``norms`` has one entry per layer, ``None`` or ``{"epsilon": e,
    "after_activation": bool}``; ``input_transform``: whether the file has one (the
    arrays are members of their own); ``multilabel``: `Network.multilabel`."""
    header: dict[str, Any] = {
        "format": "mlpinfer",
        "version": 1,
        "activations": activations,
        "input_scale": input_scale,
        "pixel_scale": pixel_scale,
        "classes": classes,
    }
    if norms is not None and any(norm is not None for norm in norms):
        header.update(version=2, norms=norms)
    if input_transform:
        header.update(version=3, input_transform=True)
    if multilabel:
        header.update(version=4, multilabel=True)
    return np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


def _read_header(header: np.ndarray, budget: Budget) -> dict[str, Any]:
    """The header's recorded settings, as keywords of `Network.from_params`."""
    if header.dtype != np.uint8 or header.ndim != 1:
        raise budget.fail(
            f"expected the header as uint8 bytes, found {header.dtype} of shape {header.shape}")
    meta = read_json(header.tobytes(), "mlpinfer header", budget)
    if not isinstance(meta, dict) or meta.get("format") != "mlpinfer":
        raise budget.fail("header is not an mlpinfer network header")
    version = meta.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise budget.fail(
            f"format version {str(version)[:40]}; this mlpinfer reads version {FORMAT_VERSION} "
            "(upgrade mlpinfer for newer files)")
    activations = meta.get("activations")
    if not isinstance(activations, list) or not all(isinstance(a, str) for a in activations):
        raise budget.fail("header 'activations' must be a list of names")
    # Files written before pixel_scale existed scale uint8 as Network's "auto" does.
    pixel_scale = meta.get("pixel_scale", "auto")
    transform = meta.get("input_transform", False) if version >= 3 else False
    multilabel = meta.get("multilabel", False) if version >= 4 else False
    for key, value in (("input_transform", transform), ("multilabel", multilabel)):
        if type(value) is not bool:
            raise budget.fail(
                f"header {key!r} must be true or false, got {json.dumps(value)[:40]}")
    return {
        "input_transform": transform,
        "activations": activations,
        "norms": _checked_norms(meta.get("norms") if version >= 2 else None, budget),
        "input_scale": checked_scale(meta.get("input_scale"), "header 'input_scale'", budget),
        "pixel_scale": "auto" if pixel_scale == "auto" else checked_scale(
            pixel_scale, "header 'pixel_scale'", budget),
        "classes": checked_classes(meta.get("classes"), "header 'classes'", budget),
        "multilabel": multilabel,
    }


def _checked_norms(value: Any, budget: Budget) -> list[tuple[float, bool] | None] | None:
    """The header's ``norms``: per layer, None or (epsilon, after_activation)."""
    if value is None:
        return None
    if type(value) is not list:
        raise budget.fail("header 'norms' must be a list with one entry per layer")
    norms: list[tuple[float, bool] | None] = []
    for index, entry in enumerate(value, start=1):
        if entry is None:
            norms.append(None)
            continue
        if type(entry) is not dict or set(entry) != {"epsilon", "after_activation"}:
            raise budget.fail(
                f"header 'norms' entry {index} must be null or "
                '{"epsilon": number, "after_activation": true or false}')
        epsilon, after = entry["epsilon"], entry["after_activation"]
        if not is_float32_number(epsilon) or not epsilon > 0 or type(after) is not bool:
            raise budget.fail(
                f"header 'norms' entry {index}: epsilon must be a positive number within "
                f"float32's range and after_activation true or false, got "
                f"{json.dumps(entry)[:80]}")
        norms.append((float(epsilon), after))
    return norms


def _native_network(arrays: dict[str, np.ndarray], settings: dict[str, Any],
                    budget: Budget) -> Network:
    """The network of a native file's arrays (W, b, gamma, beta) and header settings."""
    norm_arrays = {key: arrays.pop(key) for key in list(arrays) if _NORM_KEY.match(key)}
    transform_arrays = [arrays.pop(key, None) for key in _TRANSFORM_KEYS]
    has_transform = settings.pop("input_transform")
    if [array is not None for array in transform_arrays] != [has_transform] * 2:
        found = [key for key, array in zip(_TRANSFORM_KEYS, transform_arrays, strict=True)
                 if array is not None]
        raise budget.fail(
            f"the members {' and '.join(_TRANSFORM_KEYS)} go with the header's "
            f"'input_transform': true; the header says {json.dumps(has_transform)}, found "
            f"{found or 'neither'}")
    if has_transform and any(array.dtype != np.float64 for array in transform_arrays):
        raise budget.fail(
            f"{' and '.join(_TRANSFORM_KEYS)} must be float64, found "
            f"{' and '.join(str(array.dtype) for array in transform_arrays)}")
    settings["input_transform"] = InputTransform(*transform_arrays) if has_transform else None
    norms = settings.pop("norms")
    activations = settings.pop("activations")
    pairs = ordered_layers(arrays)
    if len(activations) != len(pairs):
        raise budget.fail(
            f"got {len(activations)} activations for a network of {len(pairs)} layers")
    expected = set()
    if norms is not None:
        if len(norms) != len(pairs):
            raise budget.fail(
                f"header 'norms' has {len(norms)} entries for a network of {len(pairs)} layers")
        expected = {f"{part}{i}" for i, norm in enumerate(norms, start=1) if norm is not None
                    for part in ("gamma", "beta")}
    if set(norm_arrays) != expected:
        missing = sorted(expected - set(norm_arrays))[:6]
        extra = sorted(set(norm_arrays) - expected)[:6]
        raise budget.fail(
            f"the LayerNorm members must match the header's 'norms': missing {missing}, "
            f"unexpected {extra}")
    layers = []
    for i, ((weights, bias), activation) in enumerate(zip(pairs, activations, strict=True), 1):
        norm = None if norms is None else norms[i - 1]
        if norm is None:
            layers.append(Layer(weights, bias, activation))
        else:
            gamma, beta = norm_arrays[f"gamma{i}"], norm_arrays[f"beta{i}"]
            layers.append(Layer(weights, bias, activation, LayerNorm(gamma, beta, norm[0]), norm[1]))
    return Network(layers, **settings)


def _read_native(request: Request) -> Network:
    with request.open() as stream:
        arrays = read_npz(stream, request.budget)
    header = arrays.pop(HEADER_KEY, None)
    if header is None:
        raise request.budget.fail(f"expected the member {_HEADER_MEMBER}, found none")
    return _native_network(arrays, _read_header(header, request.budget), request.budget)


def _read_npz(request: Request) -> Network:
    with request.open() as stream:
        return request.network_from(read_npz(stream, request.budget))


def _write_native(network: Network, path: Path) -> None:
    arrays = dict(network.params())
    classes = network.classes
    norms: list[dict[str, Any] | None] = []
    for index, layer in enumerate(network.layers, start=1):
        if layer.norm is None:
            norms.append(None)
            continue
        arrays[f"gamma{index}"] = layer.norm.gamma
        arrays[f"beta{index}"] = layer.norm.beta
        norms.append({"epsilon": layer.norm.epsilon,
                      "after_activation": layer.norm_after_activation})
    transform = network.input_transform
    if transform is not None:
        arrays.update(zip(_TRANSFORM_KEYS, (transform.shift, transform.multiplier), strict=True))
    arrays[HEADER_KEY] = header_bytes(
        list(network.activations), network.input_scale, network.pixel_scale,
        None if classes is None else classes.tolist(), norms, transform is not None,
        network.multilabel)

    write_atomically(path, lambda stream: np.savez(stream, **arrays))


NATIVE = Format(
    name="native",
    description="native mlpinfer network (mlpinfer.save)",
    recognise=lambda probe: probe.zip_names is not None and _HEADER_MEMBER in probe.zip_names,
    read=_read_native,
    write=_write_native,
    suffixes=(".npz",),
    records="its activations and input scale",
)

NPZ = Format(
    name="npz",
    description=".npz of arrays W1..Wn, b1..bn",
    recognise=lambda probe: probe.is_zip,
    catch_all=True,
    read=_read_npz,
    options=frozenset({"hidden", "output", "input_scale"}),
    records="only weights",
)
