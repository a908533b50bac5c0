"""Keras 3 models in memory: chains of ``Dense`` layers -> Network.

Keras needs a backend; without TensorFlow set ``KERAS_BACKEND=torch`` (or ``jax``)
before Keras is first imported. Files are read without Keras (`mlpinfer.formats.keras`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import formats
from .._network import Network
from ..formats._chain import UnsupportedModelError
from ..formats.keras import ACTIVATIONS, Plan, Variables, keras_module, plan_layer, run_plan

__all__ = ["from_keras", "load_keras"]

_COMPUTE_DTYPES = ("float32", "float64")


def from_keras(model: Any) -> Network:
    """A network from a built ``keras.Sequential`` or functional ``keras.Model`` chain.

    The layers and options a ``.keras`` file may hold (`mlpinfer.formats.keras`, which
    plans both from each layer's config): ``Dense`` with any activation of
    `ACTIVATIONS`, activation layers, ``BatchNormalization`` (moving statistics),
    ``LayerNormalization``, ``Normalization``, ``Rescaling`` (a scalar one before the
    first ``Dense`` becomes ``input_scale``), ``Flatten`` and the layers that are the
    identity at inference. Nested models are walked. Anything else is refused, naming
    the layer.
    """
    keras = keras_module()
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(f"expected a keras.Model, got {type(model).__name__}")
    plan = Plan()
    layers = _chain_layers(keras, model)
    for index, layer in enumerate(layers):
        _plan_layer(keras, layer, index, plan)
    if not any(kind == "dense" for kind, _, _ in plan.steps):
        raise UnsupportedModelError(f"model {model.name!r} has no Dense layer")

    def fetch(variables: Variables, index: int, shape: tuple[int, ...]) -> np.ndarray:
        array = _numpy(keras, layers[int(variables.path)].weights[index])
        if array.shape != shape:
            raise UnsupportedModelError(
                f"{variables.where}: variable {index} has shape {array.shape}, expected {shape}")
        return array

    return run_plan(plan, fetch)


def _chain_layers(keras: Any, model: Any) -> list[Any]:
    if not model.built or not model.inputs:
        raise UnsupportedModelError(
            f"model {model.name!r} is not built: give it a keras.Input or call it once"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; only single-input, single-output chains are supported"
        )
    layers = []
    previous = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not isinstance(model, keras.Sequential) and layer.input is not previous:
            raise UnsupportedModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) does not take the previous "
                "layer's output: only chains are supported"
            )
        previous = layer.output
        if isinstance(layer, keras.Model):
            layers += _chain_layers(keras, layer)
        else:
            layers.append(layer)
    if previous is not model.outputs[0] and not isinstance(model, keras.Sequential):
        raise UnsupportedModelError(f"model {model.name!r}: the output is not the chain's end")
    return layers


def _plan_layer(keras: Any, layer: Any, index: int, plan: Plan) -> None:
    kind = type(layer).__name__
    where = f"layer {index} {layer.name!r} ({kind})"
    if type(layer) is not getattr(keras.layers, kind, None):
        raise UnsupportedModelError(f"unsupported layer {kind} at {where} (only Keras's own "
                                    "layer classes are read, not subclasses)")
    compute = layer.dtype_policy.compute_dtype
    if compute not in _COMPUTE_DTYPES:
        raise UnsupportedModelError(f"{where}: dtype policy {layer.dtype_policy.name!r} "
                                    f"computes in {compute}; expected float32")
    if isinstance(layer, keras.layers.Dense) and layer.quantization_mode is not None:
        raise UnsupportedModelError(f"{where}: quantized ({layer.quantization_mode})")
    if isinstance(layer, (keras.layers.Dense, keras.layers.Activation)):
        _check_activation(keras, layer.activation, where)
    shape = tuple(layer.input.shape[1:])
    if not all(isinstance(size, int) for size in shape):
        raise UnsupportedModelError(f"{where}: input of shape (None, {shape}); expected "
                                    "known sizes")
    plan_layer(kind, layer.get_config(), list(shape), str(index), plan, where)


def _numpy(keras: Any, variable: Any) -> np.ndarray:
    value = variable.value
    if keras.backend.backend() == "torch":
        # keras.ops.convert_to_numpy calls np.array(tensor), which NumPy 2 warns about
        # for torch tensors (their __array__ takes no copy argument).
        return value.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(value))


def _check_activation(keras: Any, function: Any, where: str) -> None:
    """The layer's activation is the Keras function its config names (a lambda or a
    custom function with a known name is not)."""
    name = getattr(function, "__name__", None)
    if name not in ACTIVATIONS or keras.activations.get(name) is not function:
        raise UnsupportedModelError(
            f"{where}: unsupported activation {name or function!r}; supported: "
            f"{', '.join(ACTIVATIONS)}")


def load_keras(path: str | os.PathLike[str]) -> Network:
    """A network from a ``.keras`` file (any name), as `mlpinfer.load`: read as data,
    without Keras (see `mlpinfer.formats.keras`)."""
    return formats.load(path)
