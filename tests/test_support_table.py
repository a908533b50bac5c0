"""The README's supported-layers table is the one the readers' own tables render."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from mlpinfer.importers import _sklearn, _support, from_sklearn

# The project's README; cibuildwheel copies it beside tests/ too (pyproject test-sources).
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_holds_the_rendered_table():
    text = README.read_text(encoding="utf-8")
    assert _support.with_table(text) == text, (
        "README.md's supported-layers table is stale: run "
        "`python -m mlpinfer.importers._support README.md`"
    )


def test_every_row_and_column_is_in_the_table():
    table = _support.render().splitlines()
    assert table[0] == "| | Keras | PyTorch | ONNX in | ONNX out | scikit-learn |"
    assert [row.split(" | ")[0].removeprefix("| ") for row in table[2:]] == list(
        _support.CONCEPTS.values())
    assert all(row.count(" | ") == 5 for row in table[2:])


def test_a_key_that_no_row_knows_is_an_error(monkeypatch):
    monkeypatch.setitem(_sklearn.SUPPORTED, "swish", "activation='swish'")
    with pytest.raises(ValueError, match=r"scikit-learn: unknown concept keys \['swish'\]"):
        _support.render()


def test_the_entry_point_rewrites_only_the_section(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# title\n\n{_support.BEGIN}\nold table\n{_support.END}\nafter\n",
                    encoding="utf-8")
    _support._main([str(path)])
    assert path.read_text(encoding="utf-8") == (
        f"# title\n\n{_support.BEGIN}\n{_support.render()}{_support.END}\nafter\n")
    path.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no section between"):
        _support._main([str(path)])
    assert path.read_text(encoding="utf-8") == "no markers\n"


@pytest.mark.parametrize("reader", ["keras", "torch", "onnx"])
def test_each_framework_column_spells_every_kind_of_layer_its_reader_dispatches_on(reader):
    module = importlib.import_module(f"mlpinfer.formats.{reader}")
    assert set(module.SUPPORTED) <= set(_support.CONCEPTS)
    assert {"dense", "batch_norm", "layer_norm", "no_op", "relu", "gelu", "silu", "elu",
            "leaky_relu", "selu", "softplus", "hard_sigmoid", "log_softmax"} <= set(module.SUPPORTED)


@pytest.mark.parametrize("key", sorted(set(_sklearn.SUPPORTED) & set(_support.CONCEPTS)
                                       - {"dense", "feature_scaling", "no_op", "softmax"}))
def test_what_the_scikit_learn_column_claims_imports(key):
    """Each hidden activation the column lists: an MLP with it imports as that activation."""
    neural_network = pytest.importorskip("sklearn.neural_network")
    exceptions = pytest.importorskip("sklearn.exceptions")
    theirs = _sklearn.SUPPORTED[key].removeprefix("activation=").strip("'")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
        model = neural_network.MLPClassifier((5,), activation=theirs, max_iter=3).fit(
            x, rng.integers(0, 3, 50))
    network = from_sklearn(model)
    assert network.activations == (key, "softmax")
    np.testing.assert_allclose(network.predict(x), model.predict_proba(x), atol=1e-5)
