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


# ---------------------------------------------------------------- pipelines

pipeline = pytest.importorskip("sklearn.pipeline")
preprocessing = pytest.importorskip("sklearn.preprocessing")
datasets = pytest.importorskip("sklearn.datasets")

SCALINGS = {
    "standard": lambda: [preprocessing.StandardScaler()],
    "standard without mean": lambda: [preprocessing.StandardScaler(with_mean=False)],
    "standard without std": lambda: [preprocessing.StandardScaler(with_std=False)],
    "standard doing nothing": lambda: [preprocessing.StandardScaler(with_mean=False,
                                                                    with_std=False)],
    "min-max": lambda: [preprocessing.MinMaxScaler()],
    "min-max to (-1, 2)": lambda: [preprocessing.MinMaxScaler(feature_range=(-1, 2))],
    "max-abs": lambda: [preprocessing.MaxAbsScaler()],
    "three, passthrough and None": lambda: [
        preprocessing.MinMaxScaler(), "passthrough", preprocessing.StandardScaler(), None,
        preprocessing.MaxAbsScaler()],
    "nested pipeline": lambda: [pipeline.make_pipeline(preprocessing.MaxAbsScaler(),
                                                       preprocessing.StandardScaler())],
    "none": list,
}


def piped(scalers: list, model) -> object:
    return pipeline.Pipeline([(f"step{i}", step) for i, step in enumerate([*scalers, model])])


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's own 8x8 digits (1,797 images, values 0..16), shipped with it."""
    x, y = datasets.load_digits(return_X_y=True)
    return x, y


@pytest.mark.parametrize("scaling", sorted(SCALINGS))
def test_classifier_pipeline_matches_on_digits(digits, scaling):
    x, y = digits
    labels = y * 7 + 3  # integer labels that are not 0..9
    model = fit(piped(SCALINGS[scaling](), neural_network.MLPClassifier(
        (40,), max_iter=40, random_state=0)), x[:1000], labels[:1000])
    network = from_sklearn(model)
    np.testing.assert_array_equal(network.classes_, np.arange(10) * 7 + 3)
    for rows in (slice(0, 1), slice(10, 17), slice(797, 1797)):
        assert_same_answers(network.predict(x[rows]), model.predict_proba(x[rows]))
        np.testing.assert_array_equal(network.classify(x[rows]), model.predict(x[rows]))
    assert_not_degenerate(network.predict(x[1000:]), y[1000:], 0.8)


@pytest.mark.parametrize("scaling", sorted(SCALINGS))
def test_regressor_pipeline_matches_on_digits(digits, scaling):
    x, y = digits
    targets = np.stack([y * 100.0, np.sin(y)], axis=1)
    model = fit(piped(SCALINGS[scaling](), neural_network.MLPRegressor(
        hidden_layer_sizes=(40, 20), max_iter=40, random_state=0)), x[:1000], targets[:1000])
    network = from_sklearn(model)
    assert network.activations == ("relu", "relu", "identity")
    for rows in (slice(0, 1), slice(10, 17), slice(797, 1797)):
        assert_same_answers(network.predict(x[rows]), model.predict(x[rows]))


def features_far_from_their_scale(rows: int, rng) -> np.ndarray:
    """What scalers are for: features with offsets and spreads of every size."""
    spreads = rng.choice([0.01, 1.0, 30.0, 400.0], 9)
    # Up to 20 spreads from 0 here; far_from_zero below goes to 1000 and beyond.
    return (rng.normal(0, 1, (rows, 9)) + rng.choice([0.0, -3.0, 5.0, 20.0], 9)) * spreads


@pytest.mark.parametrize("scaling", ["standard", "min-max to (-1, 2)", "max-abs",
                                     "three, passthrough and None"])
def test_binary_string_labels_through_make_pipeline(scaling):
    rng = np.random.default_rng(5)
    x = features_far_from_their_scale(1000, rng)
    names = np.where((x[:, 0] - x[:, 0].mean()) * (x[:, 3] - x[:, 3].mean()) > 0, "yes", "no")
    model = fit(pipeline.make_pipeline(*SCALINGS[scaling](), neural_network.MLPClassifier(
        (16, 8), activation="tanh", max_iter=60, random_state=0)), x, names)
    network = from_sklearn(model)
    assert network.n_outputs == 1
    np.testing.assert_array_equal(network.classes_, ["no", "yes"])
    for rows in (1, 7, 1000):
        assert_same_answers(network.predict(x[:rows])[:, 0], model.predict_proba(x[:rows])[:, 1])
        np.testing.assert_array_equal(network.classify(x[:rows]), model.predict(x[:rows]))
    assert 0.2 < np.mean(network.classify(x) == "yes") < 0.8


