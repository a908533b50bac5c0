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
from ..formats._chain import Chain, UnsupportedModelError
from ..formats.keras import ACTIVATIONS, keras_module

__all__ = ["from_keras", "load_keras"]

_COMPUTE_DTYPES = ("float32", "float64")


def from_keras(model: Any) -> Network:
    """A network from a built ``keras.Sequential`` or functional ``keras.Model`` chain.

    Allowed: ``InputLayer``, ``Dense`` (relu, sigmoid, tanh, softmax or linear;
    ``use_bias=False`` means zero bias), ``Activation`` of those, ``Flatten``,
    ``Dropout`` (the identity at inference) and ``Rescaling`` by scalars before the
    first ``Dense``, which becomes ``input_scale`` (an offset is folded into the first
    bias). Nested models are walked. Anything else is refused, naming the layer.
    """
    keras = keras_module()
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(f"expected a keras.Model, got {type(model).__name__}")
    chain = Chain()
    for layer in _chain_layers(keras, model):
        _step(keras, chain, layer)
    return chain.network()


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


def _step(keras: Any, chain: Chain, layer: Any) -> None:
    kind = type(layer).__name__
    where = f"layer {layer.name!r} ({kind})"
    if type(layer) not in (keras.layers.Dense, keras.layers.Activation, keras.layers.Flatten,
                           keras.layers.Dropout, keras.layers.Rescaling):
        raise UnsupportedModelError(f"unsupported layer {kind} at {where}")
    compute = layer.dtype_policy.compute_dtype
    if compute not in _COMPUTE_DTYPES:
        raise UnsupportedModelError(f"{where}: dtype policy {layer.dtype_policy.name!r} "
                                    f"computes in {compute}; expected float32")
    if isinstance(layer, keras.layers.Dense):
        if layer.quantization_mode is not None:
            raise UnsupportedModelError(f"{where}: quantized ({layer.quantization_mode})")
        if len(layer.input.shape) != 2:
            raise UnsupportedModelError(
                f"{where}: input of shape {tuple(layer.input.shape)}; Dense is supported on "
                "(batch, features) only (add a Flatten)"
            )
        bias = _numpy(keras, layer.bias) if layer.use_bias else None
        chain.dense(_numpy(keras, layer.kernel), bias, where)
        chain.activate(_activation(keras, layer.activation, where), where)
    elif isinstance(layer, keras.layers.Activation):
        chain.activate(_activation(keras, layer.activation, where), where)
    elif isinstance(layer, keras.layers.Flatten):
        if layer.data_format == "channels_first" and len(layer.input.shape) > 2:
            raise UnsupportedModelError(
                f"{where}: data_format='channels_first' reorders the features"
            )
    elif isinstance(layer, keras.layers.Rescaling):
        scale, offset = np.asarray(layer.scale), np.asarray(layer.offset)
        if scale.size != 1 or offset.size != 1:
            raise UnsupportedModelError(f"{where}: per-channel scale or offset")
        if chain.started:
            raise UnsupportedModelError(f"{where}: Rescaling after a Dense layer")
        chain.scale(float(scale.reshape(())), float(offset.reshape(())), where)


def _numpy(keras: Any, variable: Any) -> np.ndarray:
    value = variable.value
    if keras.backend.backend() == "torch":
        # keras.ops.convert_to_numpy calls np.array(tensor), which NumPy 2 warns about
        # for torch tensors (their __array__ takes no copy argument).
        return value.detach().cpu().numpy()
    return np.asarray(keras.ops.convert_to_numpy(value))


def _activation(keras: Any, function: Any, where: str) -> str:
    name = getattr(function, "__name__", None)
    if name not in ACTIVATIONS or keras.activations.get(name) is not function:
        raise UnsupportedModelError(f"{where}: unsupported activation {name or function!r}")
    return ACTIVATIONS[name]


def load_keras(path: str | os.PathLike[str]) -> Network:
    """A network from a ``.keras`` file (any name), as `mlpinfer.load`: read as data,
    without Keras (see `mlpinfer.formats.keras`)."""
    return formats.load(path)
