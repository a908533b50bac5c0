"""The mlpinfer command as a user runs it."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
from framework_support import write_foreign_onnx
from support import SHARED_DATA, png_bytes, png_chunk, shared_file

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
    assert "confusion matrix" in out
    assert "per-class accuracy" in out
    assert "images/s" in out


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
    assert code == 0
    assert "errors.png" in out
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["errors.png"]


def test_evaluate_errors_without_matplotlib_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "evaluate", "--errors", str(tmp_path / "e.png"))
    assert code == 2
    assert "needs matplotlib" in err
    assert "Traceback" not in err


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


class CountingEngine:
    """A network's engine that counts the calls running the network."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = 0

    def predict(self, *args):
        self.calls += 1
        return self.engine.predict(*args)

    def forward(self, *args):
        self.calls += 1
        return self.engine.forward(*args)


def test_predict_runs_the_network_once_per_file(capsys, tmp_path, monkeypatch):
    engines = []

    def load_with_a_spy(*args, **kwargs):
        network = mlpinfer.load(*args, **kwargs)
        engines.append(CountingEngine(network._engine))
        network._engine = engines[-1]
        return network

    monkeypatch.setattr("mlpinfer._cli.load", load_with_a_spy)
    images, _ = load_digits_sample()
    files = [tmp_path / "one.npy", tmp_path / "seven.npy", tmp_path / "one.png"]
    np.save(files[0], images[:1])
    np.save(files[1], images[1:8])
    files[2].write_bytes(png_bytes(images[8]))
    code, out, _ = run(capsys, "predict", "--json", *map(str, files))
    assert code == 0
    assert [engine.calls for engine in engines] == [len(files)]
    network = mlpinfer.load("digits")
    probabilities = network.predict(images[:9])
    results = json.loads(out)
    assert [r["label"] for r in results] == list(reference_labels(network, images[:9]))
    for result, expected in zip(results, probabilities, strict=True):
        top = np.argsort(expected)[::-1][:3]
        assert result["top3"] == [[int(k), float(expected[k])] for k in top]


def test_predict_pairs_a_single_sigmoid_output_with_its_class(capsys, tmp_path):
    # The xor network's one output is the probability of class 1.
    points = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    np.save(tmp_path / "points.npy", points)
    code, out, _ = run(capsys, "predict", "--json", "--weights", "xor", str(tmp_path / "points.npy"))
    network = mlpinfer.load("xor")
    layers = [(layer.weights, layer.bias, layer.activation) for layer in network.layers]
    p = reference.forward(layers, points)[:, 0]
    assert code == 0
    results = json.loads(out)
    assert [r["label"] for r in results] == [0, 1, 1, 0]
    for result, p1 in zip(results, p, strict=True):
        expected = sorted([[0, 1 - p1], [1, p1]], key=lambda pair: -pair[1])
        assert [k for k, _ in result["top3"]] == [k for k, _ in expected]
        np.testing.assert_allclose([q for _, q in result["top3"]], [q for _, q in expected],
                                   rtol=0, atol=1e-6)


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


def test_info_shows_the_input_transform(capsys, tmp_path):
    layers = [mlpinfer.Layer(np.ones((3, 2)), np.zeros(2), "softmax")]
    network = mlpinfer.Network(layers, input_transform=mlpinfer.InputTransform(
        np.array([1990.0, 2000.0, 2010.0]), np.full(3, 0.1)))
    mlpinfer.save(network, tmp_path / "net.npz")
    code, out, _ = run(capsys, "info", str(tmp_path / "net.npz"))
    assert code == 0
    assert ("input transform (x - shift) * multiplier per feature, float64: shift 1990 to "
            "2010, multiplier 0.1\n") in out
    assert "input_transform=InputTransform(<3 features>)" in out
    code, out, _ = run(capsys, "info", str(tmp_path / "net.npz"), "--json")
    assert json.loads(out)["input_transform"] == {"shift": [1990.0, 2000.0, 2010.0],
                                                  "multiplier": [0.1, 0.1, 0.1]}


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
    assert err.startswith("mlpinfer: error: ")
    assert "Traceback" not in err


