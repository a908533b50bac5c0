"""PyTorch ``.pt``/``.pth`` files, read as data: no torch import, no ``torch.load``.

``torch.save`` writes a zip: ``<name>/data.pkl``, a pickle of the saved object whose
tensors are calls of ``torch._utils._rebuild_tensor_v2`` on storages named by persistent
IDs, and ``<name>/data/<key>``, each storage's bytes. The pickle is read by our
restricted unpickler, which resolves only those rebuild functions, storage types and
``OrderedDict``, to a tree of plain values and `_Tensor` descriptions; every tensor's
view is checked against its storage there (stride 0, overlapping or out-of-range views
are refused: a 2 KB tensor expanded with stride 0 to 20000x20000 once cost 7.9 GB). The
bytes of every tensor are counted against the budget before any storage is read, and a
storage member must hold exactly the elements it declares.

What the file holds is interpreted as a state_dict of an ``nn.Sequential`` plus its
architecture (`network_from_state_dict`), or the bundle `write_torch` writes.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import WeightsError
from .._files import write_atomically
from .._network import Network
from ._budget import Budget, open_zip, read_member
from ._chain import Chain, UnsupportedModelError, require
from ._recorded import checked_classes, checked_scale
from ._registry import Format, Probe, Request
from ._unpickler import RestrictedUnpickler, empty_dict

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURE_LAYERS",
    "FORMAT",
    "LEGACY_FORMAT",
    "network_from_state_dict",
    "read_torch",
    "write_torch",
]

# Layer names of an architecture description: nn.Sequential entries, in order.
ARCHITECTURE_LAYERS = ("Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Identity", "Flatten",
                       "Dropout")
ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
               "Identity": "identity"}
# The file that write_torch writes: a state_dict of an nn.Sequential plus what it cannot say.
_BUNDLE_FORMAT = "mlpinfer.torch"
_BUNDLE_VERSION = 1
# Storage classes as torch.save names them -> element type. Integer storages hold
# counters (BatchNorm's num_batches_tracked) and are read so that the refusal can name
# the entry; weights must be floats.
_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
             "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
             "ByteStorage": "|u1", "BoolStorage": "|b1"}
_FLOAT_STORAGES = ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage")
# data.pkl describes structure only (10 KB for a large state_dict): this caps what is
# inflated and unpickled before anything is checked.
_MAX_PICKLE_BYTES = 16 << 20


@dataclass(frozen=True)
class _Storage:
    """A storage named by a persistent ID: its member key, element type and length."""

    key: str
    kind: str
    numel: int


@dataclass(frozen=True)
class _Tensor:
    """A checked view of a storage: elements ``offset + sum(index * stride)``."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _is_int(value: Any) -> bool:
    return type(value) is int


def _rebuild_tensor(*args: Any) -> _Tensor:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    hooks[, metadata])``, checked: a view within its storage in which no two indices
    share an element (so a tensor costs what its storage holds)."""
    if len(args) not in (6, 7):
        raise WeightsError(f"a tensor rebuild with {len(args)} arguments; torch.save writes 6 or 7")
    storage, offset, shape, stride, requires_grad, hooks = args[:6]
    metadata = args[6] if len(args) == 7 else None
    if not isinstance(storage, _Storage):
        raise WeightsError("a tensor rebuilt from something other than a storage")
    if not (_is_int(offset) and type(shape) is tuple and type(stride) is tuple
            and len(shape) == len(stride) and all(map(_is_int, shape))
            and all(map(_is_int, stride)) and type(requires_grad) is bool
            and hooks == {} and metadata in (None, {})):
        raise WeightsError(
            "a tensor rebuild with arguments of the wrong types (expected a storage, an "
            "offset, size and stride tuples of integers, a flag and no hooks)"
        )
    if offset < 0 or any(d < 0 for d in shape):
        raise WeightsError(f"a tensor of shape {shape[:8]} at offset {offset}")
    if math.prod(shape) == 0:
        return _Tensor(storage, 0, shape, (0,) * len(shape))
    dims = sorted((s, d) for s, d in zip(stride, shape, strict=True) if d > 1)
    reach = 1
    for step, size in dims:
        if step < reach:
            raise WeightsError(
                f"a tensor of shape {shape[:8]} with strides {stride[:8]}: stride 0, "
                "negative or overlapping views (an expanded tensor) are refused"
            )
        reach = step * size
    last = offset + sum((d - 1) * s for s, d in zip(stride, shape, strict=True))
    if last >= storage.numel:
        raise WeightsError(
            f"a tensor of shape {shape[:8]}, strides {stride[:8]} at offset {offset} "
            f"reaches element {last}; its storage {storage.key!r} holds {storage.numel}"
        )
    return _Tensor(storage, offset, shape, stride)


def _rebuild_parameter(*args: Any) -> _Tensor:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks)``: the tensor."""
    if len(args) != 3 or not isinstance(args[0], _Tensor) or type(args[1]) is not bool or (
            args[2] != {}):
        raise WeightsError("a parameter rebuild that is not of a plain tensor")
    return args[0]


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): empty_dict,
    **{("torch", name): _StorageType(name) for name in _STORAGES},
}