def test_multilabel_pipeline():
    rng = np.random.default_rng(6)
    x = features_far_from_their_scale(1000, rng)
    centred = (x - x.mean(axis=0)) / x.std(axis=0)
    targets = np.stack([centred[:, 0] > 0, centred[:, 1] + centred[:, 2] > 0.5,
                        centred[:, 4] < -0.3], axis=1).astype(int)
    model = fit(piped([preprocessing.StandardScaler()], neural_network.MLPClassifier(
        (24,), activation="logistic", max_iter=80, random_state=0)), x, targets)
    network = from_sklearn(model)
    assert network.activations == ("sigmoid", "sigmoid")
    for rows in (1, 7, 1000):
        ours = network.predict(x[:rows])
        assert_same_answers(ours, model.predict_proba(x[:rows]))
        np.testing.assert_array_equal(ours > 0.5, model.predict(x[:rows]).astype(bool))


def test_pipeline_uint8_pixels_with_the_stated_scale(mnist_test, mnist):
    x, labels = mnist
    model = fit(pipeline.make_pipeline(preprocessing.StandardScaler(), neural_network.MLPClassifier(
        (32,), max_iter=5, random_state=0)), x[:TRAIN], labels[:TRAIN])
    network = from_sklearn(model, pixel_scale=1 / 255)
    assert_same_answers(network.predict(mnist_test[0]), model.predict_proba(x))
    assert_not_degenerate(network.predict(x), labels, 0.8)


SMALL = np.arange(12.0).reshape(4, 3)


def _mlp():
    return fit(neural_network.MLPClassifier((3,), max_iter=2, random_state=0), SMALL, [0, 1, 0, 1])


def _subclass_of_standard_scaler():
    return type("MyScaler", (preprocessing.StandardScaler,), {})().fit(SMALL)


