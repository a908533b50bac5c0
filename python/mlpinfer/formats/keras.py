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

Every layer is planned by `plan_layer` from its config; the live importer
(`mlpinfer.importers.from_keras`) plans from each layer's ``get_config()`` through the same
function and reads the same variables from the layer, so that a model and its saved file
load the same network.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _activations
from .._activations import Activation
from .._errors import WeightsError
from .._network import Network
from ._budget import Budget, open_zip, read_member
from ._chain import Chain, UnsupportedModelError, require
from ._registry import Format, Request

__all__ = ["ACTIVATIONS", "FORMAT", "SUPPORTED", "Plan", "Variables", "keras_module",
           "plan_layer", "read_keras", "run_plan", "to_keras", "write_keras"]

# Keras's activation names -> ours. Keras 3's defaults are written out: leaky_relu's
# negative_slope is 0.2 and hard_sigmoid is relu6(x + 3) / 6 (slope 1/6), which
# tests/test_import_keras.py checks against the installed Keras.
ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
               "log_softmax": "log_softmax", "linear": "identity",
               "leaky_relu": str(Activation("leaky_relu", (0.2,))), "elu": "elu",
               "selu": "selu", "gelu": "gelu", "silu": "silu", "swish": "silu",
               "softplus": "softplus",
               "hard_sigmoid": str(Activation("hard_sigmoid", (1 / 6, 0.5)))}
# How the README's table shows a Keras activation name whose meaning needs a word.
_ACTIVATION_NOTES = {"gelu": " (approximate=False)", "leaky_relu": " (negative_slope 0.2)",
                     "hard_sigmoid": " (relu6(x + 3) / 6)"}
_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
# Real configs are kilobytes (3.5 KB for a 784-512-10 MLP); this caps what is inflated
# and parsed before anything is checked.
_MAX_CONFIG_BYTES = 16 << 20
# Dtype policies we compute in: the engine's float32, or float64 variables.
_POLICIES = ("float32", "float64")
# Options of each layer class; any other is refused as an option we would be ignoring.
_COMMON_OPTIONS = {"name", "trainable", "dtype"}
_INITIALIZED = {"beta_initializer", "gamma_initializer", "beta_regularizer",
                "gamma_regularizer", "beta_constraint", "gamma_constraint"}
_OPTIONS = {
    "InputLayer": {"batch_shape", "batch_input_shape", "input_shape", "batch_size", "sparse",
                   "ragged", "optional", "name", "dtype"},
    "Dense": _COMMON_OPTIONS | {"units", "activation", "use_bias", "kernel_initializer",
                                "bias_initializer", "kernel_regularizer", "bias_regularizer",
                                "activity_regularizer", "kernel_constraint", "bias_constraint",
                                "quantization_config", "lora_rank", "lora_alpha"},
    "Activation": _COMMON_OPTIONS | {"activation"},
    "Softmax": _COMMON_OPTIONS | {"axis"},
    "LeakyReLU": _COMMON_OPTIONS | {"negative_slope"},
    "ELU": _COMMON_OPTIONS | {"alpha"},
    "ReLU": _COMMON_OPTIONS | {"max_value", "negative_slope", "threshold"},
    "BatchNormalization": _COMMON_OPTIONS | _INITIALIZED | {
        "axis", "momentum", "epsilon", "center", "scale", "moving_mean_initializer",
        "moving_variance_initializer", "synchronized", "renorm", "renorm_clipping",
        "renorm_momentum"},
    "LayerNormalization": _COMMON_OPTIONS | _INITIALIZED | {"axis", "epsilon", "center",
                                                            "scale", "rms_scaling"},
    "Normalization": _COMMON_OPTIONS | {"axis", "invert", "mean", "variance"},
    "Rescaling": _COMMON_OPTIONS | {"scale", "offset"},
    "Flatten": _COMMON_OPTIONS | {"data_format"},
    "Dropout": _COMMON_OPTIONS | {"rate", "seed", "noise_shape"},
    "Identity": _COMMON_OPTIONS,
    "GaussianNoise": _COMMON_OPTIONS | {"stddev", "seed"},
    "GaussianDropout": _COMMON_OPTIONS | {"rate", "seed"},
    "AlphaDropout": _COMMON_OPTIONS | {"rate", "seed", "noise_shape"},
}
# Layer classes -> the concept they are (activation layers: the activation they compute).
_LAYER_CONCEPTS = {"Dense": "dense", "BatchNormalization": "batch_norm",
                   "LayerNormalization": "layer_norm", "Normalization": "feature_scaling",
                   "Rescaling": "feature_scaling", "InputLayer": "no_op", "Flatten": "no_op",
                   "Dropout": "no_op", "Identity": "no_op", "GaussianNoise": "no_op",
                   "GaussianDropout": "no_op", "AlphaDropout": "no_op",
                   "Softmax": "softmax", "LeakyReLU": "leaky_relu", "ELU": "elu", "ReLU": "relu"}