def test_predict_refuses_a_wrong_image_size(capsys, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 27, 27), np.uint8))
    code, _, err = run(capsys, "predict", str(tmp_path / "bad.npy"))
    assert code == 2
    assert "expected images of 784 values each" in err


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
        assert row["images_per_second"] > 0
        assert row["vs_numpy"] > 0
    [contention] = report["beside_busy_numpy"]
    assert contention["images_per_second_beside_numpy"] > 0
    assert 0.5 < report["zero_fraction"] < 1  # digits are mostly background
    assert {row["input"] for row in report["efficiency"]} == {"dense", "images"}
    for efficiency in report["efficiency"]:
        assert efficiency["batch_size"] == 64
        assert efficiency["fraction_of_sgemm"] > 0


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
    assert code == 0
    assert "images/s" in out
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("option", [["--batch-sizes", "0"], ["--threads", "1,-2"],
                                    ["--images", "0"]])
def test_bench_refuses_bad_numbers_in_one_line(capsys, option):
    code, _, err = run(capsys, "bench", *option)
    assert code == 2
    assert "positive integers" in err
    assert "Traceback" not in err


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "mlpinfer", "info", "xor"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Network(2 -> 2 sigmoid -> 1 sigmoid)" in result.stdout


def console_script() -> str:
    found = shutil.which("mlpinfer", path=sysconfig.get_path("scripts"))
    assert found, f"no mlpinfer console script in {sysconfig.get_path('scripts')}"
    return found


