"""The mlpinfer command as a user runs it."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from support import SHARED_DATA, png_bytes, shared_file

import mlpinfer
from mlpinfer import reference
from mlpinfer._cli import main
from mlpinfer._png import read_png_gray
from mlpinfer._shipped import load_digits_sample


def reference_labels(network, images):
    """Labels by the NumPy reference, independent of the engine under test."""
    layers = [(layer.weights, layer.bias, layer.activation) for layer in network.layers]
    return np.argmax(reference.forward(layers, images.reshape(len(images), -1) / 255.0), axis=1)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_with_no_arguments_runs_offline_on_the_sample(capsys):
    code, out, _ = run(capsys, "evaluate")
    images, labels = load_digits_sample()
    expected = np.mean(reference_labels(mlpinfer.load("digits"), images) == labels)
    assert code == 0
    assert f"accuracy  {expected:.4f}" in out
    assert "confusion matrix" in out and "per-class accuracy" in out and "images/s" in out


def test_evaluate_json_is_consistent(capsys):
    code, out, _ = run(capsys, "evaluate", "--json", "--batch-size", "7")
    report = json.loads(out)
    confusion = np.array(report["confusion_matrix"])
    assert code == 0
    assert confusion.sum() == report["images"] == 1000
    assert np.trace(confusion) == report["correct"]
    assert report["accuracy"] == report["correct"] / 1000
    np.testing.assert_allclose(report["per_class_accuracy"], np.diag(confusion) / confusion.sum(1))


def test_evaluate_textbook_weights_on_a_directory(capsys):
    weights = shared_file("sample_weight.pkl")
    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    code, out, _ = run(capsys, "evaluate", "--weights", str(weights),
                       "--data", str(SHARED_DATA / "mnist"), "--json")
    assert code == 0
    assert json.loads(out)["accuracy"] == 0.9352


def test_evaluate_draws_the_errors(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "errors.png"
    code, out, _ = run(capsys, "evaluate", "--errors", str(target))
    assert code == 0 and "errors.png" in out
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["errors.png"]


def test_evaluate_errors_without_matplotlib_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "evaluate", "--errors", str(tmp_path / "e.png"))
    assert code == 2
    assert "needs matplotlib" in err and "Traceback" not in err


def test_predict_npy_idx_and_png(capsys, tmp_path):
    images, _ = load_digits_sample()
    chosen = images[[0, 150, 999]]
    np.save(tmp_path / "three.npy", chosen)
    header = struct.pack(">IIII", 2051, 3, 28, 28)
    (tmp_path / "three.idx.gz").write_bytes(gzip.compress(header + chosen.tobytes()))
    (tmp_path / "one.png").write_bytes(png_bytes(chosen[1], filter_type=1))
    code, out, _ = run(capsys, "predict", "--json", str(tmp_path / "three.npy"),
                       str(tmp_path / "three.idx.gz"), str(tmp_path / "one.png"))
    results = json.loads(out)
    expected = reference_labels(mlpinfer.load("digits"), chosen)
    assert code == 0
    assert [r["label"] for r in results] == [*expected, *expected, expected[1]]
    for result in results:
        probabilities = [p for _, p in result["top3"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert result["top3"][0][0] == result["label"]


@pytest.mark.parametrize(("colour_type", "filter_type"), [(0, 0), (0, 1), (0, 2), (2, 1)])
def test_png_reader_round_trips(tmp_path, colour_type, filter_type):
    image = np.random.default_rng(colour_type + filter_type).integers(0, 256, (28, 28), np.uint8)
    (tmp_path / "x.png").write_bytes(png_bytes(image, colour=colour_type, filter_type=filter_type))
    np.testing.assert_array_equal(read_png_gray(tmp_path / "x.png"), image)


def test_png_written_by_matplotlib(tmp_path):
    pyplot = pytest.importorskip("matplotlib.pyplot")
    image = np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)
    pyplot.imsave(tmp_path / "m.png", image, cmap="gray", vmin=0, vmax=255)
    assert np.abs(read_png_gray(tmp_path / "m.png").astype(int) - image).max() <= 1


def test_info_reports_layers_parameters_and_checksum(capsys):
    weights = shared_file("sample_weight.pkl")
    code, out, _ = run(capsys, "info", str(weights), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert report["parameters"] == 784 * 50 + 50 + 50 * 100 + 100 + 100 * 10 + 10
    assert [layer["activation"] for layer in report["layers"]] == ["sigmoid", "sigmoid", "softmax"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--weights", "no/such/file.pkl"], "neither an existing file nor a shipped"),
        (["evaluate", "--data", "nowhere"], "--data must be sample, mnist, fashion-mnist"),
        (["evaluate", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["predict", "missing.npy"], "No such file or directory: missing.npy"),
        (["info", "resnet"], "neither an existing file nor a shipped network"),
    ],
)
def test_user_errors_are_one_line_without_traceback(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.startswith("mlpinfer: error: ") and "Traceback" not in err


def test_predict_refuses_a_wrong_image_size(capsys, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 27, 27), np.uint8))
    code, _, err = run(capsys, "predict", str(tmp_path / "bad.npy"))
    assert code == 2 and "expected images of 784 values each" in err


def test_bench_runs_and_reports_every_engine_it_has(capsys):
    code, out, _ = run(capsys, "bench", "--json", "--batch-sizes", "1,64", "--threads", "1",
                       "--repeats", "1", "--min-seconds", "0", "--images", "256",
                       "--engines", "mlpinfer,mlpinfer-uint8,numpy")
    report = json.loads(out)
    assert code == 0
    assert {(r["engine"], r["batch_size"]) for r in report["results"]} == {
        (e, b) for e in ("mlpinfer", "mlpinfer-uint8", "numpy") for b in (1, 64)}
    assert report["mlpinfer_blas"].startswith(("scipy-openblas32", "system"))
    assert report["skipped_engines"] == {}
    assert "OPENBLAS_CORETYPE" in report["environment"]
    for row in report["results"]:
        assert row["images_per_second"] > 0 and row["vs_numpy"] > 0
    [contention] = report["beside_busy_numpy"]
    assert contention["images_per_second_beside_numpy"] > 0
    assert 0.5 < report["zero_fraction"] < 1  # digits are mostly background
    assert {row["input"] for row in report["efficiency"]} == {"dense", "images"}
    for efficiency in report["efficiency"]:
        assert efficiency["batch_size"] == 64 and efficiency["fraction_of_sgemm"] > 0


def test_bench_times_a_network_that_scales_its_own_input(capsys, tmp_path):
    rng = np.random.default_rng(0)
    scaled = mlpinfer.Network.from_params(
        {"W1": rng.standard_normal((784, 10)), "b1": rng.standard_normal(10)},
        output="softmax", input_scale=1 / 255)
    mlpinfer.save(scaled, tmp_path / "scaled.npz")
    code, out, _ = run(capsys, "bench", "--json", "--weights", str(tmp_path / "scaled.npz"),
                       "--batch-sizes", "32", "--threads", "1", "--repeats", "1",
                       "--min-seconds", "0", "--images", "128",
                       "--engines", "mlpinfer,mlpinfer-uint8,numpy,torch,onnxruntime")
    report = json.loads(out)
    assert code == 0
    assert {e: w for e, w in report["skipped_engines"].items() if w != "not installed"} == {}


def test_bench_draws_its_chart(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, _ = run(capsys, "bench", "--batch-sizes", "1,16", "--threads", "1", "--repeats",
                       "1", "--min-seconds", "0", "--images", "64", "--engines",
                       "mlpinfer,numpy", "--chart", str(tmp_path / "chart.png"))
    assert code == 0 and "images/s" in out
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("option", [["--batch-sizes", "0"], ["--threads", "1,-2"],
                                    ["--images", "0"]])
def test_bench_refuses_bad_numbers_in_one_line(capsys, option):
    code, _, err = run(capsys, "bench", *option)
    assert code == 2 and "positive integers" in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "mlpinfer", "info", "xor"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Network(2 -> 2 sigmoid -> 1 sigmoid)" in result.stdout


def test_convert_then_evaluate_the_converted_file(capsys, tmp_path):
    weights = shared_file("sample_weight.pkl")
    code, out, _ = run(capsys, "convert", str(weights), str(tmp_path / "textbook.npz"))
    assert code == 0 and "Network(784 -> 50 sigmoid -> 100 sigmoid -> 10 softmax)" in out
    original = mlpinfer.load(weights)
    converted = mlpinfer.load(tmp_path / "textbook.npz")
    for mine, theirs in zip(original.layers, converted.layers, strict=True):
        assert mine.weights.tobytes() == theirs.weights.tobytes()


def test_convert_to_an_unknown_suffix_is_a_user_error(capsys, tmp_path):
    weights = shared_file("sample_weight.pkl")
    code, _, err = run(capsys, "convert", str(weights), str(tmp_path / "net.h5"))
    assert code == 2 and "cannot tell the format to write" in err and "Traceback" not in err