# The layers that only add noise in training (rate, stddev): the identity at inference.
_NO_OPS = ("Dropout", "Identity", "GaussianNoise", "GaussianDropout", "AlphaDropout")
# Normalization divides by max(sqrt(variance), keras.config.epsilon()), whose default this is.
_NORMALIZATION_EPSILON = 1e-7
_MODELS = ("Sequential", "Functional", "Model")
# Objects the config may name (initializers, dtype policies) must be Keras's own.
_KERAS_MODULE = re.compile(r"keras(\.[a-z_]+)*\Z")
# Of the HDF5 filters, only these two are built into every libhdf5: any other id makes
# HDF5 look for a plugin library to load.
_FILTERS = {1: "deflate", 2: "shuffle"}


def _supported() -> dict[str, str]:
    """Concept -> how Keras spells it, from the tables the reader dispatches on."""
    table: dict[str, list[str]] = {}
    for name, ours in ACTIVATIONS.items():
        table.setdefault(_activations.parse(ours).name, []).append(
            f"'{name}'{_ACTIVATION_NOTES.get(name, '')}")
    for kind, concept in _LAYER_CONCEPTS.items():
        is_activation = concept in _activations.ACTIVATIONS
        table.setdefault(concept, []).append(f"{kind} layer" if is_activation else kind)
    return {key: ", ".join(spellings) for key, spellings in table.items()}


#: Concept (README supported-layers table) -> how Keras spells it: activation names (of
#: Dense and Activation layers) in quotes, layer classes bare.
SUPPORTED = _supported()


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
class Variables:
    """A layer's variables: its group in ``model.weights.h5`` (its index among the
    layers of a live model) and each variable's name and shape, in Keras's order."""

    path: str
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    where: str

    @property
    def nbytes(self) -> int:
        """The float64 copies the chain holds."""
        return 8 * sum(math.prod(shape) for _, shape in self.shapes)


