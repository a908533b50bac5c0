"""The forward pass in pure NumPy: the source of truth for tests and benchmarks.

This is the algorithm of "Deep Learning from Scratch", chapter 3 (``a = x @ W + b``,
then the activation, layer by layer), computed in float64 and made numerically
stable: sigmoid never evaluates ``exp`` of a positive number, softmax subtracts the
row maximum. A NaN in a row makes that row NaN and no other (in a LayerNorm's or a
softmax's row: the whole row). x * g(x) activations (gelu, gelu_tanh, silu) take their
limit -0.0 at -inf rather than -inf * 0 = NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _activations

__all__ = [
    "ACTIVATIONS", "activate", "elu", "forward", "gelu", "gelu_tanh", "hard_sigmoid",
    "identity", "layer_norm", "leaky_relu", "log_softmax", "relu", "selu", "sigmoid", "silu",
    "softmax", "softplus", "tanh",
]

Array = npt.NDArray[np.floating]

# SELU's constants (Klambauer et al. 2017), as PyTorch and Keras write them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def tanh(x: Array) -> Array:
    return np.tanh(x)


def identity(x: Array) -> Array:
    return x


def softmax(x: Array) -> Array:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(x: Array) -> Array:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def leaky_relu(x: Array, negative_slope: float) -> Array:
    return np.where(x < 0, negative_slope * x, x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x: Array) -> Array:
    return SELU_SCALE * elu(x, SELU_ALPHA)


def _gated(x: Array, gate: Array) -> Array:
    """x * gate(x) where gate(-inf) = 0: the limit -0.0 at -inf, not -inf * 0 = NaN."""
    return np.where(x == -np.inf, -0.0, x * gate)


_erfc = np.frompyfunc(math.erfc, 1, 1)  # exact to float64 rounding; NumPy has no erf


def gelu(x: Array) -> Array:
    """x * Phi(x), the erf form: Phi(x) = erfc(-x / sqrt 2) / 2."""
    x = np.asarray(x)
    phi = 0.5 * _erfc(-x / math.sqrt(2.0)).astype(x.dtype)
    return _gated(x, phi)


def gelu_tanh(x: Array) -> Array:
    """0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): PyTorch's
    approximate="tanh". Computed as x * sigmoid(2u), the same function, because
    1 + tanh(u) cancels for x < 0 (relative error 0.6 at x = -7 in float64)."""
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    return _gated(x, sigmoid(2.0 * u))


def silu(x: Array) -> Array:
    return _gated(x, sigmoid(x))


def softplus(x: Array) -> Array:
    return np.logaddexp(0.0, x)


def hard_sigmoid(x: Array, slope: float, offset: float = 0.5) -> Array:
    return np.clip(slope * x + offset, 0.0, 1.0)


def layer_norm(y: Array, gamma: npt.ArrayLike, beta: npt.ArrayLike, epsilon: float) -> Array:
    """(y - mean) / sqrt(var + epsilon) * gamma + beta over the last axis (biased variance)."""
    mean = np.mean(y, axis=-1, keepdims=True)
    variance = np.mean((y - mean) ** 2, axis=-1, keepdims=True)
    return (y - mean) / np.sqrt(variance + epsilon) * gamma + beta


# name -> the function, taking the activation's parameters after x (`_activations`).
ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "identity": identity,
    "sigmoid": sigmoid,
    "relu": relu,
    "tanh": tanh,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
    "softplus": softplus,
    "hard_sigmoid": hard_sigmoid,
}


def activate(spec: str, x: Array) -> Array:
    """The activation ``spec`` (a name, or a name with parameters) applied to ``x``."""
    activation = _activations.parse(spec)
    return ACTIVATIONS[activation.name](x, *activation.params)


def _layer_parts(layer: Any) -> tuple[Any, Any, str, Any, bool]:
    """(W, b, activation, norm, norm_after_activation) of a `mlpinfer.Layer`, a (W, b,
    activation) triple, or a 4-/5-tuple adding norm (a `LayerNorm` or (gamma, beta,
    epsilon), or None) and norm_after_activation."""
    if hasattr(layer, "weights"):
        return layer.weights, layer.bias, layer.activation, layer.norm, layer.norm_after_activation
    weights, bias, activation, *rest = layer
    if len(rest) > 2:
        raise ValueError(
            f"a layer is (W, b, activation[, norm[, after]]), got {3 + len(rest)} items")
    norm = rest[0] if rest else None
    return weights, bias, activation, norm, bool(rest[1]) if len(rest) > 1 else False


def _normalized(y: Array, norm: Any, dtype: npt.DTypeLike) -> Array:
    gamma, beta, epsilon = (norm.gamma, norm.beta, norm.epsilon) if hasattr(norm, "gamma") else norm
    return layer_norm(y, np.asarray(gamma, dtype=dtype), np.asarray(beta, dtype=dtype), epsilon)


def forward(
    layers: Iterable[Any],
    x: npt.ArrayLike,
    input_scale: float = 1.0,
    dtype: npt.DTypeLike = np.float64,
    input_transform: Any = None,
) -> np.ndarray:
    """Outputs of the network ``layers`` for ``x``.

    Each layer is a `mlpinfer.Layer`, a ``(W, b, activation)`` triple, or a 4- or
    5-tuple ``(W, b, activation, norm, norm_after_activation)`` whose norm is a
    `mlpinfer.LayerNorm`, ``(gamma, beta, epsilon)`` or None. A layer computes
    ``y = a @ W + b``, then the LayerNorm and the activation (the LayerNorm after the
    activation if norm_after_activation). ``x`` is (N, inputs) or (inputs,); the result
    has matching rank. ``input_scale`` multiplies the input first (1/255 for uint8
    pixels); then ``input_transform`` (a `mlpinfer.InputTransform`, or None) makes each
    feature ``(x * input_scale - shift) * multiplier``. Tests use the float64 default as the oracle; ``dtype=np.float32`` is the
    textbook's own arithmetic (its loader divides float32 pixels by 255), which
    benchmarks time.
    """
    a = np.asarray(x, dtype=dtype) * np.asarray(input_scale, dtype=dtype)
    if input_transform is not None:
        a = ((a - np.asarray(input_transform.shift, dtype=dtype))
             * np.asarray(input_transform.multiplier, dtype=dtype))
    # inf - inf and overflow to inf are the answers for such inputs, not accidents.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for layer in layers:
            weights, bias, activation, norm, after = _layer_parts(layer)
            a = a @ np.asarray(weights, dtype=dtype) + np.asarray(bias, dtype=dtype)
            if norm is not None and not after:
                a = _normalized(a, norm, dtype)
            a = activate(activation, a).astype(dtype, copy=False)
            if norm is not None and after:
                a = _normalized(a, norm, dtype)
    return a
