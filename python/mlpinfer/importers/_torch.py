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
from ..formats.torch import MODULE_OPTIONS, add_module, network_from_state_dict, torch_modules

__all__ = ["from_torch", "load_torch", "to_torch"]


def from_torch(module: Any) -> Network:
    """A network from an ``nn.Sequential`` (nested ones too) or a single ``nn.Linear``.

    Allowed (`ARCHITECTURE_LAYERS`): ``Linear`` (no bias means zeros); the activations
    ``ReLU``, ``Sigmoid``, ``Tanh``, ``Softmax`` and ``LogSoftmax`` over the last
    dimension, ``LeakyReLU``, ``ELU``, ``SELU``, ``GELU`` (either form), ``SiLU``,
    ``Softplus`` (beta 1), ``Hardsigmoid``; ``BatchNorm1d`` with its running statistics
    (what it computes in eval mode), folded into the adjacent ``Linear``; ``LayerNorm``
    over the last dimension after a ``Linear``; ``Identity``, ``Flatten`` keeping the
    batch dimension (the engine flattens its input itself; after a ``Linear`` it changes
    nothing), and ``Dropout``, the identity at inference whatever the training flag.
    Subclasses are refused: their ``forward`` may differ.
    """
    torch = require("torch", "torch")
    nn = torch.nn
    chain = Chain()
    for name, layer in _flatten_sequential(nn, module, ""):
        kind = type(layer).__name__
        where = f"module {name or '(top)'} ({kind})"
        if kind not in MODULE_OPTIONS or type(layer) is not getattr(nn, kind):
            raise UnsupportedModelError(
                f"unsupported layer {kind} at {where}; supported: {', '.join(MODULE_OPTIONS)}")
        if kind == "LayerNorm" and len(layer.normalized_shape) != 1:
            raise UnsupportedModelError(
                f"{where}: normalized_shape={tuple(layer.normalized_shape)}; only LayerNorm "
                "over the last dimension (one size) is supported")
        options = {key: getattr(layer, key) for key in MODULE_OPTIONS[kind]}
        tensors = {key: _array(torch, value, f"{where} {key}") for key, value in
                   [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]}
        add_module(chain, kind, options, tensors, where)
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
    in order, from `ARCHITECTURE_LAYERS` with the options that are not PyTorch's defaults,
    e.g. ``["Flatten", "Linear", "BatchNorm1d", "LeakyReLU(negative_slope=0.1)",
    "Linear"]``; entry ``i`` has its tensors under ``"{i}.weight"``, ``"{i}.bias"``,
    ``"{i}.running_mean"``, ... as ``nn.Sequential.state_dict()`` names them.
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
    """An ``nn.Sequential`` computing ``network`` on float input (the modules of
    `mlpinfer.formats.torch.torch_modules`).

    A module has no input scale: a set ``input_scale`` is multiplied into the first
    ``Linear``'s weights (rounding once more than the engine does).
    """
    torch = require("torch", "torch")
    nn = torch.nn
    modules = []
    for kind, options, tensors in torch_modules(network):
        if kind == "Linear":
            weight = tensors["weight"]
            if not modules and network.input_scale is not None:
                weight = weight * np.float32(network.input_scale)
            tensors = {**tensors, "weight": weight}
            module = nn.Linear(weight.shape[1], weight.shape[0])
        elif kind == "LayerNorm":
            module = nn.LayerNorm(tensors["weight"].shape[0], **options)
        else:
            module = getattr(nn, kind)(**options)
        with torch.no_grad():
            for name, array in tensors.items():
                getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(array)))
        modules.append(module)
    return nn.Sequential(*modules).eval()