class Plan:
    """What a model asks for, in order, with every weight shape known before reading:
    steps (kind, value, label), a value of kind `Variables` being read by `run_plan`."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any, str]] = []
        self.layers = 0  # layers planned so far, nested models' and input layers not counted

    def variables(self) -> Iterator[Variables]:
        return (value for _, value, _ in self.steps if isinstance(value, Variables))


def read_keras(request: Request) -> Network:
    """A network from a ``.keras`` file (any name).

    Allowed layers (`SUPPORTED`): ``InputLayer``; ``Dense`` (``use_bias=False`` means
    zero bias) with any activation of `ACTIVATIONS`; ``Activation``, ``Softmax`` (last
    axis), ``LeakyReLU``, ``ELU`` and ``ReLU`` (default options) layers;
    ``BatchNormalization`` (moving statistics, folded into the adjacent ``Dense``),
    ``LayerNormalization`` (last axis) after a ``Dense``, ``Normalization``
    (``invert=False``) and ``Rescaling`` (a scalar one before the first ``Dense`` becomes
    ``input_scale``); ``Flatten`` and the layers that are the identity at inference
    (``Dropout``, ``Identity``, ``GaussianNoise``, ``GaussianDropout``,
    ``AlphaDropout``); nested Sequential and functional chains. Anything else is
    refused, naming the layer.
    """
    budget = request.budget
    with request.open() as stream, open_zip(stream, budget, what="a .keras zip") as archive:
        # FORMAT recognises a .keras zip by these two members.
        plan = _plan(_member_json(archive, budget))
        for variables in plan.variables():
            budget.charge(variables.nbytes, variables.where)
        # open_zip charged the member's declared size, which bounds what this inflates.
        weights = read_member(archive, _WEIGHTS, budget)
    h5py = require("h5py", "keras")
    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except Exception as error:  # noqa: BLE001 - h5py raises OSError and others
        raise WeightsError(
            f"{_WEIGHTS} is not a readable HDF5 file (h5py: {str(error)[:200]})"
        ) from None
    with h5:
        return run_plan(plan, lambda variables, index, shape: _variable(
            h5py, h5, variables, index, shape))


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


def _plan(config: Any) -> Plan:
    _refuse_foreign_objects(config, "the model")
    plan = Plan()
    kind = _field(config, "class_name", str, "the model")
    if kind not in _MODELS:
        raise UnsupportedModelError(
            f"the model is a {kind[:60]!r}; expected a Sequential or functional model"
        )
    _model(config, "layers", None, plan, "the model")
    if not any(kind == "dense" for kind, _, _ in plan.steps):
        raise UnsupportedModelError("the model has no Dense layer")
    return plan


def _model(config: dict[str, Any], prefix: str, shape: list[int] | None, plan: Plan,
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
        # Numbered as the flattened chain of layers (model.layers of a Sequential).
        label = f"layer {plan.layers} {str(name)[:60]!r} ({kind[:60]})"
        # Keras stores a layer's variables under the snake_case of its class name
        # (keras.src.utils.naming.to_snake_case: "LeakyReLU" -> "leaky_re_lu"), numbered
        # per class in the model's order ("dense", "dense_1", ...).
        snake = re.sub("([a-z])([A-Z])", r"\1_\2",
                       re.sub("(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", kind))).lower()
        count = counters.get(snake, 0)
        counters[snake] = count + 1
        h5_path = f"{prefix}/{snake}" + (f"_{count}" if count else "")
        if kind in _MODELS:
            shape = _model(layer, f"{h5_path}/layers", shape, plan, label)
            continue
        if kind == "InputLayer":
            _check_options(kind, options, label)
            shape = _input_shape(options, shape, index, label)
            continue
        plan.layers += 1
        if shape is None:
            shape = _build_shape(layer, label)
        shape = plan_layer(kind, options, shape, h5_path, plan, label)
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


def _check_options(kind: str, options: dict[str, Any], label: str) -> None:
    if kind not in _OPTIONS:
        raise UnsupportedModelError(
            f"unsupported layer {kind[:60]} at {label}; supported: "
            f"{', '.join(k for k in _OPTIONS if k != 'InputLayer')}")
    unknown = sorted(set(options) - _OPTIONS[kind])
    if unknown:
        raise UnsupportedModelError(
            f"{label}: unsupported option {unknown[0][:60]!r} (an option mlpinfer would "
            "be ignoring)"
        )


def _activation(options: dict[str, Any], label: str) -> str:
    name = options.get("activation", "linear")
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise UnsupportedModelError(
            f"{label}: unsupported activation {str(name)[:60]!r}; supported: "
            f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _last_axis(axis: Any, shape: list[int], label: str) -> None:
    """``axis`` (an int or a list of one) must be the features' axis: -1 or its index."""
    if isinstance(axis, (list, tuple)) and len(axis) == 1:  # a live layer's config has tuples
        axis = axis[0]
    if axis not in (-1, len(shape)) or isinstance(axis, bool):
        raise UnsupportedModelError(
            f"{label}: axis={str(axis)[:40]}; only the last axis (-1) is supported")


def _flag(options: dict[str, Any], key: str, default: bool, label: str) -> bool:
    return _field(options, key, bool, label) if key in options else default