def _set_metadata(target: Any, state: Any, budget: Budget) -> None:
    """torch.save pickles a state_dict's ``_metadata`` (module versions) as the BUILD
    state of its OrderedDict; it does not change the weights and is dropped."""
    if type(state) is not dict or set(state) != {"_metadata"}:
        raise budget.fail("refusing to set the state of a dict: torch.save sets only a "
                          "state_dict's _metadata")


def _tensor_bytes(value: Any) -> int:
    """What one use of a tensor costs: the copy of its elements it becomes."""
    if isinstance(value, _Tensor):
        return value.numel * np.dtype(_STORAGES[value.storage.kind]).itemsize
    return 0


class _Storages:
    """persistent_load of torch.save's storage IDs: one `_Storage` per key."""

    def __init__(self) -> None:
        self._known: dict[str, _Storage] = {}

    def __call__(self, pid: Any) -> _Storage:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and type(pid[2]) is str
                and type(pid[3]) is str and _is_int(pid[4]) and pid[4] >= 0):
            raise WeightsError(
                "a persistent ID that is not torch.save's ('storage', type, key, location, "
                "numel)"
            )
        storage = _Storage(pid[2], pid[1].name, pid[4])
        if self._known.setdefault(storage.key, storage) != storage:
            raise WeightsError(f"storage {storage.key[:40]!r} declared twice, differently")
        return storage


def read_torch(request: Request) -> Network:
    """A network from a file that ``torch.save`` wrote: a state_dict with
    ``architecture`` (and optionally ``input_scale``), or the bundle `write_torch` writes,
    which records both."""
    with request.open() as stream, open_zip(stream, request.budget,
                                            what="a PyTorch zip") as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise request.budget.fail(
                f"expected one <name>/data.pkl in a PyTorch zip, found {len(pickles)}"
            )
        prefix = pickles[0][: -len("data.pkl")]
        loaded = _unpickle(archive, pickles[0], request.budget)
        architecture, input_scale, state, recorded = _unwrap(
            loaded, request.architecture, request.input_scale, request.budget)
        for key, value in state.items():
            if not isinstance(value, _Tensor) or value.storage.kind not in _FLOAT_STORAGES:
                found = (f"a tensor of {value.storage.kind}" if isinstance(value, _Tensor)
                         else f"a {type(value).__name__}")
                raise request.budget.fail(
                    f"expected {key[:80]!r} to be a float tensor, found {found}")
        order = _byte_order(archive, prefix, request.budget)
        storages: dict[str, np.ndarray] = {}
        arrays = {key: _array(archive, prefix, order, tensor, storages, request.budget)
                  for key, tensor in state.items()}
    return network_from_state_dict(arrays, architecture, input_scale, **recorded)


def _unpickle(archive: zipfile.ZipFile, member: str, budget: Budget) -> Any:
    info = archive.getinfo(member)
    if info.file_size > _MAX_PICKLE_BYTES:
        raise budget.fail(f"expected {member} of at most {_MAX_PICKLE_BYTES} bytes, found "
                          f"one declaring {info.file_size}")
    data = read_member(archive, member, budget)
    return RestrictedUnpickler(
        io.BytesIO(data), len(data), allowed=_GLOBALS, budget=budget,
        setstate={dict: _set_metadata}, persistent_load=_Storages(), use_cost=_tensor_bytes,
        what="a PyTorch file of tensors in plain containers (a pickled module needs code to "
             "load: save model.state_dict() instead)",
    ).load()


