"""Keras 3: ``.keras`` files and in-memory chains of ``Dense`` layers.

Keras needs a backend; without TensorFlow set ``KERAS_BACKEND=torch`` (or ``jax``)
before Keras is first imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import WeightsError
from .._network import Network
from ._common import Chain, UnsupportedModelError

__all__ = ["from_keras", "load_keras", "save_keras", "to_keras"]

_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
                "linear": "identity"}
_COMPUTE_DTYPES = ("float32", "float64")


def _keras() -> Any:
    try:
        import keras
    except ImportError as error:
        raise ImportError(
            "this needs Keras 3 and a backend: pip install 'mlpinfer[keras]' and, without "
            f"TensorFlow, set KERAS_BACKEND=torch before the first import (error: {error})"
        ) from error
    return keras


def from_keras(model: Any) -> Network:
    """A network from a built ``keras.Sequential`` or functional ``keras.Model`` chain.

    Allowed: ``InputLayer``, ``Dense`` (relu, sigmoid, tanh, softmax or linear;
    ``use_bias=False`` means zero bias), ``Activation`` of those, ``Flatten``,
    ``Dropout`` (the identity at inference) and ``Rescaling`` by scalars before the
    first ``Dense``, which becomes ``input_scale`` (an offset is folded into the first
    bias). Nested models are walked. Anything else is refused, naming the layer.
    """
    keras = _keras()
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
    if name not in _ACTIVATIONS or keras.activations.get(name) is not function:
        raise UnsupportedModelError(f"{where}: unsupported activation {name or function!r}")
    return _ACTIVATIONS[name]


def load_keras(path: str | os.PathLike[str]) -> Network:
    """A network from a ``.keras`` file (any name), loaded with ``safe_mode=True``, which
    refuses to deserialise code such as ``Lambda`` layers."""
    keras = _keras()
    source = Path(path)
    try:
        if source.suffix == ".keras":
            model = keras.saving.load_model(source, compile=False, safe_mode=True)
        else:
            # Keras picks its reader by the suffix; the content has been recognised already.
            with tempfile.TemporaryDirectory() as scratch:
                named = Path(scratch) / "model.keras"
                shutil.copyfile(source, named)
                model = keras.saving.load_model(named, compile=False, safe_mode=True)
    except OSError as error:
        raise WeightsError(f"cannot read {os.fspath(path)!r}: {error}") from None
    except Exception as error:  # noqa: BLE001 - Keras, zipfile and h5py raise many types
        raise WeightsError(
            f"{os.fspath(path)}: Keras could not load it ({type(error).__name__}: {error})"
        ) from None
    return from_keras(model)


def to_keras(network: Network) -> Any:
    """A ``keras.Sequential`` computing ``network`` on float input (``input_scale`` is a
    ``Rescaling`` layer)."""
    keras = _keras()
    layers: list[Any] = [keras.Input((network.n_inputs,))]
    if network.input_scale is not None:
        layers.append(keras.layers.Rescaling(network.input_scale))
    names = {ours: theirs for theirs, ours in _ACTIVATIONS.items()}
    dense = [keras.layers.Dense(layer.outputs, activation=names[layer.activation])
             for layer in network.layers]
    model = keras.Sequential(layers + dense)
    for keras_layer, layer in zip(dense, network.layers, strict=True):
        keras_layer.set_weights([layer.weights, layer.bias])
    return model


def save_keras(network: Network, path: str | os.PathLike[str]) -> None:
    """Write ``network`` as a ``.keras`` file (Keras requires that suffix)."""
    target = Path(path)
    if target.suffix != ".keras":
        raise ValueError(f"Keras writes only files named *.keras, got {target.name!r}")
    model = to_keras(network)
    # Keras insists on the suffix, so the temporary file beside the target has it too.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        temporary = Path(scratch) / target.name
        model.save(temporary)
        os.replace(temporary, target)
