"""PyTorch modules in memory: ``nn.Sequential`` chains -> Network, and back.

Files are read without torch (`mlpinfer.formats.torch`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import formats
from .._errors import WeightsError
from .._network import Network
from ..formats._chain import Chain, UnsupportedModelError, require
from ..formats.torch import ACTIVATIONS, network_from_state_dict

__all__ = ["from_torch", "load_torch", "to_torch"]


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
            chain.activate(ACTIVATIONS[kind], where)
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
    """A network from a state_dict: a mapping of tensors (needs torch), or a file
    ``torch.save`` wrote (read without torch, see `mlpinfer.formats.torch`).

    ``architecture`` names the entries of the ``nn.Sequential`` the state_dict came from,
    in order, from `ARCHITECTURE_LAYERS`, e.g. ``["Flatten", "Linear", "ReLU", "Linear"]``;
    ``Linear`` number ``i`` has keys ``"{i}.weight"`` and, optionally, ``"{i}.bias"``.
    A file written by `save_torch` records its architecture, scales and classes itself.
    """
    if not isinstance(source, Mapping):
        return formats.load(source, architecture=architecture, input_scale=input_scale)
    torch = require("torch", "torch")
    if architecture is None:
        raise WeightsError(
            "a state_dict does not say which activations follow its Linear layers: pass "
            f"architecture=[...]; its keys are {sorted(source)[:20]}"
        )
    arrays = {key: _array(torch, value, repr(key)) for key, value in source.items()}
    return network_from_state_dict(arrays, list(architecture), input_scale)


def _array(torch: Any, value: Any, key: str) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise WeightsError(f"{key} must be a tensor, got {type(value).__name__}")
    return value.detach().cpu().numpy()


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