@pytest.mark.parametrize("command", [
    pytest.param([], id="console-script"),
    pytest.param([sys.executable, "-m", "mlpinfer"], id="python-m"),
    pytest.param([sys.executable, "-I", "-mmlpinfer"], id="python-Immlpinfer"),
])
def test_an_unknown_isa_cap_is_one_line_naming_the_valid_values(command):
    # The cap is checked while the package is imported, before the command's own code runs.
    argv = (command or [console_script()]) + ["info", "xor"]
    done = subprocess.run(argv, env={**os.environ, "MLPINFER_MAX_ISA": "bogus"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    prefix = "mlpinfer: error: MLPINFER_MAX_ISA is 'bogus'; expected one of "
    suffix = " (or unset, for the best this CPU runs)\n"
    assert done.stderr.startswith(prefix)
    assert done.stderr.endswith(suffix)
    assert done.stderr.count("\n") == 1
    # The valid values are the architecture's families: on an AVX2-only CPU, avx512 too.
    named = done.stderr[len(prefix):-len(suffix)].split(", ")
    assert set(mlpinfer.cpu_info()["supported"]) <= set(named)


def test_an_unknown_isa_cap_still_fails_another_programs_import(tmp_path):
    # python -m of another package whose import imports mlpinfer: a ValueError, as for any
    # library user, not the command's exit.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("import mlpinfer\n")
    (tmp_path / "other" / "__main__.py").write_text("print('ran')\n")
    done = subprocess.run([sys.executable, "-m", "other", "mlpinfer"], cwd=tmp_path,
                          env={**os.environ, "MLPINFER_MAX_ISA": "bogus"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("mlpinfer._errors.MaxIsaError: MLPINFER_MAX_ISA")


def test_convert_then_evaluate_the_converted_file(capsys, tmp_path):
    weights = shared_file("sample_weight.pkl")
    code, out, _ = run(capsys, "convert", str(weights), str(tmp_path / "textbook.npz"))
    assert code == 0
    assert "Network(784 -> 50 sigmoid -> 100 sigmoid -> 10 softmax)" in out
    original = mlpinfer.load(weights)
    converted = mlpinfer.load(tmp_path / "textbook.npz")
    for mine, theirs in zip(original.layers, converted.layers, strict=True):
        assert mine.weights.tobytes() == theirs.weights.tobytes()


def test_convert_to_an_unknown_suffix_is_a_user_error(capsys, tmp_path):
    weights = shared_file("sample_weight.pkl")
    code, _, err = run(capsys, "convert", str(weights), str(tmp_path / "net.h5"))
    assert code == 2
    assert "cannot tell the format to write" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------- a user's first hour

def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlpinfer {mlpinfer.__version__}"


@pytest.mark.parametrize(("command", "shown"), [
    ("evaluate", ["--batch-size BATCH_SIZE", "(default: 100)", "(default: sample)"]),
    ("predict", ["(default: digits)", "white digit (255) on a black background", "--invert"]),
    ("bench", ["(default: "]),
])
def test_help_shows_defaults_and_polarity(capsys, command, shown):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in shown:
        assert " ".join(text.split()) in out
    assert "(default: None)" not in out
    assert "(default: False)" not in out


def test_invert_reads_black_on_white_drawings(capsys, tmp_path):
    images, _ = load_digits_sample()
    chosen = images[:20]
    np.save(tmp_path / "drawn.npy", 255 - chosen)  # dark digits on a light page
    expected = reference_labels(mlpinfer.load("digits"), chosen)
    code, out, _ = run(capsys, "predict", "--json", "--invert", str(tmp_path / "drawn.npy"))
    assert code == 0
    assert [r["label"] for r in json.loads(out)] == list(expected)
    code, out, _ = run(capsys, "predict", "--json", str(tmp_path / "drawn.npy"))
    assert [r["label"] for r in json.loads(out)] != list(expected)  # why --invert exists
    np.save(tmp_path / "floats.npy", chosen / 255.0)
    code, _, err = run(capsys, "predict", "--invert", str(tmp_path / "floats.npy"))
    assert code == 2
    assert "--invert needs uint8 pixels" in err


def idx_file(path, array):
    magic = 0x0800 | array.ndim
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
                     + np.ascontiguousarray(array, np.uint8).tobytes())


def svg_text(path):
    return path.read_text(encoding="utf-8")


@pytest.fixture
def svg_with_text(monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # titles stay text


@pytest.mark.usefixtures("svg_with_text")
def test_error_grid_title_says_how_many_of_how_many(capsys, tmp_path):
    images, labels = load_digits_sample()
    wrong_labels = (labels + 1) % 10  # nearly every image now counts as misclassified
    data = tmp_path / "data"
    data.mkdir()
    idx_file(data / "t10k-images-idx3-ubyte", images)
    idx_file(data / "t10k-labels-idx1-ubyte", wrong_labels)
    misclassified = int(np.sum(reference_labels(mlpinfer.load("digits"), images) != wrong_labels))
    assert misclassified > 100
    code, out, _ = run(capsys, "evaluate", "--data", str(data), "--errors",
                       str(tmp_path / "grid.svg"))
    assert code == 0
    assert f"100 misclassified images drawn to {tmp_path / 'grid.svg'}" in out
    assert f"first 100 of {misclassified} misclassified images" in svg_text(tmp_path / "grid.svg")
    code, out, _ = run(capsys, "evaluate", "--errors", str(tmp_path / "few.svg"))
    few = int(np.sum(reference_labels(mlpinfer.load("digits"), images) != labels))
    assert f"all {few} misclassified images" in svg_text(tmp_path / "few.svg")


def test_error_grid_format_comes_from_the_suffix(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, _ = run(capsys, "evaluate", "--errors", str(tmp_path / "grid.jpg"))
    assert code == 0
    assert (tmp_path / "grid.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    code, _, _ = run(capsys, "evaluate", "--errors", str(tmp_path / "grid.pdf"))
    assert code == 0
    assert (tmp_path / "grid.pdf").read_bytes().startswith(b"%PDF")
    for name in ("grid.xyz", "grid"):
        code, _, err = run(capsys, "evaluate", "--errors", str(tmp_path / name))
        assert code == 2
        assert "the suffix names the image format" in err
        assert ".png" in err
        assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.jpg", "grid.pdf"]


def test_error_grid_never_follows_a_planted_symlink(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for planted in (".out.png.part", ".out.png"):  # the old fixed name, and a guess
        (tmp_path / planted).symlink_to(victim)
    code, _, _ = run(capsys, "evaluate", "--errors", str(tmp_path / "out.png"))
    assert code == 0
    assert victim.read_text() == "precious"
    assert not (tmp_path / "out.png").is_symlink()
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
    # A planted symlink at the destination itself is replaced, not written through.
    (tmp_path / "out.png").unlink()
    (tmp_path / "out.png").symlink_to(victim)
    assert run(capsys, "evaluate", "--errors", str(tmp_path / "out.png"))[0] == 0
    assert victim.read_text() == "precious"
    assert not (tmp_path / "out.png").is_symlink()


def test_a_write_into_a_missing_folder_names_the_users_path(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "no" / "such" / "grid.png"
    code, _, err = run(capsys, "evaluate", "--errors", str(target))
    assert code == 2
    assert str(target) in err
    assert "no such folder" in err
    code, _, err = run(capsys, "convert", "xor", str(target.with_suffix(".npz")))
    assert code == 2
    assert str(target.with_suffix(".npz")) in err
    assert not (tmp_path / "no").exists()


def test_convert_refuses_to_overwrite_its_input(capsys, tmp_path):
    mlpinfer.save(mlpinfer.load("xor"), tmp_path / "a.npz")
    before = (tmp_path / "a.npz").read_bytes()
    for destination in (tmp_path / "a.npz", tmp_path / "." / "a.npz"):
        code, _, err = run(capsys, "convert", str(tmp_path / "a.npz"), str(destination))
        assert code == 2
        assert "the destination is the source" in err
    (tmp_path / "b.npz").hardlink_to(tmp_path / "a.npz")
    code, _, err = run(capsys, "convert", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"))
    assert code == 2
    assert "the destination is the source" in err
    assert (tmp_path / "a.npz").read_bytes() == before


@pytest.mark.parametrize("colour_type", [0, 2])
def test_png_reader_undoes_every_filter_row_by_row(tmp_path, colour_type):
    rng = np.random.default_rng(10 + colour_type)
    image = rng.integers(0, 256, (28, 28), np.uint8)
    if colour_type == 0:
        pixels = image
    else:
        pixels = rng.integers(0, 256, (28, 28, 3), np.uint8)
        image = np.rint(pixels.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    filters = [int(k) for k in rng.integers(0, 5, 28)]
    for kinds in (filters, [3] * 28, [4] * 28):
        (tmp_path / "x.png").write_bytes(png_bytes(pixels, colour=colour_type, filter_type=kinds))
        np.testing.assert_array_equal(read_png_gray(tmp_path / "x.png"), image)


def test_png_reader_refuses_a_wrong_size_before_reading_its_data(tmp_path):
    header = struct.pack(">IIBBBBB", 4096, 4096, 8, 0, 0, 0, 0)
    # Data that would fail its CRC check and inflate to nothing useful: never looked at.
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + b"\x00\x00\x10\x00IDAT"
                     + bytes(64))
    with pytest.raises(mlpinfer.DataError, match=r"a 4096x4096 image; expected 784 pixels \(28x28\)"):
        read_png_gray(path, pixels=784)
    with pytest.raises(mlpinfer.DataError, match="truncated PNG chunk"):
        read_png_gray(path)


def test_predict_names_the_format_it_expected(capsys, tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100))
    (tmp_path / "notes.txt").write_text("seven\n")
    for name, what in (("photo.jpg", "a JPEG image"), ("notes.txt", "a text file")):
        code, _, err = run(capsys, "predict", str(tmp_path / name))
        assert code == 2
        assert f"{tmp_path / name}: {what}; predict reads grayscale PNG, .npy" in err


def test_predict_reports_each_bad_file_and_keeps_the_good_ones(capsys, tmp_path):
    images, _ = load_digits_sample()
    np.save(tmp_path / "good.npy", images[:2])
    (tmp_path / "good.png").write_bytes(png_bytes(images[2], filter_type=1))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    np.save(tmp_path / "small.npy", np.zeros((1, 27, 27), np.uint8))
    code, out, err = run(capsys, "predict", "--json", str(tmp_path / "good.npy"),
                         str(tmp_path / "bad.jpg"), str(tmp_path / "small.npy"),
                         str(tmp_path / "good.png"), str(tmp_path / "missing.png"))
    assert code == 2
    results = json.loads(out)
    expected = reference_labels(mlpinfer.load("digits"), images[:3])
    assert [r["label"] for r in results] == list(expected)
    assert [r["input"] for r in results] == [f"{tmp_path / 'good.npy'}[0]",
                                             f"{tmp_path / 'good.npy'}[1]", str(tmp_path / "good.png")]
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("mlpinfer: error: ") for line in lines)
    assert "bad.jpg" in lines[0]
    assert "small.npy" in lines[1]
    assert "missing.png" in lines[2]


def test_predict_refuses_a_npy_that_declares_more_than_it_holds(capsys, tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
        stream.write(bytes(1000))
    code, _, err = run(capsys, "predict", str(path))
    assert code == 2
    assert "declares shape (1000000000000,) of float32 (4,000,000,000,000 bytes)" in err
    assert "holds 1,000 bytes" in err
    assert "Traceback" not in err
    np.save(tmp_path / "objects.npy", np.array([{}, None], dtype=object), allow_pickle=True)
    code, _, err = run(capsys, "predict", str(tmp_path / "objects.npy"))
    assert code == 2
    assert "expected numbers" in err


def test_predict_reads_fortran_ordered_npy(capsys, tmp_path):
    images, _ = load_digits_sample()
    chosen = images[:3].reshape(3, 784)
    np.save(tmp_path / "f.npy", np.asfortranarray(chosen))
    code, out, _ = run(capsys, "predict", "--json", str(tmp_path / "f.npy"))
    assert code == 0
    assert [r["label"] for r in json.loads(out)] == list(reference_labels(mlpinfer.load("digits"), chosen))


def test_errors_are_shown_by_their_public_names():
    import traceback

    for error in (mlpinfer.DataError, mlpinfer.WeightsError, mlpinfer.MlpinferError):
        shown = traceback.format_exception_only(error("x"))[-1]
        assert shown == f"mlpinfer.{error.__name__}: x\n"
    from mlpinfer.importers import UnsupportedModelError

    assert UnsupportedModelError.__module__ == "mlpinfer.importers"


def test_bench_draws_progress_on_stderr_only(capsys, monkeypatch):
    monkeypatch.setattr("mlpinfer._bench.stderr_is_terminal", lambda: True)
    code, out, err = run(capsys, "bench", "--json", "--batch-sizes", "1,8", "--threads", "1",
                         "--repeats", "1", "--min-seconds", "0", "--images", "16",
                         "--engines", "mlpinfer,numpy")
    assert code == 0
    json.loads(out)  # stdout stays parsable
    assert "bench [" in err
    assert "100% 4/4 runs" in err


def test_predict_keeps_float_results_when_uint8_ones_need_a_pixel_scale(capsys, tmp_path):
    pytest.importorskip("onnx")
    write_foreign_onnx(mlpinfer.load("digits"), tmp_path / "net.onnx")
    images, _ = load_digits_sample()
    np.save(tmp_path / "pixels.npy", images[:1])
    np.save(tmp_path / "floats.npy", (images[:1] / 255.0).astype(np.float32))
    code, out, err = run(capsys, "predict", "--json", "--weights", str(tmp_path / "net.onnx"),
                         str(tmp_path / "pixels.npy"), str(tmp_path / "floats.npy"))
    assert code == 2
    assert [r["input"] for r in json.loads(out)] == [str(tmp_path / "floats.npy")]
    assert err.count("\n") == 1
    assert f"{tmp_path / 'pixels.npy'}: uint8 pixels" in err
    assert "--pixel-scale 1/255" in err
    code, out, _ = run(capsys, "predict", "--json", "--weights", str(tmp_path / "net.onnx"),
                       "--pixel-scale", "1/255", str(tmp_path / "pixels.npy"))
    assert code == 0
    assert len(json.loads(out)) == 1


def test_evaluate_names_the_pixel_scale_option_for_a_network_without_one(capsys, tmp_path):
    unscaled = mlpinfer.Network(mlpinfer.load("digits").layers, pixel_scale=None)
    mlpinfer.save(unscaled, tmp_path / "unscaled.npz")
    code, out, err = run(capsys, "evaluate", "--weights", str(tmp_path / "unscaled.npz"))
    assert code == 2
    assert out == ""
    assert "uint8 pixels" in err
    assert "--pixel-scale 1/255" in err
    assert "with_pixel_scale" not in err
    code, _, _ = run(capsys, "evaluate", "--weights", str(tmp_path / "unscaled.npz"),
                     "--pixel-scale", "1/255")
    assert code == 0


def test_a_reader_that_leaves_early_ends_the_output_quietly():
    # The reading end is closed before mlpinfer writes (as after `| head` has its lines);
    # -u makes the first print meet the closed pipe, inside main.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-u", "-m", "mlpinfer", "evaluate"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""