REFUSED = {
    "PCA": (lambda: [preprocessing.StandardScaler().fit(SMALL),
                     pytest.importorskip("sklearn.decomposition").PCA(3).fit(SMALL), _mlp()],
            (r"pipeline\[1\] \('step1'\) \(PCA\): not supported before the MLP; supported: a "
            r"Pipeline of StandardScaler, MinMaxScaler, MaxAbsScaler \(clip=False\) or "
            r"'passthrough' steps, ending in an MLPClassifier or MLPRegressor")),
    "FunctionTransformer": (
        lambda: [preprocessing.FunctionTransformer(np.log1p).fit(SMALL), _mlp()],
        r"pipeline\[0\] \('step0'\) \(FunctionTransformer\): not supported"),
    "ColumnTransformer": (
        lambda: [pytest.importorskip("sklearn.compose").ColumnTransformer(
            [("s", preprocessing.StandardScaler(), [0, 1, 2])]).fit(SMALL), _mlp()],
        r"pipeline\[0\] \('step0'\) \(ColumnTransformer\): not supported"),
    "clip": (lambda: [preprocessing.MinMaxScaler(clip=True).fit(SMALL), _mlp()],
             r"pipeline\[0\] \('step0'\) \(MinMaxScaler\): clip=True clips to feature_range"),
    "scaler after the MLP": (
        lambda: [_mlp(), preprocessing.StandardScaler().fit(SMALL)],
        (r"pipeline\[1\] \('step1'\) \(StandardScaler\) after the MLP at pipeline\[0\] "
        r"\('step0'\): the last step must be the MLP")),
    "passthrough last": (lambda: [preprocessing.StandardScaler().fit(SMALL), "passthrough"],
                         r"pipeline\[1\] \('step1'\) \('passthrough'\): the last step must"),
    "two MLPs": (lambda: [_mlp(), _mlp()],
                 r"pipeline\[0\] \('step0'\) \(MLPClassifier\): not supported"),
    "a subclass": (lambda: [_subclass_of_standard_scaler(), _mlp()],
                   r"pipeline\[0\] \('step0'\) \(MyScaler\): not supported"),
    "nested Normalizer": (
        lambda: [pipeline.make_pipeline(preprocessing.MaxAbsScaler(),
                                        preprocessing.Normalizer()).fit(SMALL), _mlp()],
        r"pipeline\[0\]\[1\] \('normalizer'\) \(Normalizer\): not supported"),
    "MLP not fitted": (lambda: [preprocessing.StandardScaler().fit(SMALL),
                                neural_network.MLPClassifier()],
                       "the MLPClassifier is not fitted"),
    "scaler not fitted": (lambda: [preprocessing.StandardScaler(), _mlp()],
                          r"pipeline\[0\] \('step0'\) \(StandardScaler\): not fitted"),
    "features differ": (
        lambda: [preprocessing.StandardScaler().fit(np.arange(20.0).reshape(4, 5)), _mlp()],
        (r"pipeline\[0\] \('step0'\) \(StandardScaler\): 5 features, but the dense layer "
        r"it folds into \(pipeline\[1\] \('step1'\) MLPClassifier layer 1\) has 3 inputs")),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_pipeline_refusals_name_the_step(case):
    steps, message = REFUSED[case]
    made = steps()
    with pytest.raises(UnsupportedModelError, match=message):
        from_sklearn(piped(made[:-1], made[-1]))


def test_pipeline_of_scalers_only_is_refused():
    model = pipeline.make_pipeline(preprocessing.StandardScaler().fit(np.ones((3, 2))))
    with pytest.raises(UnsupportedModelError, match=r"pipeline\[0\] \('standardscaler'\) "
                       r"\(StandardScaler\): the last step must be the MLP; supported"):
        from_sklearn(model)


def test_a_feature_1e5_spreads_from_zero_matches():
    """A feature at 1000 +- 0.01 (1e5 spreads from 0): the pipeline subtracts the mean in
    float64, and so does the network's input transform. Folded into float32 weights, the
    standardisation would cancel (about 1e-4 at the output), and was refused before the
    transform existed."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (1000, 9)) * 0.01 + 1000.0
    model = fit(pipeline.make_pipeline(preprocessing.StandardScaler(), neural_network.MLPClassifier(
        (16,), max_iter=20, random_state=0)), x, x[:, 0] > 1000.0)
    network = from_sklearn(model)
    assert network.input_transform is not None
    assert_matches_at_batch_sizes(network, model, x)


def assert_matches_at_batch_sizes(network, model, x) -> float:
    """The network agrees with the pipeline's ``predict_proba`` and ``predict`` at batch
    sizes 1, 7 and 1,000; returns the largest difference on the 1,000 rows."""
    for rows in (1, 7, 1000):
        assert_same_answers(network.predict(x[:rows])[:, 0], model.predict_proba(x[:rows])[:, 1])
        np.testing.assert_array_equal(network.classify(x[:rows]), model.predict(x[:rows]))
    return float(np.max(np.abs(network.predict(x)[:, 0] - model.predict_proba(x)[:, 1])))


def far_from_zero(spreads: float, spread: float = 1.0):
    """Nine features, each its mean ``spreads`` standard deviations (of ``spread``) from 0,
    standardised."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, (1000, 9))
    model = pipeline.make_pipeline(preprocessing.StandardScaler(), neural_network.MLPClassifier(
        (16, 8), activation="tanh", max_iter=60, random_state=3))
    x = (z + spreads) * spread
    return fit(model, x, z[:, 0] * z[:, 1] > 0), x


@pytest.mark.parametrize(("spreads", "spread"), [(50, 1.0), (150, 1.0), (200, 10.0), (1000, 1.0)])
def test_features_far_from_zero_match(spreads, spread):
    """Features ``spreads`` spreads from 0; (200, 10.0) is a year near 2000 with std 10.
    Largest difference from predict_proba on the 1,000 rows (Sapphire Rapids Xeon), with
    the input transform: 1.1e-7 in all four; folded into the float32 weights (as before
    the transform; 150 spreads and beyond were then refused): 3.3e-6, 9.8e-6, 1.1e-5, 7.9e-5."""
    model, x = far_from_zero(spreads, spread)
    network = from_sklearn(model)
    error = assert_matches_at_batch_sizes(network, model, x)
    assert error < 1e-6, error


@pytest.mark.parametrize("scaling", ["min-max", "min-max to (-1, 2)", "three, passthrough and None"])
def test_other_scalers_on_years_match(scaling):
    """Years near 2000 with spreads near 10 through each scaler chain: one composed input
    transform, matching predict_proba and predict at batch sizes 1, 7 and 1,000."""
    rng = np.random.default_rng(8)
    x = 2000 + rng.normal(0, 1, (1000, 9)) * rng.uniform(5, 15, 9)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    model = fit(pipeline.make_pipeline(*SCALINGS[scaling](), neural_network.MLPClassifier(
        (16, 8), activation="tanh", max_iter=60, random_state=3)), x, z[:, 0] * z[:, 1] > 0)
    network = from_sklearn(model)
    assert network.input_transform is not None
    error = assert_matches_at_batch_sizes(network, model, x)
    assert error < 1e-6, error


# ---------------------------------------------------------------- multi-label classifiers

@pytest.fixture(scope="module")
def multilabel():
    """An MLPClassifier fitted on an indicator matrix (5 labels, any number per sample),
    and its 1,000 samples and targets."""
    x, targets = datasets.make_multilabel_classification(
        n_samples=1000, n_features=20, n_classes=5, random_state=0)
    model = fit(neural_network.MLPClassifier((32,), max_iter=60, random_state=0), x, targets)
    return model, x, targets


@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_a_multilabel_classifier_answers_as_sklearns_predict(multilabel, rows):
    from mlpinfer.estimator import NetworkClassifier

    model, x, targets = multilabel
    x = x[:rows]
    expected = model.predict(x)
    probabilities = model.predict_proba(x)
    # float32 against float64: no probability this close to 0.5 may flip the comparison.
    assert np.min(np.abs(probabilities - 0.5)) > 1e-4, "the data holds a near tie"
    assert expected.shape == (rows, 5)
    assert 0 < expected.mean() < 1
    network = from_sklearn(model)
    assert network.multilabel
    assert_same_answers(network.predict(x), probabilities)
    estimator = NetworkClassifier(network)
    answer = estimator.predict(x)
    assert answer.dtype == expected.dtype
    np.testing.assert_array_equal(answer, expected)
    assert estimator.score(x, targets[:rows]) == model.score(x, targets[:rows])
    np.testing.assert_array_equal(estimator.predict_proba(x), network.predict(x))


def test_a_multilabel_classifier_has_no_single_label_to_classify(multilabel):
    model, x, targets = multilabel
    network = from_sklearn(model)
    refused = r"multi-label classifier \(5 sigmoid outputs.*\(net\.predict\(x\) > 0\.5\)\.astype\(int\)"
    for call in (lambda: network.classify(x[:7]), lambda: network.classify(x[0]),
                 lambda: network.accuracy(x, targets), lambda: network.score(x, targets),
                 lambda: network.evaluate(x, targets), lambda: network.true_labels(targets)):
        with pytest.raises(TypeError, match=refused):
            call()


def test_only_multilabel_classifiers_are_marked_multilabel(digits):
    x, labels = digits
    multiclass = fit(neural_network.MLPClassifier((8,), max_iter=5, random_state=0), x, labels)
    binary = fit(neural_network.MLPClassifier((8,), max_iter=5, random_state=0), x, labels > 4)
    regressor = fit(neural_network.MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0), x,
                    np.stack([labels, -labels], axis=1))
    for model in (multiclass, binary, regressor):
        network = from_sklearn(model)
        assert not network.multilabel
        assert "multilabel" not in repr(network)


