"""A loaded network as a scikit-learn classifier, for code that calls ``predict`` for labels.

`Network.predict` returns outputs, as Keras's ``predict`` does; scikit-learn's scorers,
``cross_validate``-style loops and metrics call ``estimator.predict`` for labels. Wrapped
in `NetworkClassifier`, a network answers them with `Network.classify`, or, for a
multi-label classifier (`Network.multilabel`), with scikit-learn's 0/1 indicator matrix.
It is already trained: ``fit`` refuses, and scikit-learn sees it as fitted. Needs
``scikit-learn`` (``pip install 'mlpinfer[sklearn]'``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._network import Network
from .formats._chain import require

_base = require("sklearn.base", "sklearn")

__all__ = ["NetworkClassifier"]


class NetworkClassifier(_base.ClassifierMixin, _base.BaseEstimator):
    """``network`` with scikit-learn's classifier methods: ``predict`` gives labels."""

    def __init__(self, network: Network) -> None:
        self.network = network

    def fit(self, x: Any, y: Any = None, **fit_params: Any) -> NetworkClassifier:
        raise TypeError(
            "mlpinfer runs trained networks and does not train them; NetworkClassifier is "
            "already fitted (use it where scikit-learn only predicts or scores)"
        )

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> np.ndarray:
        return self.network.classes_

    @property
    def n_features_in_(self) -> int:
        return self.network.n_features_in_

    def predict(self, x: npt.ArrayLike) -> np.ndarray:
        """Labels, as the classifier's own ``predict``: `Network.classify`, or for a
        multi-label classifier the int64 matrix of the outputs above 0.5 (what
        scikit-learn's ``MLPClassifier.predict`` gives when fitted on an indicator matrix;
        ``score`` is then the fraction of samples whose labels all match, as there)."""
        if self.network.multilabel:
            return (np.atleast_2d(self.network.predict(x)) > 0.5).astype(np.int64)
        return self.network.classify(x)

    def predict_proba(self, x: npt.ArrayLike) -> np.ndarray:
        return self.network.predict_proba(x)
