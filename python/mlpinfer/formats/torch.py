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
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _activations
from .._activations import Activation
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
    "MODULE_OPTIONS",
    "SUPPORTED",
    "add_module",
    "entry_text",
    "module_for",
    "network_from_state_dict",
    "parse_entry",
    "read_torch",
    "torch_modules",
    "write_torch",
]

# Activation modules -> ours, with their default options (`_activation` reads the options).
ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
               "LogSoftmax": "log_softmax", "LeakyReLU": "leaky_relu", "ELU": "elu",
               "SELU": "selu", "GELU": "gelu", "SiLU": "silu", "Softplus": "softplus",
               "Hardsigmoid": "hard_sigmoid", "Identity": "identity"}
#: Each module kind -> its options as PyTorch's constructor names them, with PyTorch's
#: defaults: what an architecture entry may say (``"LeakyReLU(negative_slope=0.1)"``) and
#: what is read from a live module's attributes. An option that changes nothing at
#: inference (inplace, Dropout's p, BatchNorm's momentum) is not listed and not read.
MODULE_OPTIONS: dict[str, dict[str, Any]] = {
    "Linear": {},
    "BatchNorm1d": {"eps": 1e-5},
    "LayerNorm": {"eps": 1e-5},
    **{kind: {} for kind in ACTIVATIONS},
    "Softmax": {"dim": None},  # None: torch's legacy implicit choice, dim 1 for 2-D input
    "LogSoftmax": {"dim": None},
    "LeakyReLU": {"negative_slope": 0.01},
    "ELU": {"alpha": 1.0},
    "GELU": {"approximate": "none"},
    "Softplus": {"beta": 1.0, "threshold": 20.0},
    "Flatten": {"start_dim": 1, "end_dim": -1},
    "Dropout": {},
}
# Layer names of an architecture description: nn.Sequential entries, in order.
ARCHITECTURE_LAYERS = tuple(MODULE_OPTIONS)
_LAYER_CONCEPTS = {"Linear": "dense", "BatchNorm1d": "batch_norm", "LayerNorm": "layer_norm",
                   "Flatten": "no_op", "Dropout": "no_op"}
# Options beyond the defaults that the supported-layers table shows.
_TABLE_OPTIONS = {"GELU": ({"approximate": "none"}, {"approximate": "tanh"}),
                  "Softplus": ({"beta": 1},)}
# Softplus(x) is x where beta * x > threshold: log(1 + e^20) - 20 = 2e-9 at the default
# 20, within every bound; a lower threshold would be a visible kink.
_MIN_SOFTPLUS_THRESHOLD = 20.0
# Entries of an architecture: "Name" or "Name(key=value, ...)", values plain literals.
_ENTRY = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)\s*(?:\((.*)\))?\s*\Z", re.DOTALL)
_ENTRY_OPTION = re.compile(r"\s*([a-z_]+)\s*=\s*(\S+?)\s*\Z")
_MAX_ENTRY = 200  # "Softplus(beta=1.0, threshold=20.0)" is 34 characters
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z")

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
            # BatchNorm1d's counter of batches seen: an integer, read and not used.
            counter = key.endswith(".num_batches_tracked") and isinstance(value, _Tensor)
            if not counter and (not isinstance(value, _Tensor)
                                or value.storage.kind not in _FLOAT_STORAGES):
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
    """A network from a state_dict of arrays and the ``nn.Sequential`` entries it came
    from (`ARCHITECTURE_LAYERS`, with options as in ``"LeakyReLU(negative_slope=0.1)"``;
    an option not given has PyTorch's default). Entry number ``i`` has its tensors under
    ``"{i}.weight"``, ``"{i}.bias"``, ... ``pixel_scale`` and ``classes`` are what the
    file records (see `Chain.network`)."""
    chain = Chain()
    if input_scale is not None:
        chain.scale(float(input_scale), 0.0, "input_scale")
    used: set[str] = set()
    for index, entry in enumerate(architecture):
        kind, options = parse_entry(entry, f"entry {index}")
        prefix = f"{index}."
        tensors = {key[len(prefix):]: value for key, value in state.items()
                   if key.startswith(prefix) and "." not in key[len(prefix):]}
        used.update(prefix + name for name in tensors)
        add_module(chain, kind, options, tensors, f"entry {index} ({str(entry)[:60]})")
    unused = sorted(set(state) - used)
    if unused:
        raise UnsupportedModelError(
            f"the state_dict has entries no module of the architecture uses: {unused[:20]}"
        )
    return chain.network(pixel_scale=pixel_scale, classes=classes)