def _unwrap(
    loaded: Any, architecture: Sequence[str] | None, input_scale: float | None, budget: Budget
) -> tuple[list[str], float | None, dict[str, Any], dict[str, Any]]:
    """The architecture, input scale and state_dict, from the bundle or the arguments, and
    what the bundle records beside them (keywords of `network_from_state_dict`)."""
    state = loaded
    recorded: dict[str, Any] = {}
    if type(loaded) is dict and loaded.get("format") == _BUNDLE_FORMAT:
        if architecture is not None or input_scale is not None:
            raise WeightsError(
                "this file records its architecture and input scale; do not pass them"
            )
        version = loaded.get("version")
        if type(version) is not int or version != _BUNDLE_VERSION:
            raise WeightsError(
                f"{_BUNDLE_FORMAT} version {repr(version)[:20]}; this mlpinfer reads version "
                f"{_BUNDLE_VERSION}"
            )
        architecture = loaded.get("architecture")
        input_scale = checked_scale(loaded.get("input_scale"), "the bundle's 'input_scale'",
                                    budget)
        state = loaded.get("state_dict")
        if type(architecture) is not list or not all(type(k) is str for k in architecture):
            raise WeightsError("the bundle's 'architecture' must be a list of layer names")
        if "pixel_scale" in loaded:  # bundles written before pixel_scale existed do not say
            recorded["pixel_scale"] = checked_scale(
                loaded["pixel_scale"], "the bundle's 'pixel_scale'", budget)
        recorded["classes"] = checked_classes(loaded.get("classes"), "the bundle's 'classes'",
                                              budget)
    if type(state) is not dict:
        raise WeightsError(
            f"expected a state_dict (a dict of tensors), found a {type(state).__name__}"
        )
    if architecture is None:
        raise WeightsError(
            "a bare state_dict does not say which activations follow its Linear layers: read "
            "it with mlpinfer.load(path, architecture=[...]) or "
            "`mlpinfer convert --architecture ...` (names from "
            f"{', '.join(ARCHITECTURE_LAYERS)}); its keys are {sorted(state)[:20]}"
        )
    return list(architecture), input_scale, state, recorded


def _byte_order(archive: zipfile.ZipFile, prefix: str, budget: Budget) -> str:
    member = f"{prefix}byteorder"
    if member not in archive.namelist():
        return "<"  # files before torch 1.10 are little-endian
    if archive.getinfo(member).file_size > 16:
        raise WeightsError(f"{member} declares {archive.getinfo(member).file_size} bytes")
    order = read_member(archive, member, budget)
    if order not in (b"little", b"big"):
        raise WeightsError(f"{member} says {order[:16]!r}; expected 'little' or 'big'")
    return "<" if order == b"little" else ">"


def _array(archive: zipfile.ZipFile, prefix: str, order: str, tensor: _Tensor,
           storages: dict[str, np.ndarray], budget: Budget) -> np.ndarray:
    storage = tensor.storage
    if storage.key not in storages:
        dtype = np.dtype(_STORAGES[storage.kind]).newbyteorder(order)
        member = f"{prefix}data/{storage.key}"
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise WeightsError(f"storage {storage.key[:40]!r}: no member {member[:80]!r}") from None
        if info.file_size != storage.numel * dtype.itemsize:
            raise WeightsError(
                f"storage {storage.key[:40]!r}: {storage.numel} elements of {storage.kind} "
                f"need {storage.numel * dtype.itemsize} bytes, {member[:80]!r} holds "
                f"{info.file_size}"
            )
        storages[storage.key] = np.frombuffer(read_member(archive, member, budget), dtype=dtype)
    elements = storages[storage.key]
    itemsize = elements.itemsize
    view = np.lib.stride_tricks.as_strided(
        elements[tensor.offset:], shape=tensor.shape,
        strides=tuple(s * itemsize for s in tensor.stride), writeable=False,
    )
    values = np.array(view)
    if storage.kind == "BFloat16Storage":  # the top half of a float32
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values


