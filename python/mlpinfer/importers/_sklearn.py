"""scikit-learn ``MLPClassifier`` and ``MLPRegressor``."""

from __future__ import annotations

from typing import Any

from .._network import Network
from ..formats._chain import Chain, UnsupportedModelError, require

__all__ = ["from_sklearn"]

# scikit-learn's names (sklearn.neural_network._base.ACTIVATIONS) to ours.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "softmax": "softmax"}


def from_sklearn(model: Any, *, pixel_scale: float | None = None) -> Network:
    """A fitted ``MLPClassifier`` or ``MLPRegressor`` as a network.

    The outputs equal ``predict_proba`` for a multi-class classifier and ``predict`` for a
    regressor. A binary classifier has one logistic output, ``predict_proba[:, 1]``.
    A classifier's ``classes_`` come along: ``Network.classify`` returns them, as the
    model's ``predict`` does.

    scikit-learn reads uint8 input as the numbers 0..255 and records nothing about
    how the training data was scaled, so uint8 input is refused until ``pixel_scale``
    states it: 1.0 for a model trained on raw pixel values (what ``model.predict`` does
    with uint8 input), 1/255 for one trained on pixels / 255. Float input is used as it is.
    """
    neural_network = require("sklearn.neural_network", "sklearn")
    if not isinstance(model, (neural_network.MLPClassifier, neural_network.MLPRegressor)):
        raise UnsupportedModelError(
            f"expected a scikit-learn MLPClassifier or MLPRegressor, got {type(model).__name__}"
        )
    name = type(model).__name__
    if not hasattr(model, "coefs_"):
        raise UnsupportedModelError(f"the {name} is not fitted (it has no coefs_)")
    chain = Chain()
    last = len(model.coefs_)
    for index, (weights, bias) in enumerate(zip(model.coefs_, model.intercepts_, strict=True), start=1):
        where = f"{name} layer {index}"
        chain.dense(weights, bias, where)
        activation = model.out_activation_ if index == last else model.activation
        if activation not in _ACTIVATIONS:
            raise UnsupportedModelError(f"{where}: unsupported activation {activation!r}")
        chain.activate(_ACTIVATIONS[activation], where)
    classes = model.classes_ if isinstance(model, neural_network.MLPClassifier) else None
    network = chain.network(classes=classes)
    return network if pixel_scale is None else network.with_pixel_scale(pixel_scale)
