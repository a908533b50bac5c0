"""Keras 3 ``.keras`` files, read as data: no Keras import, nothing written anywhere.

A ``.keras`` file is a zip of ``config.json`` (the model's layers, as JSON) and
``model.weights.h5`` (their variables, as HDF5). The config is read as JSON and only
known layer classes, activation names and Keras's own modules are accepted: a module or
function it names (a custom object, a ``Lambda``) is refused, never resolved. The config
fixes every weight's shape, so the bytes a load needs are counted against the budget
before the HDF5 member is even inflated. Each dataset is then checked before it is read:
reached through hard links only, stored in the file (no external storage, no virtual
dataset, no filter but deflate and shuffle), of the shape the config declares, and holding
its bytes rather than a fill value. What a filter inflates is bounded by the shape, which
the budget has counted; chunks are bounded so that a chunk buffer cannot be larger.

Writing (`write_keras`) needs Keras itself; `to_keras` builds the model it saves.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import WeightsError
from .._network import Network
from ._budget import Budget, open_zip, read_member
from ._chain import Chain, UnsupportedModelError, require
from ._registry import Format, Request

__all__ = ["ACTIVATIONS", "FORMAT", "keras_module", "read_keras", "to_keras", "write_keras"]

# Keras's activation names -> ours.
ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
               "linear": "identity"}
_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
# Real configs are kilobytes (3.5 KB for a 784-512-10 MLP); this caps what is inflated
# and parsed before anything is checked.
_MAX_CONFIG_BYTES = 16 << 20
# Dtype policies we compute in: the engine's float32, or float64 variables.
_POLICIES = ("float32", "float64")
# Options of each layer class; any other is refused as an option we would be ignoring.
_COMMON_OPTIONS = {"name", "trainable", "dtype"}
_OPTIONS = {
    "InputLayer": {"batch_shape", "batch_input_shape", "input_shape", "batch_size", "sparse",
                   "ragged", "optional", "name", "dtype"},
    "Dense": _COMMON_OPTIONS | {"units", "activation", "use_bias", "kernel_initializer",
                                "bias_initializer", "kernel_regularizer", "bias_regularizer",
                                "activity_regularizer", "kernel_constraint", "bias_constraint",
                                "quantization_config", "lora_rank", "lora_alpha"},
    "Activation": _COMMON_OPTIONS | {"activation"},
    "Flatten": _COMMON_OPTIONS | {"data_format"},
    "Dropout": _COMMON_OPTIONS | {"rate", "seed", "noise_shape"},
    "Rescaling": _COMMON_OPTIONS | {"scale", "offset"},
}
_MODELS = ("Sequential", "Functional", "Model")
# Objects the config may name (initializers, dtype policies) must be Keras's own.
_KERAS_MODULE = re.compile(r"keras(\.[a-z_]+)*\Z")
# Of the HDF5 filters, only these two are built into every libhdf5: any other id makes
# HDF5 look for a plugin library to load.
_FILTERS = {1: "deflate", 2: "shuffle"}


def keras_module() -> Any:
    """Keras, for writing and for live models (reading does not need it)."""
    try:
        import keras
    except ImportError as error:
        raise ImportError(
            "this needs Keras 3 and a backend: pip install keras and, without TensorFlow, "
            f"set KERAS_BACKEND=torch before the first import (error: {error})"
        ) from error
    return keras


@dataclass(frozen=True)
class _Dense:
    """A ``Dense`` layer from the config: where its variables are and their shapes."""

    path: str
    inputs: int
    units: int
    use_bias: bool
    where: str


class _Plan:
    """What the config asks for, in order, with every weight shape known before reading."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any, str]] = []

    def dense_layers(self) -> Iterator[_Dense]:
        return (value for kind, value, _ in self.steps if kind == "dense")