def network_from_state_dict(
    state: Mapping[str, np.ndarray],
    architecture: Sequence[str],
    input_scale: float | None,
    *,
    pixel_scale: float | str | None = "auto",
    classes: list[Any] | None = None,
) -> Network:
    """A network from a state_dict of arrays and the ``nn.Sequential`` layer names it came
    from; ``Linear`` number ``i`` has keys ``"{i}.weight"`` and, optionally, ``"{i}.bias"``.
    ``pixel_scale`` and ``classes`` are what the file records (see `Chain.network`)."""
    chain = Chain()
    if input_scale is not None:
        chain.scale(float(input_scale), 0.0, "input_scale")
    used: set[str] = set()
    for index, kind in enumerate(architecture):
        where = f"entry {index} ({str(kind)[:40]})"
        if kind == "Linear":
            weight_key, bias_key = f"{index}.weight", f"{index}.bias"
            if weight_key not in state:
                raise WeightsError(f"{where}: the state_dict has no {weight_key!r}")
            used.update(k for k in (weight_key, bias_key) if k in state)
            weight = _float_array(state[weight_key], weight_key)
            bias = _float_array(state[bias_key], bias_key) if bias_key in state else None
            chain.dense(weight.T, bias, where)
        elif kind in ACTIVATIONS:
            chain.activate(ACTIVATIONS[kind], where)
        elif kind not in ("Flatten", "Dropout"):
            raise UnsupportedModelError(
                f"unsupported layer {str(kind)[:40]!r} at {where}; expected one of "
                f"{', '.join(ARCHITECTURE_LAYERS)}"
            )
    unused = sorted(set(state) - used)
    if unused:
        raise UnsupportedModelError(
            f"the state_dict has entries no Linear of the architecture uses: {unused[:20]}"
        )
    return chain.network(pixel_scale=pixel_scale, classes=classes)


def _float_array(value: np.ndarray, key: str) -> np.ndarray:
    if value.dtype.kind != "f":
        raise WeightsError(f"{key!r} must be a float tensor, found {value.dtype}")
    return value


def _architecture(network: Network) -> list[str]:
    names = {name: kind for kind, name in ACTIVATIONS.items()}
    architecture = []
    for layer in network.layers:
        architecture.append("Linear")
        if layer.activation != "identity":
            architecture.append(names[layer.activation])
    return architecture


def write_torch(network: Network, path: str | os.PathLike[str]) -> None:
    """Write a file `read_torch` reads back alone: ``{"format", "version",
    "architecture", "input_scale", "pixel_scale", "classes", "state_dict"}``, all plain
    types and tensors.

    ``state_dict`` fits ``nn.Sequential`` built from ``architecture``; feed that module
    inputs multiplied by ``input_scale`` when it is not ``None``, and uint8 pixels
    multiplied by ``pixel_scale`` (``None``: not known). ``classes`` are the labels of the
    outputs, or ``None``. Needs torch.
    """
    torch = require("torch", "torch")
    architecture = _architecture(network)
    positions = [index for index, kind in enumerate(architecture) if kind == "Linear"]
    state = {}
    for index, layer in zip(positions, network.layers, strict=True):
        state[f"{index}.weight"] = torch.from_numpy(np.ascontiguousarray(layer.weights.T))
        state[f"{index}.bias"] = torch.from_numpy(np.array(layer.bias))
    bundle = {"format": _BUNDLE_FORMAT, "version": _BUNDLE_VERSION,
              "architecture": architecture, "input_scale": network.input_scale,
              "pixel_scale": network.pixel_scale,
              "classes": None if network.classes is None else network.classes.tolist(),
              "state_dict": state}
    write_atomically(path, lambda stream: torch.save(bundle, stream))



def _recognise(probe: Probe) -> bool:
    return probe.zip_names is not None and any(
        name.endswith("/data.pkl") and name.count("/") == 1 for name in probe.zip_names)


FORMAT = Format(
    name="torch",
    description="PyTorch state_dict with its architecture (save_torch)",
    recognise=_recognise,
    read=read_torch,
    write=write_torch,
    suffixes=(".pt", ".pth"),
    options=frozenset({"architecture", "input_scale"}),
)

# torch.save before PyTorch 1.6 (or with _use_new_zipfile_serialization=False) writes
# pickles one after the other, the first holding this magic number (LONG1, 10 bytes).
_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"

LEGACY_FORMAT = Format(
    name="torch-legacy",
    description="PyTorch file in the legacy format",
    recognise=lambda probe: probe.head[:1] == b"\x80" and probe.head[2:14] == _LEGACY_MAGIC,
    read=None,
    refusal="a PyTorch file in the legacy format (torch.save before PyTorch 1.6, or with "
            "_use_new_zipfile_serialization=False), which mlpinfer does not read: save it "
            "again with torch.save's default (zip) format",
)
