"""What every framework reader and importer shares: the refusal error, optional imports and
the layer chain that turns a framework's layers into a network."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import numpy.typing as npt

from .._errors import WeightsError
from .._network import Network

__all__ = ["Chain", "UnsupportedModelError", "require"]


class UnsupportedModelError(WeightsError):
    """A model uses a layer, op or option that mlpinfer cannot run; the message names it."""


UnsupportedModelError.__module__ = "mlpinfer.importers"  # where users import it from


def require(module: str, extra: str) -> ModuleType:
    """Import an optional framework, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this needs the optional dependency {module.split('.')[0]!r}: "
            f"pip install 'mlpinfer[{extra}]' (import error: {error})"
        ) from error


class Chain:
    """Builds a network from a framework's layers, one step at a time.

    Each step names where it came from (``where``) so that a refusal points at the
    framework's layer or node. Two dense steps with no activation between them become
    two layers (the first with identity) rather than one product, so that the engine
    rounds exactly as the framework does.
    """

    def __init__(self) -> None:
        self._layers: list[tuple[np.ndarray, np.ndarray, str]] = []
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._scale: float | None = None
        self._offset = 0.0

    @property
    def started(self) -> bool:
        """Whether a dense step has been seen (input transforms must come before it)."""
        return bool(self._layers) or self._pending is not None

    @property
    def width(self) -> int | None:
        """Features of the current value, once a dense step has fixed it."""
        if self._pending is not None:
            return int(self._pending[0].shape[1])
        return int(self._layers[-1][0].shape[1]) if self._layers else None

    def scale(self, factor: float, offset: float, where: str) -> None:
        """``x * factor + offset`` of the current value."""
        if self._pending is not None:
            weights, bias = self._pending
            self._pending = (weights * factor, bias * factor + offset)
        elif self._layers:
            raise UnsupportedModelError(
                f"{where}: scaling after an activation cannot be expressed "
                "(only before the first dense layer, or between a dense layer and its activation)"
            )
        else:
            self._scale = factor if self._scale is None else self._scale * factor
            self._offset = self._offset * factor + offset

    def dense(self, weights: npt.ArrayLike, bias: npt.ArrayLike | None, where: str) -> None:
        """``x @ weights + bias``; ``weights`` is (inputs, outputs); no bias means zeros."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2:
            raise UnsupportedModelError(f"{where}: weights must be 2-D, got shape {w.shape}")
        b = np.zeros(w.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)
        if b.shape != (w.shape[1],):
            raise UnsupportedModelError(
                f"{where}: bias has shape {b.shape}, the weights have {w.shape[1]} outputs"
            )
        if self._layers and self._layers[-1][2] == "softmax":
            raise UnsupportedModelError(f"{where}: a dense layer after softmax (softmax must be last)")
        if self._pending is not None:
            self._commit("identity")
        elif not self._layers and self._offset:
            # (x*s + o) @ W + b == (x*s) @ W + (o * column sums of W + b)
            b = b + self._offset * w.sum(axis=0)
        self._pending = (w, b)

    def add_bias(self, bias: npt.ArrayLike, where: str) -> None:
        if self._pending is None:
            raise UnsupportedModelError(f"{where}: a bias addition that follows no dense layer")
        weights, current = self._pending
        b = np.asarray(bias, dtype=np.float64)
        if b.size not in (1, current.size) or (b.ndim > 1 and b.shape[-1] != b.size):
            raise UnsupportedModelError(
                f"{where}: bias of shape {b.shape} does not broadcast to {current.size} outputs"
            )
        self._pending = (weights, current + b.reshape(-1))

    def activate(self, name: str, where: str) -> None:
        if name == "identity":
            return
        if self._pending is None:
            previous = self._layers[-1][2] if self._layers else "the input"
            raise UnsupportedModelError(
                f"{where}: activation {name} applied to {previous} with no dense layer between"
            )
        self._commit(name)

    def network(self, *, classes: npt.ArrayLike | None = None,
                pixel_scale: float | str | None = "auto") -> Network:
        """The layers built so far, with what the file records beside them.

        ``pixel_scale`` "auto" means the file does not record it: uint8 input then takes
        the model's input scale when the model scales its input, and is refused otherwise
        (a framework's file does not say what its pixels were divided by)."""
        if self._pending is not None:
            self._commit("identity")
        if not self._layers:
            raise UnsupportedModelError("the model has no dense layer")
        params: dict[str, np.ndarray] = {}
        for i, (weights, bias, _) in enumerate(self._layers, start=1):
            params[f"W{i}"] = weights
            params[f"b{i}"] = bias
        return Network.from_params(
            params,
            activations=[activation for _, _, activation in self._layers],
            input_scale=self._scale,
            pixel_scale=None if pixel_scale == "auto" and self._scale is None else pixel_scale,
            classes=classes,
        )

    def _commit(self, activation: str) -> None:
        assert self._pending is not None
        weights, bias = self._pending
        self._layers.append((weights, bias, activation))
        self._pending = None