def read_keras(request: Request) -> Network:
    """A network from a ``.keras`` file (any name).

    Allowed layers: ``InputLayer``, ``Dense`` (relu, sigmoid, tanh, softmax or linear;
    ``use_bias=False`` means zero bias), ``Activation`` of those, ``Flatten``,
    ``Dropout`` (the identity at inference) and ``Rescaling`` by scalars before the
    first ``Dense``, which becomes ``input_scale``; nested Sequential and functional
    chains. Anything else is refused, naming the layer.
    """
    budget = request.budget
    with request.open() as stream, open_zip(stream, budget, what="a .keras zip") as archive:
        # FORMAT recognises a .keras zip by these two members.
        plan = _plan(_member_json(archive, budget))
        for dense in plan.dense_layers():
            budget.charge(_dense_bytes(dense), dense.where)
        # open_zip charged the member's declared size, which bounds what this inflates.
        weights = read_member(archive, _WEIGHTS, budget)
    return _build(plan, weights)


def _dense_bytes(dense: _Dense) -> int:
    """The float64 copies of a Dense layer's kernel and bias that the chain holds."""
    return 8 * (dense.inputs + 1) * dense.units


def _refuse_constant(text: str) -> None:
    raise WeightsError(f"{_CONFIG} holds {text}: a config has finite numbers only")


