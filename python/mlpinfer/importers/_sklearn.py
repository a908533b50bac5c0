"""scikit-learn ``MLPClassifier`` and ``MLPRegressor``."""

from __future__ import annotations

from typing import Any

from .._network import Network
from ..formats._chain import Chain, UnsupportedModelError, require

__all__ = ["from_sklearn"]

# scikit-learn's names (sklearn.neural_network._base.ACTIVATIONS) to ours.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "softmax": "softmax"}


def from_sklearn(model: Any) -> Network:
    """A fitted ``MLPClassifier`` or ``MLPRegressor`` as a network.

    The outputs equal ``predict_proba`` for a multi-class classifier and ``predict`` for a
    regressor. A binary classifier has one logistic output, ``predict_proba[:, 1]``, and
    ``Network.classify`` answers 0 or 1; labels are indices into ``model.classes_``.
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
    return chain.network()