def plan_layer(kind: str, options: dict[str, Any], shape: list[int], path: str, plan: Plan,
               label: str) -> list[int]:
    """Adds the steps of one layer of class ``kind`` with its config ``options``, on input
    of ``shape`` (without the batch axis), its variables under ``path``; returns its
    output shape. The file reader and the live importer (with ``layer.get_config()``)
    both plan through here."""
    _check_options(kind, options, label)
    _check_policy(options, label)
    if kind == "Dense":
        units = _field(options, "units", int, label)
        use_bias = _flag(options, "use_bias", True, label)
        if options.get("quantization_config") is not None or options.get("lora_rank"):
            raise UnsupportedModelError(f"{label}: quantized or LoRA weights")
        if len(shape) != 1:
            raise UnsupportedModelError(
                f"{label}: input of shape (None, {', '.join(map(str, shape))}); Dense is "
                "supported on (batch, features) only (add a Flatten)"
            )
        if units <= 0:
            raise WeightsError(f"{label}: {units} units")
        shapes = (("kernel", (shape[0], units)),) + ((("bias", (units,)),) if use_bias else ())
        plan.steps.append(("dense", Variables(path, shapes, label), label))
        plan.steps.append(("activate", _activation(options, label), label))
        return [units]
    if kind in ("Activation", "Softmax", "LeakyReLU", "ELU", "ReLU"):
        plan.steps.append(("activate", _activation_layer(kind, options, shape, label), label))
    elif kind == "BatchNormalization":
        _last_axis(options.get("axis", -1), shape, label)
        if _flag(options, "renorm", False, label) or _flag(options, "synchronized", False, label):
            raise UnsupportedModelError(f"{label}: renorm or synchronized batch statistics")
        names = (["gamma"] if _flag(options, "scale", True, label) else []) + (
            ["beta"] if _flag(options, "center", True, label) else []) + [
            "moving_mean", "moving_variance"]
        epsilon = _number(options.get("epsilon", 1e-3), label)
        variables = Variables(path, tuple((name, (shape[-1],)) for name in names), label)
        plan.steps.append(("batch_norm", (variables, epsilon, shape), label))
    elif kind == "LayerNormalization":
        _last_axis(options.get("axis", -1), shape, label)
        if _flag(options, "rms_scaling", False, label):
            raise UnsupportedModelError(
                f"{label}: rms_scaling=True (it scales by the variance, not by the root mean "
                "square); supported: LayerNormalization with rms_scaling=False")
        if len(shape) != 1:
            raise UnsupportedModelError(
                f"{label}: over the last axis of (None, {', '.join(map(str, shape))}); "
                "LayerNormalization is supported after a Dense layer only")
        names = (["gamma"] if _flag(options, "scale", True, label) else []) + (
            ["beta"] if _flag(options, "center", True, label) else [])
        epsilon = _number(options.get("epsilon", 1e-3), label)
        variables = Variables(path, tuple((name, (shape[-1],)) for name in names), label)
        plan.steps.append(("layer_norm", (variables, epsilon), label))
    elif kind == "Normalization":
        _plan_normalization(options, shape, path, plan, label)
    elif kind == "Rescaling":
        factor = _numbers(options.get("scale", 1.0), shape, label)
        offset = _numbers(options.get("offset", 0.0), shape, label)
        if factor.ndim == 0 and offset.ndim == 0:
            plan.steps.append(("scale", (float(factor), float(offset)), label))
        else:
            plan.steps.append(("affine", (factor, offset, shape), label))
    elif kind == "Flatten":
        if options.get("data_format", "channels_last") != "channels_last" and len(shape) > 1:
            raise UnsupportedModelError(
                f"{label}: data_format={str(options.get('data_format'))[:40]!r} reorders the "
                "features"
            )
        plan.steps.append(("skip", kind, label))
        return [math.prod(shape)]
    else:
        plan.steps.append(("skip", kind, label))
    return shape