def parse_entry(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    """An architecture entry -> its module kind and options (PyTorch's defaults filled in)."""
    match = _ENTRY.match(entry) if isinstance(entry, str) and len(entry) <= _MAX_ENTRY else None
    if match is None or match.group(1) not in MODULE_OPTIONS:
        raise UnsupportedModelError(
            f"unsupported layer {str(entry)[:60]!r} at {where}; expected one of "
            f"{', '.join(ARCHITECTURE_LAYERS)}, with options as in 'LeakyReLU(negative_slope=0.1)'"
        )
    kind, text = match.groups()
    options = dict(MODULE_OPTIONS[kind])
    given = [] if text is None or not text.strip() else text.split(",")
    given_keys: set[str] = set()
    for argument in given:
        parts = _ENTRY_OPTION.match(argument)
        if parts is None or parts.group(1) not in options:
            known = ", ".join(options) or "none"
            raise UnsupportedModelError(
                f"{where} ({entry[:60]!r}): expected key=value of its options ({known}), got "
                f"{argument.strip()[:40]!r}"
            )
        if parts.group(1) in given_keys:
            raise UnsupportedModelError(f"{where} ({entry[:60]!r}): {parts.group(1)} given twice")
        given_keys.add(parts.group(1))
        options[parts.group(1)] = _literal(parts.group(2), f"{where} ({entry[:60]!r})")
    return kind, options


def _literal(text: str, where: str) -> Any:
    """A plain value of an entry: a number, a quoted word, None, True or False."""
    if _NUMBER.match(text):
        return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" and text[1:-1].isidentifier():
        return text[1:-1]
    constants = {"None": None, "True": True, "False": False}
    if text in constants:
        return constants[text]
    raise UnsupportedModelError(f"{where}: option value {text[:40]!r}; expected a number, "
                                "a quoted word, None, True or False")


def add_module(chain: Chain, kind: str, options: Mapping[str, Any],
               tensors: Mapping[str, np.ndarray], where: str) -> None:
    """One ``nn.Sequential`` entry of ``kind`` (a key of `ARCHITECTURE_LAYERS`) with its
    ``options`` and its parameters and buffers (``tensors``: "weight", "bias",
    "running_mean", ...), as the file reader and the live importer both see it."""
    expected = {"Linear": {"weight", "bias"},
                "BatchNorm1d": {"weight", "bias", "running_mean", "running_var",
                                "num_batches_tracked"},
                "LayerNorm": {"weight", "bias"}}.get(kind, set())
    unknown = sorted(set(tensors) - expected)
    if unknown:
        raise UnsupportedModelError(f"{where}: a {kind} has no tensor {unknown[0]!r}")
    arrays = {name: _float_array(value, f"{where} {name}") for name, value in tensors.items()
              if name != "num_batches_tracked"}
    if kind == "Linear":
        if "weight" not in arrays:
            raise WeightsError(f"{where}: no weight")
        chain.dense(arrays["weight"].T, arrays.get("bias"), where)
    elif kind == "BatchNorm1d":
        if "running_mean" not in arrays or "running_var" not in arrays:
            raise UnsupportedModelError(
                f"{where}: no running statistics (track_running_stats=False): such a "
                "BatchNorm1d normalises every batch by its own statistics, which a network "
                "computing each row alone cannot do"
            )
        chain.batch_norm(arrays["running_mean"], arrays["running_var"], arrays.get("weight"),
                         arrays.get("bias"), _number(options["eps"], where), where)
    elif kind == "LayerNorm":
        chain.layer_norm(arrays.get("weight"), arrays.get("bias"), _number(options["eps"], where),
                         where)
    elif kind == "Flatten":
        if options["start_dim"] != 1 or options["end_dim"] != -1:
            raise UnsupportedModelError(
                f"{where}: start_dim={options['start_dim']}, end_dim={options['end_dim']}; "
                "only Flatten(1, -1) (keep the batch dimension) is supported"
            )
        chain.skip(kind, where)
    elif kind == "Dropout":
        chain.skip(kind, where)  # the identity at inference, whatever the training flag
    else:
        chain.activate(_activation(kind, options, where), where)


def _activation(kind: str, options: Mapping[str, Any], where: str) -> str:
    """Our activation for PyTorch's activation module ``kind`` with ``options``."""
    name = ACTIVATIONS[kind]
    if kind in ("Softmax", "LogSoftmax") and options["dim"] not in (None, 1, -1):
        raise UnsupportedModelError(f"{where}: dim={options['dim']}; only the last is supported")
    if kind == "LeakyReLU":
        return str(Activation(name, (_number(options["negative_slope"], where),)))
    if kind == "ELU":
        return str(Activation(name, (_number(options["alpha"], where),)))
    if kind == "Hardsigmoid":  # relu6(x + 3) / 6
        return str(Activation(name, (1 / 6, 0.5)))
    if kind == "GELU":
        forms = {"none": "gelu", "tanh": "gelu_tanh"}
        if options["approximate"] not in forms:
            raise UnsupportedModelError(
                f"{where}: approximate={options['approximate']!r}; expected 'none' or 'tanh'")
        return forms[options["approximate"]]
    if kind == "Softplus":
        if _number(options["beta"], where) != 1.0:
            raise UnsupportedModelError(
                f"{where}: beta={options['beta']!r}; only Softplus with beta=1 is supported")
        if _number(options["threshold"], where) < _MIN_SOFTPLUS_THRESHOLD:
            raise UnsupportedModelError(
                f"{where}: threshold={options['threshold']!r}; Softplus is computed exactly, "
                f"which PyTorch's threshold {_MIN_SOFTPLUS_THRESHOLD:g} or more agrees with")
    return name


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UnsupportedModelError(f"{where}: option value {str(value)[:40]!r}; expected a number")
    return float(value)


def _float_array(value: np.ndarray, key: str) -> np.ndarray:
    if value.dtype.kind != "f":
        raise WeightsError(f"{key!r} must be a float tensor, found {value.dtype}")
    return value


def _supported() -> dict[str, str]:
    """Concept -> how PyTorch spells it, from the tables the reader dispatches on."""
    table: dict[str, list[str]] = {}
    for kind in ARCHITECTURE_LAYERS:
        for options in _TABLE_OPTIONS.get(kind, ({},)):
            key = _LAYER_CONCEPTS.get(kind) or _activations.parse(
                _activation(kind, {**MODULE_OPTIONS[kind], **options}, kind)).name
            shown = ", ".join(f"{name}={value!r}" for name, value in options.items())
            table.setdefault(key, []).append(f"{kind}({shown})" if shown else kind)
    return {key: ", ".join(spellings) for key, spellings in table.items()}


#: Concept (README supported-layers table) -> how PyTorch spells it.
SUPPORTED = _supported()


def module_for(activation: str) -> tuple[str, dict[str, Any]]:
    """The PyTorch activation module (kind, options) computing ``activation``;
    `WeightsError` when PyTorch has none."""
    parsed = _activations.parse(activation)
    name, params = parsed.name, parsed.params
    if name == "hard_sigmoid" and params != (1 / 6, 0.5):
        raise WeightsError(f"{activation} has no PyTorch module (Hardsigmoid has slope 1/6 "
                           "and offset 0.5)")
    kinds = {ours: kind for kind, ours in ACTIVATIONS.items()} | {"gelu_tanh": "GELU"}
    options = {"softmax": {"dim": -1}, "log_softmax": {"dim": -1},
               "gelu_tanh": {"approximate": "tanh"},
               "leaky_relu": {"negative_slope": params[0] if params else None},
               "elu": {"alpha": params[0] if params else None}}.get(name, {})
    return kinds[name], options


def entry_text(kind: str, options: Mapping[str, Any]) -> str:
    """An architecture entry: ``"ELU(alpha=0.5)"``."""
    shown = ", ".join(f"{key}={value!r}" for key, value in options.items())
    return f"{kind}({shown})" if shown else kind


def torch_modules(network: Network) -> list[tuple[str, dict[str, Any], dict[str, np.ndarray]]]:
    """The ``nn.Sequential`` entries computing ``network`` on float input already
    multiplied by its input scale: (kind, options, tensors by name), as `add_module` reads
    them. `WeightsError` for an activation PyTorch has no module for."""
    if network.input_transform is not None:
        raise WeightsError(
            "PyTorch's nn.Sequential as mlpinfer writes it has no input transform (a shift "
            f"and a multiplier per feature before the first Linear); this network is "
            f"{network!r}: write .npz, .onnx or .keras")
    modules: list[tuple[str, dict[str, Any], dict[str, np.ndarray]]] = []
    for layer in network.layers:
        modules.append(("Linear", {}, {"weight": np.ascontiguousarray(layer.weights.T),
                                       "bias": np.array(layer.bias)}))
        steps = [] if layer.activation == "identity" else [(*module_for(layer.activation), {})]
        if layer.norm is not None:
            norm = ("LayerNorm", {"eps": layer.norm.epsilon},
                    {"weight": np.array(layer.norm.gamma), "bias": np.array(layer.norm.beta)})
            steps.insert(len(steps) if layer.norm_after_activation else 0, norm)
        modules += steps
    return modules


def write_torch(network: Network, path: str | os.PathLike[str]) -> None:
    """Write a file `read_torch` reads back alone: ``{"format", "version",
    "architecture", "input_scale", "pixel_scale", "classes", "state_dict"}``, all plain
    types and tensors.

    ``state_dict`` fits ``nn.Sequential`` built from ``architecture`` (entries such as
    ``"Linear"``, ``"LeakyReLU(negative_slope=0.2)"``, ``"LayerNorm(eps=1e-05)"``: the
    module and its constructor's keyword arguments); feed that module inputs multiplied
    by ``input_scale`` when it is not ``None``, and uint8 pixels multiplied by
    ``pixel_scale`` (``None``: not known). ``classes`` are the labels of the outputs, or
    ``None``. Needs torch.
    """
    torch = require("torch", "torch")
    architecture, state = [], {}
    for index, (kind, options, tensors) in enumerate(torch_modules(network)):
        architecture.append(entry_text(kind, options))
        for name, array in tensors.items():
            state[f"{index}.{name}"] = torch.from_numpy(array)
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