def _member_json(archive: zipfile.ZipFile, budget: Budget) -> Any:
    size = archive.getinfo(_CONFIG).file_size
    if size > _MAX_CONFIG_BYTES:
        raise budget.fail(f"expected a {_CONFIG} of at most {_MAX_CONFIG_BYTES} bytes, found "
                          f"one declaring {size}")
    text = read_member(archive, _CONFIG, budget)
    try:
        return json.loads(text.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        if isinstance(error, WeightsError):
            raise
        raise WeightsError(f"{_CONFIG} is not JSON ({str(error)[:200]})") from None


# ---------------------------------------------------------------------- the config


def _field(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise WeightsError(f"{where}: expected {key!r} in the config, found none")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        raise WeightsError(
            f"{where}: expected {key!r} to be {_kind_name(kind)}, found {type(value).__name__}"
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"dict": "an object", "list": "a list", "str": "a string",
                        "int": "an integer", "bool": "true/false", "float": "a number",
                        "NoneType": "null"}.get(k.__name__, k.__name__) for k in kinds)


def _refuse_foreign_objects(value: Any, where: str) -> None:
    """Every object the config names must be Keras's own and registered by Keras: a
    custom object or function would need code from elsewhere, which we never resolve."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "class_name" in item and item.get("class_name") != "__keras_tensor__":
                module = item.get("module")
                registered = item.get("registered_name")
                class_name = item.get("class_name")
                if (not isinstance(module, str) or not _KERAS_MODULE.match(module)
                        or registered not in (None, class_name)):
                    raise UnsupportedModelError(
                        f"{where}: the config names {str(class_name)[:60]!r} from module "
                        f"{str(module)[:60]!r} (registered as {str(registered)[:60]!r}); only "
                        "Keras's own objects are read, custom code is never loaded"
                    )
            stack.extend(item.values())


def _plan(config: Any) -> _Plan:
    _refuse_foreign_objects(config, "the model")
    plan = _Plan()
    kind = _field(config, "class_name", str, "the model")
    if kind not in _MODELS:
        raise UnsupportedModelError(
            f"the model is a {kind[:60]!r}; expected a Sequential or functional model"
        )
    _model(config, "layers", None, plan, "the model")
    if not any(True for _ in plan.dense_layers()):
        raise UnsupportedModelError("the model has no Dense layer")
    return plan


def _model(config: dict[str, Any], prefix: str, shape: list[int] | None, plan: _Plan,
           where: str) -> list[int]:
    """Adds the steps of a Sequential or functional model; returns its output shape."""
    body = _field(config, "config", dict, where)
    layers = _field(body, "layers", list, where)
    functional = config["class_name"] != "Sequential"
    if functional:
        _check_functional_chain(body, layers, where)
    counters: dict[str, int] = {}
    for index, layer in enumerate(layers):
        kind = _field(layer, "class_name", str, f"{where}, layer {index}")
        options = _field(layer, "config", dict, f"{where}, layer {index}")
        name = options.get("name", f"#{index}")
        label = f"layer {str(name)[:60]!r} ({kind[:60]})"
        # Keras stores a layer's variables under the snake_case of its class name,
        # numbered per class in the model's order ("dense", "dense_1", ...).
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()
        count = counters.get(snake, 0)
        counters[snake] = count + 1
        h5_path = f"{prefix}/{snake}" + (f"_{count}" if count else "")
        if kind in _MODELS:
            shape = _model(layer, f"{h5_path}/layers", shape, plan, label)
            continue
        if kind not in _OPTIONS:
            raise UnsupportedModelError(f"unsupported layer {kind[:60]} at {label}")
        unknown = sorted(set(options) - _OPTIONS[kind])
        if unknown:
            raise UnsupportedModelError(
                f"{label}: unsupported option {unknown[0][:60]!r} (an option mlpinfer would "
                "be ignoring)"
            )
        if kind == "InputLayer":
            shape = _input_shape(options, shape, index, label)
            continue
        _check_policy(options, label)
        if shape is None:
            shape = _build_shape(layer, label)
        shape = _layer(kind, options, shape, h5_path, plan, label)
    if shape is None:
        raise UnsupportedModelError(f"{where}: no input shape; cannot check weight shapes")
    return shape


def _check_functional_chain(body: dict[str, Any], layers: list[Any], where: str) -> None:
    """A functional model must be a chain: each layer called once, on the previous one."""
    names = []
    for index, layer in enumerate(layers):
        label = f"{where}, layer {index}"
        names.append(_field(layer, "name", str, label))
        nodes = _field(layer, "inbound_nodes", list, label)
        if index == 0:
            if nodes:
                raise UnsupportedModelError(f"{label}: the first layer has inputs")
            continue
        previous = names[index - 1]
        ok = len(nodes) == 1 and isinstance(nodes[0], dict)
        args = nodes[0].get("args") if ok else None
        kwargs = nodes[0].get("kwargs", {}) if ok else None
        ok = ok and isinstance(args, list) and len(args) == 1 and isinstance(kwargs, dict)
        history = args[0].get("config", {}).get("keras_history") if (
            ok and isinstance(args[0], dict) and isinstance(args[0].get("config"), dict)) else None
        if not (ok and history == [previous, 0, 0]
                and all(v is None or k == "training" for k, v in kwargs.items())):
            raise UnsupportedModelError(
                f"layer {names[-1][:60]!r} does not take the previous layer's output "
                f"({previous[:60]!r}) alone: only chains are supported"
            )
    for key, end in (("input_layers", 0), ("output_layers", -1)):
        ends = body.get(key)
        if isinstance(ends, list) and len(ends) == 1 and isinstance(ends[0], list):
            ends = ends[0]
        if not layers or ends != [names[end], 0, 0]:
            raise UnsupportedModelError(
                f"{where}: {key} is {str(ends)[:80]}; expected the chain's "
                f"{'first' if end == 0 else 'last'} layer only"
            )


def _dims(value: Any, label: str) -> list[int]:
    if (not isinstance(value, list) or not value or value[0] is not None
            or not all(type(d) is int and d > 0 for d in value[1:])):
        raise UnsupportedModelError(
            f"{label}: input shape {str(value)[:80]}; expected (None, positive sizes...) "
            "so that every weight shape is known before reading"
        )
    return value[1:]


def _input_shape(options: dict[str, Any], shape: list[int] | None, index: int,
                 label: str) -> list[int]:
    if index != 0:
        raise UnsupportedModelError(f"{label}: an InputLayer inside the chain")
    declared = options.get("batch_shape", options.get("batch_input_shape"))
    if declared is None and isinstance(options.get("input_shape"), list):
        declared = [None, *options["input_shape"]]
    if options.get("sparse") or options.get("ragged"):
        raise UnsupportedModelError(f"{label}: sparse or ragged input")
    dims = _dims(declared, label)
    if shape is not None and dims != shape:
        raise UnsupportedModelError(f"{label}: expects {dims}, is given {shape}")
    return dims


def _build_shape(layer: dict[str, Any], label: str) -> list[int]:
    build = layer.get("build_config")
    return _dims(build.get("input_shape") if isinstance(build, dict) else None, label)


def _check_policy(options: dict[str, Any], label: str) -> None:
    policy = options.get("dtype", "float32")
    if isinstance(policy, dict):
        if policy.get("class_name") != "DTypePolicy":
            raise UnsupportedModelError(
                f"{label}: dtype policy {str(policy.get('class_name'))[:60]}; expected "
                "DTypePolicy (quantized layers are not supported)"
            )
        policy = policy.get("config", {}).get("name") if isinstance(
            policy.get("config"), dict) else None
    if policy not in _POLICIES:
        raise UnsupportedModelError(
            f"{label}: dtype policy {str(policy)[:60]!r}; expected float32 or float64"
        )


def _activation(options: dict[str, Any], label: str) -> str:
    name = options.get("activation", "linear")
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise UnsupportedModelError(f"{label}: unsupported activation {str(name)[:60]!r}")
    return ACTIVATIONS[name]


def _layer(kind: str, options: dict[str, Any], shape: list[int], h5_path: str, plan: _Plan,
           label: str) -> list[int]:
    """Adds one layer's steps; returns its output shape."""
    if kind == "Dense":
        units = _field(options, "units", int, label)
        use_bias = _field(options, "use_bias", bool, label) if "use_bias" in options else True
        if options.get("quantization_config") is not None or options.get("lora_rank"):
            raise UnsupportedModelError(f"{label}: quantized or LoRA weights")
        if len(shape) != 1:
            raise UnsupportedModelError(
                f"{label}: input of shape (None, {', '.join(map(str, shape))}); Dense is "
                "supported on (batch, features) only (add a Flatten)"
            )
        if units <= 0:
            raise WeightsError(f"{label}: {units} units")
        plan.steps.append(("dense", _Dense(h5_path, shape[0], units, use_bias, label), label))
        plan.steps.append(("activate", _activation(options, label), label))
        return [units]
    if kind == "Activation":
        plan.steps.append(("activate", _activation(options, label), label))
    elif kind == "Flatten":
        if options.get("data_format", "channels_last") != "channels_last" and len(shape) > 1:
            raise UnsupportedModelError(
                f"{label}: data_format={str(options.get('data_format'))[:40]!r} reorders the "
                "features"
            )
        return [math.prod(shape)]
    elif kind == "Rescaling":
        factor = _scalar(options.get("scale", 1.0), label)
        offset = _scalar(options.get("offset", 0.0), label)
        if any(step[0] == "dense" for step in plan.steps):
            raise UnsupportedModelError(f"{label}: Rescaling after a Dense layer")
        plan.steps.append(("scale", (factor, offset), label))
    return shape


def _scalar(value: Any, label: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        raise UnsupportedModelError(f"{label}: per-channel scale or offset")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WeightsError(f"{label}: scale/offset {str(value)[:40]}; expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise WeightsError(f"{label}: scale/offset {number}")
    return number


# ---------------------------------------------------------------------- the weights


def _build(plan: _Plan, weights: bytes) -> Network:
    h5py = require("h5py", "keras")
    chain = Chain()
    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except Exception as error:  # noqa: BLE001 - h5py raises OSError and others
        raise WeightsError(
            f"{_WEIGHTS} is not a readable HDF5 file (h5py: {str(error)[:200]})"
        ) from None
    with h5:
        for kind, value, label in plan.steps:
            if kind == "dense":
                kernel = _variable(h5py, h5, value, 0, (value.inputs, value.units))
                bias = (_variable(h5py, h5, value, 1, (value.units,)) if value.use_bias
                        else None)
                chain.dense(kernel, bias, label)
            elif kind == "activate":
                chain.activate(value, label)
            else:
                chain.scale(*value, label)
    return chain.network()


def _variable(h5py: Any, h5: Any, dense: _Dense, index: int,
              shape: tuple[int, ...]) -> np.ndarray:
    path = f"{dense.path}/vars/{index}"
    what = f"{dense.where}: {_WEIGHTS} dataset {path!r}"
    try:
        dataset = _dataset(h5py, h5, path, what)
        _check_dataset(h5py, dataset, shape, what)
        return dataset[()]
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - libhdf5 reports corruption as several types
        raise WeightsError(
            f"{what} cannot be read (h5py: {str(error)[:200]})"
        ) from None


def _dataset(h5py: Any, h5: Any, path: str, what: str) -> Any:
    """The dataset at ``path``, reached through hard links only (a soft link could loop,
    an external link would open another file)."""
    node = h5
    for part in path.split("/"):
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            raise WeightsError(f"{what}: expected in the file, not found")
        if not isinstance(link, h5py.HardLink):
            raise WeightsError(f"{what}: reached through a {type(link).__name__}; "
                               "only hard links are followed")
        node = node[part]
    if not isinstance(node, h5py.Dataset):
        raise WeightsError(f"{what}: expected a dataset, found a {type(node).__name__}")
    return node


def _check_dataset(h5py: Any, dataset: Any, shape: tuple[int, ...], what: str) -> None:
    if dataset.shape != shape:
        raise WeightsError(f"{what}: expected shape {shape} from the config, found "
                           f"{dataset.shape}")
    dtype = dataset.dtype
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise WeightsError(f"{what}: expected float16, float32 or float64, found {dtype}")
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise WeightsError(f"{what}: a virtual dataset (it maps other files); refused")
    if plist.get_external_count():
        raise WeightsError(f"{what}: stored in external files; refused")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    unknown = [f for f in filters if f not in _FILTERS]
    if unknown:
        raise WeightsError(f"{what}: HDF5 filter {unknown[0]}; only "
                           f"{' and '.join(_FILTERS.values())} are read")
    nbytes = math.prod(shape) * dtype.itemsize
    if layout == h5py.h5d.CHUNKED:
        chunk = plist.get_chunk()
        if math.prod(chunk) * dtype.itemsize > max(nbytes, 1 << 20):
            raise WeightsError(f"{what}: chunks of {chunk} for data of shape {shape}")
        expected = math.prod(-(-size // side) for size, side in zip(shape, chunk, strict=True))
        stored = dataset.id.get_num_chunks()
        if stored != expected:
            raise WeightsError(
                f"{what}: expected {expected} chunks of {chunk} for shape {shape}, the file "
                f"stores {stored} (the rest would be a fill value, not weights)"
            )
    else:
        stored = dataset.id.get_storage_size()
        if stored != nbytes:
            raise WeightsError(
                f"{what}: declares {nbytes} bytes, the file stores {stored}"
                + (" (it would read as a fill value, not weights)" if stored < nbytes else "")
            )


# ---------------------------------------------------------------------- writing


def to_keras(network: Network) -> Any:
    """A ``keras.Sequential`` computing ``network`` on float input (``input_scale`` is a
    ``Rescaling`` layer)."""
    keras = keras_module()
    layers: list[Any] = [keras.Input((network.n_inputs,))]
    if network.input_scale is not None:
        layers.append(keras.layers.Rescaling(network.input_scale))
    names = {ours: theirs for theirs, ours in ACTIVATIONS.items()}
    dense = [keras.layers.Dense(layer.outputs, activation=names[layer.activation])
             for layer in network.layers]
    model = keras.Sequential(layers + dense)
    for keras_layer, layer in zip(dense, network.layers, strict=True):
        keras_layer.set_weights([layer.weights, layer.bias])
    return model


def write_keras(network: Network, path: str | os.PathLike[str]) -> None:
    """Write ``network`` as a ``.keras`` file (Keras requires that suffix).

    A ``.keras`` file records no classes and no pixel scale: it reads back with uint8
    input scaled by the ``Rescaling`` factor, or refused without one. A network that would
    read back giving other answers (classes, or a pixel scale other than its input scale)
    is refused rather than written.
    """
    target = Path(path)
    if target.suffix != ".keras":
        raise ValueError(f"Keras writes only files named *.keras, got {target.name!r}")
    if network.classes is not None or (network.input_scale is not None
                                       and network.pixel_scale != network.input_scale):
        raise WeightsError(
            f"a .keras file records no classes and scales uint8 input as float input; this "
            f"network is {network!r}: write .npz, .onnx or .pt to keep its classes and "
            "pixel scale")
    model = to_keras(network)
    # Keras insists on the suffix, so the temporary file beside the target has it too.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        temporary = Path(scratch) / target.name
        model.save(temporary)
        os.replace(temporary, target)



FORMAT = Format(
    name="keras",
    description="Keras 3 model",
    recognise=lambda probe: probe.zip_names is not None
    and {_CONFIG, _WEIGHTS} <= set(probe.zip_names),
    read=read_keras,
    write=write_keras,
    suffixes=(".keras",),
)
