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
    dtype: npt.DTypeLike = np.float64,
) -> np.ndarray:
    """Outputs of the network ``layers`` (``(W, b, activation)`` triples) for ``x``.

    ``x`` is (N, inputs) or (inputs,); the result has matching rank. ``input_scale``
    multiplies the input first (1/255 for uint8 pixels). Tests use the float64 default
    as the oracle; ``dtype=np.float32`` is the textbook's own arithmetic (its loader
    divides float32 pixels by 255), which benchmarks time.
    """
    a = np.asarray(x, dtype=dtype) * np.asarray(input_scale, dtype=dtype)
    # inf - inf and overflow to inf are the answers for such inputs, not accidents.
    with np.errstate(invalid="ignore", over="ignore"):
        for weights, bias, activation in layers:
            w = np.asarray(weights, dtype=dtype)
            b = np.asarray(bias, dtype=dtype)
            a = ACTIVATIONS[activation](a @ w + b)
    return a