def _activation_layer(kind: str, options: dict[str, Any], shape: list[int], label: str) -> str:
    """Our activation for one of Keras's activation layers."""
    if kind == "Activation":
        return _activation(options, label)
    if kind == "Softmax":
        _last_axis(options.get("axis", -1), shape, label)
        return "softmax"
    if kind == "LeakyReLU":  # Keras 3's LeakyReLU layer defaults to 0.3, its function to 0.2
        return str(Activation("leaky_relu", (_number(options.get("negative_slope", 0.3), label),)))
    if kind == "ELU":
        return str(Activation("elu", (_number(options.get("alpha", 1.0), label),)))
    for key, default in (("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0)):
        if options.get(key, default) != default:
            raise UnsupportedModelError(
                f"{label}: {key}={str(options[key])[:40]}; only ReLU with its default "
                "options (max_value=None, negative_slope=0, threshold=0) is supported")
    return "relu"


def _plan_normalization(options: dict[str, Any], shape: list[int], path: str, plan: Plan,
                        label: str) -> None:
    """Keras's Normalization: ``(x - mean) / max(sqrt(variance), epsilon)`` per feature."""
    if _flag(options, "invert", False, label):
        raise UnsupportedModelError(
            f"{label}: invert=True (it undoes a normalization); supported: Normalization "
            "with invert=False")
    axis = options.get("axis", [-1])
    every_axis = axis is None or (isinstance(axis, (list, tuple)) and not axis)  # one mean
    if not every_axis:
        _last_axis(axis, shape, label)
    mean, variance = options.get("mean"), options.get("variance")
    if mean is None and variance is None:  # adapted: the statistics are variables
        stats = () if every_axis else (shape[-1],)
        variables = Variables(path, (("mean", stats), ("variance", stats)), label)
        plan.steps.append(("normalization", (variables, shape), label))
        return
    plan.steps.append(("affine", (*_standardize(_numbers(mean, shape, label),
                                                _numbers(variance, shape, label), label), shape),
                       label))


def _standardize(mean: np.ndarray, variance: np.ndarray,
                 label: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / max(sqrt(variance), epsilon)`` as ``x * scale + shift``."""
    if np.any(variance < 0):
        raise WeightsError(f"{label}: a negative variance")
    scale = 1.0 / np.maximum(np.sqrt(variance), _NORMALIZATION_EPSILON)
    return scale, -mean * scale


def _numbers(value: Any, shape: list[int], label: str) -> np.ndarray:
    """A config's number or list of numbers that broadcasts over ``shape`` (a 0-d array
    when it is one number). It is broadcast (`_flat`) only when the plan runs, after the
    budget has counted the Dense layer the features flow into."""
    def bad(what: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"{label}: {what}; expected numbers broadcasting over "
                                     f"the input (None, {', '.join(map(str, shape))})")
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise bad(f"a scale, offset or statistic {str(value)[:40]}") from None
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"{label}: a non-finite scale, offset or statistic")
    if array.size == 1:
        return array.reshape(())
    try:
        fits = np.broadcast_shapes(array.shape, tuple(shape)) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise bad(f"values of shape {array.shape}")
    return array


def _flat(array: np.ndarray, shape: list[int]) -> np.ndarray:
    """``array`` (from `_numbers`) per flattened feature, or the one number it is."""
    return array if array.ndim == 0 else np.broadcast_to(array, tuple(shape)).reshape(-1)


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WeightsError(f"{label}: {str(value)[:40]}; expected a number")
    return float(value)


# ---------------------------------------------------------------------- the weights


def run_plan(plan: Plan, fetch: Callable[[Variables, int, tuple[int, ...]], np.ndarray]
             ) -> Network:
    """The network ``plan`` describes; ``fetch(variables, index, shape)`` gives a variable
    (from the file, or from a live layer) of the planned shape."""
    chain = Chain()
    for kind, value, label in plan.steps:
        if kind == "activate":
            chain.activate(value, label)
        elif kind == "scale":
            chain.scale(*value, label)
        elif kind == "affine":
            scale, shift, shape = value
            chain.affine(_flat(scale, shape), _flat(shift, shape), label)
        elif kind == "skip":
            chain.skip(value, label)
        else:
            variables = value if kind == "dense" else value[0]
            arrays = {name: fetch(variables, index, shape)
                      for index, (name, shape) in enumerate(variables.shapes)}
            if kind == "dense":
                chain.dense(arrays["kernel"], arrays.get("bias"), label)
            elif kind == "layer_norm":
                chain.layer_norm(arrays.get("gamma"), arrays.get("beta"), value[1], label)
            elif kind == "batch_norm":
                _, epsilon, shape = value
                flat = {name: _flat(_numbers(array, shape, label), shape)
                        for name, array in arrays.items()}
                chain.batch_norm(flat["moving_mean"], flat["moving_variance"],
                                 flat.get("gamma"), flat.get("beta"), epsilon, label)
            else:  # an adapted Normalization
                shape = value[1]
                scale, shift = _standardize(_numbers(arrays["mean"], shape, label),
                                            _numbers(arrays["variance"], shape, label), label)
                chain.affine(_flat(scale, shape), _flat(shift, shape), label)
    return chain.network()


def _variable(h5py: Any, h5: Any, variables: Variables, index: int,
              shape: tuple[int, ...]) -> np.ndarray:
    path = f"{variables.path}/vars/{index}"
    what = f"{variables.where}: {_WEIGHTS} dataset {path!r}"
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
    ``Rescaling`` layer, a LayerNorm a ``LayerNormalization`` layer). `WeightsError` for
    an activation Keras cannot say (gelu_tanh, a hard sigmoid other than Keras's)."""
    keras = keras_module()
    layers: list[Any] = [keras.Input((network.n_inputs,))]
    if network.input_scale is not None:
        layers.append(keras.layers.Rescaling(network.input_scale))
    if network.input_transform is not None:
        layers += _normalization_layers(keras, network)
    weighted: list[tuple[Any, list[np.ndarray]]] = []
    for layer in network.layers:
        activation = _keras_activation(keras, layer.activation)
        steps: list[Any] = [] if activation == "linear" else [activation]
        if layer.norm is not None:
            norm = keras.layers.LayerNormalization(epsilon=layer.norm.epsilon)
            weighted.append((norm, [layer.norm.gamma, layer.norm.beta]))
            steps.insert(len(steps) if layer.norm_after_activation else 0, norm)
        merged = bool(steps) and isinstance(steps[0], str)  # Dense(activation=...) itself
        dense = keras.layers.Dense(layer.outputs, activation=steps.pop(0) if merged else None)
        weighted.append((dense, [layer.weights, layer.bias]))
        layers.append(dense)
        layers += [keras.layers.Activation(step) if isinstance(step, str) else step
                   for step in steps]
    model = keras.Sequential(layers)
    for keras_layer, arrays in weighted:
        keras_layer.set_weights(arrays)
    return model


def _normalization_layers(keras: Any, network: Network) -> list[Any]:
    """The input transform as two ``Normalization`` layers, as exact as the engine's: the
    float32 part of the shift with variance 1 (Keras subtracts in float32, exactly for
    inputs near it, and divides by 1), then the rest of the shift with variance
    1 / multiplier^2. `WeightsError` where Normalization cannot say it: a multiplier not
    in (0, 1 / epsilon] (it divides by max(sqrt(variance), epsilon)), or an input scale
    on inputs far from 0 (Rescaling rounds x * scale to float32 before the subtraction)."""
    transform = network.input_transform
    assert transform is not None
    multiplier = transform.multiplier
    bad = np.flatnonzero(~((multiplier > 0) & (multiplier <= 1 / _NORMALIZATION_EPSILON)))
    if bad.size:
        raise WeightsError(
            f"Keras's Normalization divides by max(sqrt(variance), {_NORMALIZATION_EPSILON:g}); "
            f"this network's input transform has a multiplier of {multiplier[bad[0]]:.6g} at "
            f"feature {bad[0]}: write .npz or .onnx")
    spreads = float(np.max(np.abs(transform.shift * multiplier)))
    if network.input_scale is not None and spreads > 16:
        # 16 spreads from 0 keep x * scale's float32 rounding below 1e-6 of a spread.
        raise WeightsError(
            f"Keras's Rescaling rounds x * {network.input_scale:.6g} to float32 before the "
            f"Normalization subtracts, and this network's inputs sit up to {spreads:.3g} "
            "spreads from 0 (at most 16 keep that rounding below 1e-6 of a spread): write "
            ".npz or .onnx")
    high = transform.shift.astype(np.float32)
    low = (transform.shift - high).astype(np.float32)
    return [keras.layers.Normalization(mean=high, variance=np.ones_like(high)),
            keras.layers.Normalization(mean=low, variance=(1 / multiplier**2).astype(np.float32))]


def _keras_activation(keras: Any, spec: str) -> Any:
    """A Keras activation name for ``spec``, or the layer computing it."""
    parsed = _activations.parse(spec)
    names = {_activations.canonical(ours): theirs for theirs, ours in ACTIVATIONS.items()
             if theirs != "swish"}
    if str(parsed) in names:
        return names[str(parsed)]
    if parsed.name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=parsed.params[0])
    if parsed.name == "elu":
        return keras.layers.ELU(alpha=parsed.params[0])
    raise WeightsError(
        f"Keras has no activation computing {parsed} (Keras's gelu is the erf form, its "
        "hard_sigmoid has slope 1/6): write .npz, .onnx or .pt")


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
