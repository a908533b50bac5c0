"""PyTorch: ``nn.Sequential`` modules, and state_dict files with an architecture."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import WeightsError
from .._files import write_atomically
from .._network import Network
from ._common import Chain, UnsupportedModelError, require

__all__ = ["ARCHITECTURE_LAYERS", "from_torch", "load_torch", "save_torch", "to_torch"]

# Layer names of an architecture description: nn.Sequential entries, in order.
ARCHITECTURE_LAYERS = ("Linear", "ReLU", "Sigmoid", "Tanh", "Softmax", "Identity", "Flatten",
                       "Dropout")
_ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
                "Identity": "identity"}
# The file that save_torch writes: a state_dict of an nn.Sequential plus what it cannot say.
_BUNDLE_FORMAT = "mlpinfer.torch"
_BUNDLE_VERSION = 1


def from_torch(module: Any) -> Network:
    """A network from an ``nn.Sequential`` (nested ones too) or a single ``nn.Linear``.

    Allowed: ``Linear`` (no bias means zeros), ``ReLU``, ``Sigmoid``, ``Tanh``,
    ``Softmax`` over the last dimension, ``Identity``, ``Flatten`` keeping the batch
    dimension (the engine flattens its input itself; after a ``Linear`` it changes
    nothing), and ``Dropout``, the identity at inference whatever the training flag.
    Subclasses are refused: their ``forward`` may differ.
    """
    torch = require("torch", "torch")
    nn = torch.nn
    chain = Chain()
    entries = _flatten_sequential(nn, module, "")
    for name, layer in entries:
        kind = type(layer).__name__
        where = f"module {name or '(top)'} ({kind})"
        if type(layer) is nn.Linear:
            bias = None if layer.bias is None else _array(torch, layer.bias, f"{where} bias")
            chain.dense(_array(torch, layer.weight, f"{where} weight").T, bias, where)
        elif type(layer) in (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity):
            chain.activate(_ACTIVATIONS[kind], where)
        elif type(layer) is nn.Softmax:
            # dim=None is torch's legacy implicit choice, dim 1 for 2-D input.
            if layer.dim not in (None, 1, -1):
                raise UnsupportedModelError(f"{where}: dim={layer.dim}; only the last is supported")
            chain.activate("softmax", where)
        elif type(layer) is nn.Flatten:
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise UnsupportedModelError(
                    f"{where}: start_dim={layer.start_dim}, end_dim={layer.end_dim}; "
                    "only Flatten(1, -1) (keep the batch dimension) is supported"
                )
        elif type(layer) is not nn.Dropout:
            raise UnsupportedModelError(f"unsupported layer {kind} at {where}")
    return chain.network()


def _flatten_sequential(nn: Any, module: Any, prefix: str) -> list[tuple[str, Any]]:
    if type(module) is not nn.Sequential:
        if isinstance(module, nn.Sequential):
            raise UnsupportedModelError(
                f"unsupported module {type(module).__name__} at {prefix or '(top)'}: "
                "a subclass of nn.Sequential may change forward()"
            )
        if prefix == "" and type(module) is not nn.Linear:
            raise UnsupportedModelError(
                f"expected an nn.Sequential or nn.Linear, got {type(module).__name__}"
            )
        return [(prefix, module)]
    entries = []
    for name, child in module.named_children():
        entries += _flatten_sequential(nn, child, f"{prefix}{name}" if not prefix
                                       else f"{prefix}.{name}")
    return entries


def load_torch(
    source: str | os.PathLike[str] | Mapping[str, Any],
    architecture: Sequence[str] | None = None,
    *,
    input_scale: float | None = None,
) -> Network:
    """A network from a state_dict (a mapping, or a file read with ``weights_only=True``).

    ``architecture`` names the entries of the ``nn.Sequential`` the state_dict came from,
    in order, from `ARCHITECTURE_LAYERS`, e.g. ``["Flatten", "Linear", "ReLU", "Linear"]``;
    ``Linear`` number ``i`` has keys ``"{i}.weight"`` and, optionally, ``"{i}.bias"``.
    A file written by `save_torch` records its architecture and input scale itself.
    """
    torch = require("torch", "torch")
    state: Any = source
    if not isinstance(source, Mapping):
        state = _read(torch, source)
    if isinstance(state, Mapping) and state.get("format") == _BUNDLE_FORMAT:
        if architecture is not None or input_scale is not None:
            raise WeightsError(
                "this file records its architecture and input scale; do not pass them"
            )
        if state.get("version") != _BUNDLE_VERSION:
            raise WeightsError(
                f"{_BUNDLE_FORMAT} version {state.get('version')!r}; this mlpinfer reads "
                f"version {_BUNDLE_VERSION}"
            )
        architecture, input_scale, state = (state.get("architecture"), state.get("input_scale"),
                                             state.get("state_dict"))
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"expected a state_dict (a dict of tensors), got {type(state).__name__}")
    if architecture is None:
        raise WeightsError(
            "a bare state_dict does not say which activations follow its Linear layers: read "
            "it with mlpinfer.importers.load_torch(path, architecture=[...]) or "
            "`mlpinfer convert --architecture ...` (names from "
            f"{', '.join(ARCHITECTURE_LAYERS)}); its keys are {sorted(state)}"
        )
    return _from_state_dict(torch, state, list(architecture), input_scale)


def _read(torch: Any, path: str | os.PathLike[str]) -> Any:
    try:
        # weights_only: the unpickler rebuilds tensors and containers, never runs code.
        return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except OSError as error:
        raise WeightsError(f"cannot read {os.fspath(path)!r}: {error}") from None
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{os.fspath(path)}: refused by torch.load(weights_only=True); a pickled module "
            "needs code to load: save model.state_dict() instead "
            f"({str(error).splitlines()[0]})"
        ) from None
    except Exception as error:  # noqa: BLE001 - zip, pickle and storage errors of any type
        raise WeightsError(
            f"{os.fspath(path)}: not a readable PyTorch file ({type(error).__name__}: {error})"
        ) from None


def _from_state_dict(torch: Any, state: Mapping[str, Any], architecture: list[Any],
                     input_scale: float | None) -> Network:
    chain = Chain()
    if input_scale is not None:
        chain.scale(float(input_scale), 0.0, "input_scale")
    used: set[str] = set()
    for index, kind in enumerate(architecture):
        where = f"entry {index} ({kind})"
        if kind == "Linear":
            weight_key, bias_key = f"{index}.weight", f"{index}.bias"
            if weight_key not in state:
                raise WeightsError(f"{where}: the state_dict has no {weight_key!r}")
            used.update(k for k in (weight_key, bias_key) if k in state)
            weight = _array(torch, state[weight_key], repr(weight_key))
            bias = _array(torch, state[bias_key], repr(bias_key)) if bias_key in state else None
            chain.dense(weight.T, bias, where)
        elif kind in _ACTIVATIONS:
            chain.activate(_ACTIVATIONS[kind], where)
        elif kind not in ("Flatten", "Dropout"):
            raise UnsupportedModelError(
                f"unsupported layer {kind!r} at {where}; expected one of "
                f"{', '.join(ARCHITECTURE_LAYERS)}"
            )
    unused = sorted(set(state) - used)
    if unused:
        raise UnsupportedModelError(
            f"the state_dict has entries no Linear of the architecture uses: {unused}"
        )
    return chain.network()


def _array(torch: Any, value: Any, key: str) -> np.ndarray:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise WeightsError(f"{key} must be a float tensor, got {type(value).__name__}")
    return value.detach().to(device="cpu", dtype=torch.float32).numpy()


def _architecture(network: Network) -> list[str]:
    names = {name: kind for kind, name in _ACTIVATIONS.items()}
    architecture = []
    for layer in network.layers:
        architecture.append("Linear")
        if layer.activation != "identity":
            architecture.append(names[layer.activation])
    return architecture


def to_torch(network: Network) -> Any:
    """An ``nn.Sequential`` computing ``network`` on float input.

    A module has no input scale: a set ``input_scale`` is multiplied into the first
    ``Linear``'s weights (rounding once more than the engine does).
    """
    torch = require("torch", "torch")
    nn = torch.nn
    modules = []
    for index, layer in enumerate(network.layers):
        linear = nn.Linear(layer.inputs, layer.outputs)
        weights = layer.weights.T
        if index == 0 and network.input_scale is not None:
            weights = weights * np.float32(network.input_scale)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights)))
            linear.bias.copy_(torch.from_numpy(np.array(layer.bias)))
        modules.append(linear)
        if layer.activation == "softmax":
            modules.append(nn.Softmax(dim=-1))
        elif layer.activation != "identity":
            modules.append(getattr(nn, {"relu": "ReLU", "sigmoid": "Sigmoid",
                                        "tanh": "Tanh"}[layer.activation])())
    return nn.Sequential(*modules).eval()


def save_torch(network: Network, path: str | os.PathLike[str]) -> None:
    """Write a file `load_torch` reads back alone: ``{"format", "version",
    "architecture", "input_scale", "state_dict"}``, all plain types and tensors.

    ``state_dict`` fits ``nn.Sequential`` built from ``architecture``; feed that module
    inputs multiplied by ``input_scale`` when it is not ``None``.
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
              "state_dict": state}
    write_atomically(path, lambda stream: torch.save(bundle, stream))
