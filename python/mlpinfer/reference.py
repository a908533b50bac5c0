"""The forward pass in pure NumPy: the source of truth for tests and benchmarks.

This is the algorithm of "Deep Learning from Scratch", chapter 3 (``a = x @ W + b``,
then the activation, layer by layer), computed in float64 and made numerically
stable: sigmoid never evaluates ``exp`` of a positive number, softmax subtracts the
row maximum. A NaN in a row makes that row NaN and no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["ACTIVATIONS", "forward", "identity", "relu", "sigmoid", "softmax", "tanh"]


def sigmoid(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def relu(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    return np.maximum(x, 0.0)


def tanh(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    return np.tanh(x)


def identity(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    return x


def softmax(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[npt.NDArray[np.floating]], npt.NDArray[np.floating]]] = {
    "identity": identity,
    "sigmoid": sigmoid,
    "relu": relu,
    "tanh": tanh,
    "softmax": softmax,
}


def forward(
    layers: Iterable[tuple[npt.ArrayLike, npt.ArrayLike, str]],
    x: npt.ArrayLike,
    input_scale: float = 1.0,
) -> npt.NDArray[np.float64]:
    """Outputs of the network ``layers`` (``(W, b, activation)`` triples) for ``x``.

    ``x`` is (N, inputs) or (inputs,); the result is float64 of matching rank.
    ``input_scale`` multiplies the input first (1/255 for uint8 pixels).
    """
    a = np.asarray(x, dtype=np.float64) * input_scale
    # inf - inf and overflow to inf are the answers for such inputs, not accidents.
    with np.errstate(invalid="ignore", over="ignore"):
        for weights, bias, activation in layers:
            w = np.asarray(weights, dtype=np.float64)
            b = np.asarray(bias, dtype=np.float64)
            a = ACTIVATIONS[activation](a @ w + b)
    return a
