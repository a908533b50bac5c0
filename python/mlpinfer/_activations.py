"""The activations a layer may end with, and how one is written down.

An activation is a string: a name, or a name with its parameters, e.g. ``"relu"``,
``"leaky_relu(negative_slope=0.01)"``, ``"hard_sigmoid(slope=0.2, offset=0.5)"``. The
canonical spelling (`canonical`) names every parameter, so that a network's repr, its
saved files and its summary say exactly what runs. A parameter whose value frameworks
disagree on has no default: PyTorch's LeakyReLU slope is 0.01 and Keras's 0.2, Keras 3's
hard sigmoid is x/6 + 0.5 and ONNX's 0.2x + 0.5, and a guess would be a silent wrong
answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["ACTIVATIONS", "ROW_ACTIVATIONS", "Activation", "canonical", "parse"]


@dataclass(frozen=True)
class Activation:
    """A parsed activation: its name and its parameters in the order `ACTIVATIONS` lists."""

    name: str
    params: tuple[float, ...] = ()

    def __str__(self) -> str:
        if not self.params:
            return self.name
        names = ACTIVATIONS[self.name]
        shown = ", ".join(f"{key}={value!r}" for (key, _), value in zip(names, self.params, strict=True))
        return f"{self.name}({shown})"


# name -> its parameters as (name, default); a default of None means the parameter must be given.
ACTIVATIONS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "identity": (),
    "sigmoid": (),
    "relu": (),
    "tanh": (),
    "softmax": (),
    "log_softmax": (),
    "leaky_relu": (("negative_slope", None),),
    "elu": (("alpha", 1.0),),
    "selu": (),
    "gelu": (),  # the erf form: x * (1 + erf(x / sqrt(2))) / 2
    "gelu_tanh": (),  # the tanh approximation (PyTorch approximate="tanh", Keras approximate=True)
    "silu": (),  # x * sigmoid(x), also called swish
    "softplus": (),  # log(1 + e^x)
    "hard_sigmoid": (("slope", None), ("offset", 0.5)),  # max(0, min(1, slope * x + offset))
}

# Activations over a whole output row rather than element by element: only on the last layer.
ROW_ACTIVATIONS = ("softmax", "log_softmax")

_SPEC = re.compile(r"\s*([a-z_]+)\s*(?:\((.*)\))?\s*\Z", re.DOTALL)
_ARGUMENT = re.compile(r"\s*([a-z_]+)\s*=\s*([^,=\s]+)\s*\Z")


def parse(spec: str) -> Activation:
    """The activation that ``spec`` writes down; ValueError saying what is wrong otherwise
    (TypeError when ``spec`` is not a string)."""
    if not isinstance(spec, str):
        raise TypeError(f"an activation is a name such as 'relu', got {type(spec).__name__}")
    match = _SPEC.match(spec)
    if match is None or match.group(1) not in ACTIVATIONS:
        raise ValueError(f"unknown activation {spec[:60]!r}; expected one of {', '.join(ACTIVATIONS)}")
    name, arguments = match.group(1), match.group(2)
    expected = ACTIVATIONS[name]
    given: dict[str, float] = {}
    if arguments is not None and arguments.strip():
        for argument in arguments.split(","):
            parts = _ARGUMENT.match(argument)
            if parts is None:
                raise ValueError(f"activation {spec[:60]!r}: expected key=value, got {argument.strip()[:30]!r}")
            key, text = parts.groups()
            if key not in dict(expected):
                known = ", ".join(k for k, _ in expected) or "none"
                raise ValueError(f"activation {name} has no parameter {key!r} (parameters: {known})")
            if key in given:
                raise ValueError(f"activation {spec[:60]!r} gives {key} twice")
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"activation {name}: {key} must be a number, got {text[:30]!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"activation {name}: {key} must be finite, got {text[:30]!r}")
            given[key] = value
    params = []
    for key, default in expected:
        if key in given:
            params.append(given[key])
        elif default is None:
            raise ValueError(
                f"activation {name} needs {key} (frameworks differ on its default): "
                f"write e.g. '{name}({key}=...)'"
            )
        else:
            params.append(default)
    return Activation(name, tuple(params))


def canonical(spec: str) -> str:
    """``spec`` with every parameter named: ``"elu"`` -> ``"elu(alpha=1.0)"``."""
    return str(parse(spec))
