"""scikit-learn MLPClassifier / MLPRegressor -> Network, checked against scikit-learn itself."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from framework_support import assert_not_degenerate, assert_same_answers

from mlpinfer.importers import UnsupportedModelError, from_sklearn

neural_network = pytest.importorskip("sklearn.neural_network")
exceptions = pytest.importorskip("sklearn.exceptions")

TRAIN = 3000  # images of the test set used for a brief fit: enough for a meaningful argmax


def fit(model, x, y):
    with warnings.catch_warnings():
        # A few epochs on purpose: the comparison needs a trained net, not a converged one.
        warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
        return model.fit(x, y)


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_classifier_matches_predict_proba_on_mnist(mnist, activation):
    x, labels = mnist
    model = fit(
        neural_network.MLPClassifier((64,), activation=activation, max_iter=8, random_state=0),
        x[:TRAIN], labels[:TRAIN],
    )
    network = from_sklearn(model)
    assert network.activations == ({"logistic": "sigmoid"}.get(activation, activation), "softmax")
    ours = network.predict(x)
    assert_same_answers(ours, model.predict_proba(x))
    np.testing.assert_array_equal(network.classify(x), model.predict(x))
    assert_not_degenerate(ours, labels, 0.8)


def test_two_hidden_layers_and_uint8_pixels(mnist_test, mnist):
    x, labels = mnist
    model = fit(
        neural_network.MLPClassifier((50, 100), activation="logistic", max_iter=4,
                                     random_state=1),
        x[:TRAIN], labels[:TRAIN],
    )
    network = from_sklearn(model, pixel_scale=1 / 255)
    assert network.activations == ("sigmoid", "sigmoid", "softmax")
    # uint8 pixels are scaled by the stated 1/255 in the engine, as the float input was here.
    assert_same_answers(network.predict(mnist_test[0]), model.predict_proba(x))


def test_binary_classifier_has_one_logistic_output(mnist):
    x, labels = mnist
    keep = np.flatnonzero((labels == 3) | (labels == 8))
    names = np.where(labels[keep] == 3, "three", "eight")
    train = keep[:1000]
    model = fit(neural_network.MLPClassifier((16,), max_iter=10, random_state=0),
                x[train], names[:1000])
    assert model.out_activation_ == "logistic"
    network = from_sklearn(model)
    assert network.n_outputs == 1
    assert network.activations[-1] == "sigmoid"
    assert_same_answers(network.predict(x[keep])[:, 0], model.predict_proba(x[keep])[:, 1])
    np.testing.assert_array_equal(network.classify(x[keep]), model.predict(x[keep]))
    np.testing.assert_array_equal(network.classes_, ["eight", "three"])


def test_multilabel_classifier_has_logistic_outputs(mnist):
    x, labels = mnist
    targets = np.stack([labels % 2 == 0, labels >= 5], axis=1).astype(int)
    model = fit(neural_network.MLPClassifier((32,), max_iter=5, random_state=0),
                x[:TRAIN], targets[:TRAIN])
    network = from_sklearn(model)
    assert network.activations == ("relu", "sigmoid")
    assert_same_answers(network.predict(x), model.predict_proba(x))


def test_regressor_matches_predict(mnist):
    x, labels = mnist
    model = fit(neural_network.MLPRegressor(hidden_layer_sizes=(32, 16), activation="tanh", max_iter=5,
                                            random_state=0),
                x[:TRAIN], labels[:TRAIN].astype(np.float64))
    network = from_sklearn(model)
    assert network.activations == ("tanh", "tanh", "identity")
    assert_same_answers(network.predict(x)[:, 0], model.predict(x))


def test_refuses_what_is_not_a_fitted_mlp():
    with pytest.raises(UnsupportedModelError, match="not fitted"):
        from_sklearn(neural_network.MLPClassifier())
    linear_model = pytest.importorskip("sklearn.linear_model")
    with pytest.raises(UnsupportedModelError, match="got LogisticRegression"):
        from_sklearn(linear_model.LogisticRegression())


def test_refuses_the_poisson_exp_output():
    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    model = fit(neural_network.MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), max_iter=5,
                                            random_state=0), x, x[:, 0] + 1)
    assert model.out_activation_ == "exp"
    with pytest.raises(UnsupportedModelError, match="layer 2: unsupported activation 'exp'"):
        from_sklearn(model)
