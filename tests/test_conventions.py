"""scikit-learn's and Keras's habits, as their users would try them on a loaded network."""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
from support import assert_close_to_reference, reference_outputs

import mlpinfer
from mlpinfer import WeightsError
from mlpinfer._shipped import load_digits_sample

os.environ.setdefault("KERAS_BACKEND", "torch")  # see test_import_keras.py

DIGITS = mlpinfer.load("digits")
# Shuffled: the sample is stored class by class, and a split must see every class.
IMAGES, LABELS = (a[np.random.default_rng(0).permutation(1000)] for a in load_digits_sample())
X = IMAGES.reshape(len(IMAGES), -1)


def fit_quietly(model, x, y):
    exceptions = pytest.importorskip("sklearn.exceptions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
        return model.fit(x, y)


@pytest.fixture(scope="module")
def string_classifier():
    """An MLPClassifier on digit names: its classes_ are strings."""
    neural_network = pytest.importorskip("sklearn.neural_network")
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    model = neural_network.MLPClassifier((32,), max_iter=30, random_state=0)
    return fit_quietly(model, X[:800] / 255.0, names[LABELS[:800]]), names


# ----------------------------------------------------------------- scikit-learn

def test_classes_round_trip_from_scikit_learn(string_classifier, tmp_path):
    from mlpinfer.importers import from_sklearn

    model, names = string_classifier
    network = from_sklearn(model, pixel_scale=1 / 255)
    np.testing.assert_array_equal(network.classes_, model.classes_)
    x = X[800:] / 255.0
    np.testing.assert_array_equal(network.classify(x), model.predict(x))
    y = names[LABELS[800:]]
    assert network.accuracy(x, y) == pytest.approx(model.score(x, y), abs=1e-12)
    assert network.score(X[800:], y) == network.accuracy(x, y)  # uint8 at the stated scale
    assert_close_to_reference(network.predict_proba(x), model.predict_proba(x), atol=1e-5)
    metrics = pytest.importorskip("sklearn.metrics")
    loss, accuracy = network.evaluate(x, y)
    assert loss == pytest.approx(metrics.log_loss(y, model.predict_proba(x)), rel=1e-5)
    assert accuracy == model.score(x, y)
    # Kept by the native format and by pickling.
    mlpinfer.save(network, tmp_path / "names.npz")
    for again in (mlpinfer.load(tmp_path / "names.npz"), pickle.loads(pickle.dumps(network))):
        np.testing.assert_array_equal(again.classes_, model.classes_)
        np.testing.assert_array_equal(again.classify(x), model.predict(x))
    with pytest.raises(TypeError, match="classes_"):
        network.accuracy(x, LABELS[800:])  # integers for a network of names


@pytest.mark.parametrize("labels", [[-1, 1], [False, True], [1.0, 2.0], ["no", "yes"]])
def test_binary_classes_of_any_kind(labels):
    neural_network = pytest.importorskip("sklearn.neural_network")
    from mlpinfer.importers import from_sklearn

    y = np.array(labels)[(LABELS[:600] >= 5).astype(int)]
    x = X[:600] / 255.0
    model = fit_quietly(neural_network.MLPClassifier((8,), max_iter=20, random_state=0), x, y)
    network = from_sklearn(model)
    assert network.n_outputs == 1
    np.testing.assert_array_equal(network.classes_, model.classes_)
    np.testing.assert_array_equal(network.classify(x), model.predict(x))
    assert network.classify(x).dtype == model.predict(x).dtype
    assert_close_to_reference(network.predict_proba(x), model.predict_proba(x), atol=1e-5)
    assert network.score(x, y) == pytest.approx(model.score(x, y), abs=1e-12)


def test_an_output_exactly_on_the_threshold_is_class_0_as_in_scikit_learn():
    # MLPClassifier.predict is LabelBinarizer.inverse_transform of the probabilities, which
    # answers the positive class only above 0.5. sigmoid(0) is exactly 0.5, and an identity
    # output of exactly 0 is the same logit.
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    x = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    params = {"W1": [[1.0], [0.0]], "b1": [0.0]}
    network = mlpinfer.Network.from_params(params, output="sigmoid", classes=["no", "yes"])
    probabilities = network.predict_proba(x)[:, 1:]
    assert probabilities[0, 0] == 0.5
    binarizer = preprocessing.LabelBinarizer().fit(["no", "yes"])
    np.testing.assert_array_equal(network.classify(x), binarizer.inverse_transform(probabilities))
    np.testing.assert_array_equal(network.classify(x), ["no", "yes", "no"])
    logits = mlpinfer.Network.from_params(params, output="identity", classes=["no", "yes"])
    np.testing.assert_array_equal(logits.classify(x), ["no", "yes", "no"])


def test_sklearn_metrics_and_scorers_on_a_loaded_network():
    metrics = pytest.importorskip("sklearn.metrics")
    from mlpinfer.estimator import NetworkClassifier

    predicted = DIGITS.classify(X)
    expected = np.argmax(reference_outputs(DIGITS, X, 1 / 255), axis=1)
    agree = np.mean(expected == predicted)
    assert agree == 1.0
    assert metrics.accuracy_score(LABELS, predicted) == DIGITS.accuracy(X, LABELS)
    report = metrics.classification_report(LABELS, predicted, output_dict=True)
    assert report["accuracy"] == DIGITS.score(X, LABELS)
    classifier = NetworkClassifier(DIGITS)
    assert metrics.get_scorer("accuracy")(classifier, X, LABELS) == DIGITS.score(X, LABELS)
    assert metrics.get_scorer("f1_macro")(classifier, X, LABELS) == pytest.approx(
        metrics.f1_score(LABELS, predicted, average="macro"))
    # The log loss scorer uses predict_proba; scikit-learn's own log loss is the oracle
    # for evaluate's loss.
    log_loss = -metrics.get_scorer("neg_log_loss")(classifier, X, LABELS)
    assert DIGITS.evaluate(X, LABELS)[0] == pytest.approx(log_loss, rel=1e-6)

    def scorer(estimator, x, y):  # a user's own scorer callable
        return np.mean(estimator.predict(x) == y)

    assert scorer(classifier, X, LABELS) == DIGITS.accuracy(X, LABELS)
    with pytest.raises(TypeError, match="does not train"):
        classifier.fit(X, LABELS)


def test_score_weighs_samples_and_n_features_in_():
    weights = np.where(LABELS == 3, 5.0, 1.0)
    correct = DIGITS.classify(X) == LABELS
    assert DIGITS.score(X, LABELS, sample_weight=weights) == pytest.approx(
        np.sum(weights * correct) / np.sum(weights))
    assert DIGITS.n_features_in_ == 784
    np.testing.assert_array_equal(DIGITS.classes_, np.arange(10))
    np.testing.assert_array_equal(mlpinfer.load("xor").classes_, [0, 1])


def test_predict_proba_refuses_outputs_that_are_not_probabilities():
    rng = np.random.default_rng(0)
    network = mlpinfer.Network.from_params({"W1": rng.normal(size=(4, 3)), "b1": np.zeros(3)},
                                           output="identity")
    with pytest.raises(TypeError, match="output is identity"):
        network.predict_proba(np.ones((2, 4), np.float32))
    xor = mlpinfer.load("xor")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    p = xor.predict(x)
    np.testing.assert_array_equal(xor.predict_proba(x), np.concatenate([1 - p, p], axis=1))


@pytest.mark.parametrize("classes", [["a", "a"], [1, "a"], [[1, 2], [3, 4]], ["a", "b", "c"]])
def test_bad_classes_are_refused(classes):
    with pytest.raises(WeightsError, match="classes"):
        mlpinfer.Network(DIGITS.layers[-1:], classes=classes)


def test_classes_is_what_was_given_and_classes__never_none():
    xor = mlpinfer.load("xor")
    assert xor.classes is None
    assert xor.classes_.tolist() == [0, 1]
    labelled = mlpinfer.Network(xor.layers, classes=["no", "yes"])
    assert labelled.classes.tolist() == ["no", "yes"]
    assert labelled.classify([[0, 1], [1, 1]]).tolist() == ["yes", "no"]


# ----------------------------------------------------------------- Keras

def test_call_and_verbose_predict_give_the_same_bits(capsys):
    expected = DIGITS.predict(X)
    np.testing.assert_array_equal(DIGITS(X), expected)
    np.testing.assert_array_equal(DIGITS.predict(X, verbose=1), expected)
    err = capsys.readouterr().err
    assert "predict [" in err
    assert "100% 1000/1000 rows" in err
    np.testing.assert_array_equal(DIGITS.predict(X, verbose=0), expected)
    assert capsys.readouterr().err == ""


def test_summary_is_a_keras_like_table(capsys):
    DIGITS.summary()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.split()[:4] == ["dense_1", "(sigmoid)", "(None,", "50)"] for line in lines)
    assert any(line.split()[-1] == "39,250" for line in lines)  # 784 * 50 + 50
    assert "Total params: 45,360" in out
    assert "uint8 input: multiplied by 0.00392157" in out
    captured = []
    DIGITS.summary(print_fn=captured.append)
    assert captured == [out.rstrip("\n")]