def test_a_multilabel_network_keeps_it_through_npz_and_pickle_only(multilabel, tmp_path):
    import pickle

    import mlpinfer
    from mlpinfer._cli import main

    model, x, _ = multilabel
    network = from_sklearn(model)
    mlpinfer.save(network, tmp_path / "net.npz")
    for copy in (mlpinfer.load(tmp_path / "net.npz"), pickle.loads(pickle.dumps(network)),
                 network.with_pixel_scale(1.0)):
        assert copy.multilabel
        np.testing.assert_array_equal(copy.predict(x), network.predict(x))
        with pytest.raises(TypeError, match="multi-label"):
            copy.classify(x)
    for suffix in (".onnx", ".pt", ".keras", ".pkl"):
        with pytest.raises(mlpinfer.WeightsError, match=f"net{suffix}: .* does not record that "
                           "a network is a multi-label classifier; write .npz"):
            mlpinfer.save(network, tmp_path / f"net{suffix}")
        assert not (tmp_path / f"net{suffix}").exists()
    # The command gives one label per image: it says why it cannot, in one line.
    np.save(tmp_path / "x.npy", x[:3])
    assert main(["predict", "--weights", str(tmp_path / "net.npz"), str(tmp_path / "x.npy")]) == 2


def test_multilabel_needs_two_or_more_sigmoid_outputs():
    import mlpinfer

    rng = np.random.default_rng(0)

    def network(outputs, activation, **options):
        layer = mlpinfer.Layer(rng.standard_normal((3, outputs)), np.zeros(outputs), activation)
        return mlpinfer.Network([layer], **options)

    assert network(2, "sigmoid", multilabel=True).multilabel
    for outputs, activation in ((2, "softmax"), (1, "sigmoid"), (3, "relu")):
        with pytest.raises(mlpinfer.WeightsError, match="two or more sigmoid outputs, one per "
                           f"label; this network's output is {outputs} {activation}"):
            network(outputs, activation, multilabel=True)
    with pytest.raises(TypeError, match="multilabel must be True or False, got 'yes'"):
        network(2, "sigmoid", multilabel="yes")