def test_evaluate_is_cross_entropy_and_accuracy():
    loss, accuracy = DIGITS.evaluate(X, LABELS)
    p = reference_outputs(DIGITS, X, 1 / 255)
    expected = -np.mean(np.log(np.clip(p[np.arange(len(X)), LABELS], 1e-7, 1 - 1e-7)))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert accuracy == DIGITS.accuracy(X, LABELS)
    one_hot = np.eye(10)[LABELS]
    assert DIGITS.evaluate(X, one_hot, return_dict=True) == {"loss": loss, "accuracy": accuracy}


def test_evaluate_of_logits_and_sigmoid_outputs_matches_keras_losses():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(5)
    params = {"W1": rng.normal(size=(6, 4)), "b1": rng.normal(size=4)}
    x = rng.normal(size=(50, 6)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    logits = mlpinfer.Network.from_params(params, output="identity")
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, reference_outputs(logits, x, 1.0))
    assert logits.evaluate(x, y)[0] == pytest.approx(float(theirs), rel=1e-5)
    sigmoid = mlpinfer.Network.from_params(params, output="sigmoid")
    theirs = keras.losses.BinaryCrossentropy()(np.eye(4)[y], reference_outputs(sigmoid, x, 1.0))
    assert sigmoid.evaluate(x, y)[0] == pytest.approx(float(theirs), rel=1e-5)
    one = mlpinfer.Network.from_params({"W1": params["W1"][:, :1], "b1": params["b1"][:1]},
                                       output="identity")
    yb = y % 2
    theirs = keras.losses.BinaryCrossentropy(from_logits=True)(
        yb[:, None].astype(np.float32), reference_outputs(one, x, 1.0))
    assert one.evaluate(x, yb)[0] == pytest.approx(float(theirs), rel=1e-5)
    relu = mlpinfer.Network.from_params(params, output="relu")
    with pytest.raises(ValueError, match="no cross-entropy"):
        relu.evaluate(x, y)
    with pytest.raises(ValueError, match="not among the network's classes_"):
        logits.evaluate(x, np.full(50, 7))


def test_predict_is_outputs_and_the_label_trap_is_explained():
    # Comparing outputs with labels is the trap; the docstring and README send users to
    # classify/accuracy, and predict's meaning is unchanged.
    assert DIGITS.predict(X).shape == (1000, 10)
    assert "classify" in mlpinfer.Network.predict.__doc__
    assert "(net.predict(x) == y).mean()" in mlpinfer.Network.predict.__doc__


def test_the_package_namespace_is_its_api():
    """What `dir(mlpinfer)` and tab completion show: the names of __all__ and the
    package's own modules, not the standard library's (os and sys were there)."""
    import types

    public = {name for name in dir(mlpinfer) if not name.startswith("_")}
    modules = {name for name in public if isinstance(getattr(mlpinfer, name), types.ModuleType)}
    assert all(getattr(mlpinfer, name).__name__.startswith("mlpinfer.") for name in modules), modules
    assert public - modules == set(mlpinfer.__all__) - {"__version__"}
