"""The same bits on every CPU: the engine under each kernel family this CPU runs.

Each family is chosen by MLPINFER_MAX_ISA in a subprocess (the choice is made once per
process, at import), which runs this file as a script and saves its outputs. Every FMA
family (avx512, avx2, and neon on ARM) must give the same bits; the baseline (no FMA)
must be within the reference tolerance. The inputs: the textbook network on the 10,000
MNIST test images, and random networks at widths 1, 50, 513 and batches 0, 1, 7, 10,000,
with every activation, LayerNorm before and after the activation, rows 96% zeros (the
first layer row by row), and an input transform on float64 features near 2000.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATA, assert_close_to_reference, shared_file

import mlpinfer
from mlpinfer import reference
from mlpinfer._cli import main
from mlpinfer._cpu import avx512_can_be_hidden, hiding_library

FAMILIES_BEST_FIRST = ["avx512", "avx2", "neon", "baseline"]
WIDTHS = [1, 50, 513]
BATCHES = [0, 1, 7, 10_000]
HIDDEN = ["identity", "sigmoid", "relu", "tanh"]
OUTPUTS = ["identity", "sigmoid", "relu", "tanh", "softmax"]
# (hidden, output, LayerNorm on the hidden layers: before or after the activation, or none)
NEWER = [
    ("gelu", "log_softmax", "before"),
    ("silu", "identity", "after"),
    ("elu(alpha=0.5)", "softplus", "before"),
    ("leaky_relu(negative_slope=0.01)", "gelu_tanh", "after"),
    ("selu", "hard_sigmoid(slope=0.2)", None),
]


def random_cases():
    """(name, network, x): one network per output activation and width, its hidden
    activation cycling, inputs with a third of their values zero (zero skipping)."""
    for width in WIDTHS:
        for i, output in enumerate(OUTPUTS):
            rng = np.random.default_rng([width, i])
            widths = [width, 37, width, 3]
            params = {}
            for j, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
                params[f"W{j}"] = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
                params[f"b{j}"] = rng.standard_normal(n_out) * 0.5
            network = mlpinfer.Network.from_params(params, hidden=HIDDEN[i % len(HIDDEN)],
                                                   output=output)
            x = rng.uniform(-2, 2, (max(BATCHES), width)).astype(np.float32)
            x[rng.random(x.shape) < 1 / 3] = 0.0
            yield f"width {width}, {HIDDEN[i % len(HIDDEN)]} -> {output}", network, x
        for i, (hidden, output, norm) in enumerate(NEWER):
            rng = np.random.default_rng([width, len(OUTPUTS) + i])
            widths = [width, 37, width, 3]
            layers = []
            for j, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
                last = j == len(widths) - 1
                layer_norm = None if norm is None or last else mlpinfer.LayerNorm(
                    1 + 0.5 * rng.standard_normal(n_out), 0.5 * rng.standard_normal(n_out), 1e-5)
                layers.append(mlpinfer.Layer(
                    rng.standard_normal((n_in, n_out)) / np.sqrt(n_in),
                    rng.standard_normal(n_out) * 0.5, output if last else hidden,
                    layer_norm, norm == "after"))
            x = rng.uniform(-2, 2, (max(BATCHES), width)).astype(np.float32)
            x[rng.random(x.shape) < 1 / 3] = 0.0
            yield f"width {width}, {hidden} ({norm} LayerNorm) -> {output}", mlpinfer.Network(layers), x
        # Rows 96% zeros, each in its own places: every family's cost model sends the
        # first layer row by row (sparse_rows_gemm; test_core checks the choice on such
        # rows), and the tiles of the other cases keep it.
        rng = np.random.default_rng([width, len(OUTPUTS) + len(NEWER) + 1])
        params = {}
        for j, (n_in, n_out) in enumerate(itertools.pairwise([width, 50, 100, 10]), start=1):
            params[f"W{j}"] = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
            params[f"b{j}"] = rng.standard_normal(n_out) * 0.5
        x = rng.uniform(-2, 2, (max(BATCHES), width)).astype(np.float32)
        x[rng.random(x.shape) < 0.96] = 0.0
        yield (f"width {width}, sparse rows, sigmoid -> softmax",
               mlpinfer.Network.from_params(params, hidden="sigmoid", output="softmax"), x)
        rng = np.random.default_rng([width, len(OUTPUTS) + len(NEWER)])
        multiplier = 1 / rng.uniform(5, 20, width)
        transform = mlpinfer.InputTransform(2000 + 50 * rng.standard_normal(width), multiplier)
        layers = [mlpinfer.Layer(rng.standard_normal((width, 37)) / np.sqrt(width),
                                 rng.standard_normal(37) * 0.5, "relu"),
                  mlpinfer.Layer(rng.standard_normal((37, 3)), rng.standard_normal(3), "identity")]
        x = transform.shift + rng.standard_normal((max(BATCHES), width)) / multiplier
        yield (f"width {width}, input transform, relu -> identity",
               mlpinfer.Network(layers, input_transform=transform), x)


def mnist_case():
    from mlpinfer.datasets import load_mnist

    network = mlpinfer.load(SHARED_DATA / "sample_weight.pkl")
    images, _ = load_mnist("test", data_dir=SHARED_DATA / "mnist", download=False)
    return network, images.reshape(len(images), -1)


def compute_outputs() -> dict[str, np.ndarray]:
    """Every output this file compares, computed by the kernels of this process."""
    outputs = {}
    network, pixels = mnist_case()
    for threads in (1, 2):
        outputs[f"mnist uint8, {threads} threads"] = network.predict(pixels, threads=threads)
    outputs["mnist float32 x/255"] = network.predict(pixels.astype(np.float32) / np.float32(255))
    outputs["mnist uint8, batch_size 7"] = network.predict(pixels[:1000], batch_size=7)
    for name, net, x in random_cases():
        for batch in BATCHES:
            outputs[f"{name}, batch {batch}"] = net.predict(x[:batch])
    return outputs


def outputs_under(family: str, directory: Path, env: dict[str, str] | None = None,
                  ) -> dict[str, np.ndarray]:
    path = directory / f"{family}.npz"
    env = env or {**os.environ, "MLPINFER_MAX_ISA": family}
    done = subprocess.run([sys.executable, __file__, str(path), family], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


@pytest.fixture(scope="module")
def supported() -> list[str]:
    return mlpinfer.cpu_info()["supported"]


@pytest.fixture(scope="module")
def outputs(supported, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    shared_file("sample_weight.pkl")
    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    directory = tmp_path_factory.mktemp("isa")
    return {family: outputs_under(family, directory) for family in supported}


def test_cpu_info_reports_the_choice(supported):
    info = mlpinfer.cpu_info()
    assert info["isa"] in supported
    assert supported[-1] == "baseline"
    assert supported == [f for f in FAMILIES_BEST_FIRST if f in supported]
    assert info["fused_multiply_add"] == (info["isa"] != "baseline")
    capped = os.environ.get("MLPINFER_MAX_ISA")
    expected = supported[0] if not capped else next(
        f for f in FAMILIES_BEST_FIRST[FAMILIES_BEST_FIRST.index(capped):] if f in supported)
    assert info["isa"] == expected
    assert info["max_isa"] == (capped or None)
    info["supported"].clear()  # a copy: the next call is unchanged
    assert mlpinfer.cpu_info()["supported"] == supported


# `import mlpinfer` that exits with status 3 and the message of a ValueError it raises.
IMPORT_REPORTING_A_VALUE_ERROR = """\
import sys
try:
    import mlpinfer
except ValueError as error:
    print(error, file=sys.stderr)
    sys.exit(3)
"""


def run_python(code: str, max_isa: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPINFER_MAX_ISA": max_isa}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("family", FAMILIES_BEST_FIRST)
def test_a_cap_picks_the_best_family_at_or_below_it(family, supported):
    done = run_python(IMPORT_REPORTING_A_VALUE_ERROR + "print(mlpinfer.cpu_info()['isa'])", family)
    if done.returncode != 0:  # a family of another architecture: refused, naming ours
        assert done.returncode == 3
        assert done.stderr.startswith("MLPINFER_MAX_ISA is")
        assert family not in supported
        return
    below = FAMILIES_BEST_FIRST[FAMILIES_BEST_FIRST.index(family):]
    assert done.stdout.strip() == next(f for f in below if f in supported)


@pytest.mark.parametrize("value", ["avx1024", "AVX2", "sse2"])
def test_an_unknown_cap_fails_the_import_naming_the_valid_values(value):
    done = run_python(IMPORT_REPORTING_A_VALUE_ERROR, value)
    assert done.returncode == 3
    assert done.stderr.startswith(f"MLPINFER_MAX_ISA is '{value}'; expected one of ")
    assert "baseline" in done.stderr


def test_fma_families_give_identical_bits(outputs):
    fma = [f for f in outputs if f != "baseline"]
    if len(fma) < 2:
        pytest.skip(f"this CPU runs one FMA kernel family ({fma}); nothing to compare")
    first = outputs[fma[0]]
    for family in fma[1:]:
        assert outputs[family].keys() == first.keys()
        for case, expected in first.items():
            actual = outputs[family][case]
            differ = np.flatnonzero(actual.view(np.uint32) != expected.view(np.uint32))
            assert differ.size == 0, (
                f"{case}: {family} differs from {fma[0]} at {differ.size} values, first at flat "
                f"index {differ[0]}: {actual.flat[differ[0]]!r} against {expected.flat[differ[0]]!r}")


def test_every_family_is_within_the_reference_tolerance(outputs):
    network, pixels = mnist_case()
    mnist_expected = reference.forward(network.layers, pixels.astype(np.float32) / np.float32(255))
    expected = {"mnist uint8, 1 threads": mnist_expected}
    for name, net, x in random_cases():
        expected[f"{name}, batch {max(BATCHES)}"] = reference.forward(
            net.layers, x, input_transform=net.input_transform)
    for family, results in outputs.items():
        for case, values in expected.items():
            try:
                assert_close_to_reference(results[case], values)
            except AssertionError as error:
                raise AssertionError(f"{family} kernels, {case}: {error}") from None


def test_each_family_is_bit_identical_across_batches_and_threads(outputs):
    for family, results in outputs.items():
        whole = results["mnist uint8, 1 threads"]
        np.testing.assert_array_equal(results["mnist uint8, 2 threads"].view(np.uint32),
                                      whole.view(np.uint32), err_msg=family)
        np.testing.assert_array_equal(results["mnist uint8, batch_size 7"].view(np.uint32),
                                      whole[:1000].view(np.uint32), err_msg=family)
        for name, _, _ in random_cases():
            full = results[f"{name}, batch {max(BATCHES)}"]
            for batch in BATCHES[:-1]:
                np.testing.assert_array_equal(results[f"{name}, batch {batch}"].view(np.uint32),
                                              full[:batch].view(np.uint32),
                                              err_msg=f"{family}: {name}, batch {batch}")


def test_bench_times_every_family_beside_the_other_engines(capsys, supported):
    code = main(["bench", "--json", "--isa", "all", "--engines", "mlpinfer,numpy",
                 "--batch-sizes", "1,40", "--threads", "1", "--repeats", "1",
                 "--min-seconds", "0", "--images", "80"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    engines = {f"mlpinfer[{family}]" for family in supported}
    assert {(r["engine"], r["batch_size"]) for r in report["results"]} == {
        (e, b) for e in engines | {"numpy"} for b in (1, 40)}
    for row in report["results"]:
        assert row["images_per_second"] > 0
        assert row["vs_numpy"] > 0
    assert {(r["engine"], r["input"]) for r in report["efficiency"]} == {
        (e, i) for e in engines for i in ("dense", "images")}
    assert all(r["fraction_of_sgemm"] > 0 for r in report["efficiency"])
    assert report["kernels"] == mlpinfer.cpu_info()
    # Each family is also measured against OpenBLAS's kernel of its own instruction set,
    # when the build's BLAS is OpenBLAS (it names the kernel that ran).
    if "(kernel " in mlpinfer._core.blas_info():
        same_isa = {"avx512": "SkylakeX", "avx2": "Haswell", "baseline": "Nehalem"}
        for row in report["efficiency"]:
            family = row["engine"][len("mlpinfer["):-1]
            assert row["isa_sgemm_kernel"] == same_isa.get(family, row["isa_sgemm_kernel"])
            assert row["fraction_of_isa_sgemm"] > 0


# ---------------------------------------------------------------- an AVX2-only CPU, emulated
# A process preloading mlpinfer's hide-avx512.so sees this CPU without AVX-512 (its CPUID
# traps and is answered with those bits cleared): the CPU issue 12's AVX2 floors are about.


def without_avx512() -> dict[str, str]:
    """The environment of a process that sees an AVX2-only CPU, no cap set."""
    if not avx512_can_be_hidden():
        pytest.skip("AVX-512 cannot be hidden here: it needs a CPU with AVX-512, Linux's "
                    "CPUID faulting (cpuid_fault) and a Linux x86-64 build")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLPINFER_MAX_ISA", "PYTHONFAULTHANDLER")}
    return {**env, "LD_PRELOAD": str(hiding_library())}


def run_without_avx512(*arguments: str) -> subprocess.CompletedProcess[str]:
    """``python ARGUMENTS`` on an AVX2-only CPU; exits 0, or the test fails with its stderr."""
    done = subprocess.run([sys.executable, *arguments], env=without_avx512(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_a_cpu_without_avx512_chooses_avx2_by_itself():
    code = ("import json, mlpinfer, numpy; from mlpinfer._cpu import avx512_hidden_here; "
            "from numpy._core._multiarray_umath import __cpu_features__ as f; "
            "print(json.dumps([mlpinfer.cpu_info(), avx512_hidden_here(), f['AVX512F'], f['AVX2']]))")
    info, hidden, numpy_avx512, numpy_avx2 = json.loads(run_without_avx512("-c", code).stdout)
    assert info == {"isa": "avx2", "supported": ["avx2", "baseline"],
                    "fused_multiply_add": True, "max_isa": None}
    assert hidden
    assert not numpy_avx512  # every library in the process sees the same CPU
    assert numpy_avx2


def test_a_cpu_without_avx512_is_seen_from_every_thread():
    # Thread pools start after the library hid AVX-512; their CPUID must be answered too.
    code = ("import threading, json; seen = []; "
            "t = threading.Thread(target=lambda: seen.append(__import__('mlpinfer').cpu_info()['isa'])); "
            "t.start(); t.join(); print(json.dumps(seen))")
    assert json.loads(run_without_avx512("-c", code).stdout) == ["avx2"]


def test_a_real_crash_under_the_hiding_library_is_still_a_crash():
    done = subprocess.run([sys.executable, "-c", "import ctypes; ctypes.string_at(8)"],
                          env=without_avx512(), capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGSEGV


def test_an_avx2_only_cpu_gives_the_bits_of_this_one(outputs, tmp_path):
    hidden = outputs_under("avx2", tmp_path, without_avx512())
    here = outputs["avx512"]
    assert hidden.keys() == here.keys()
    for case, expected in here.items():
        np.testing.assert_array_equal(hidden[case].view(np.uint32), expected.view(np.uint32),
                                      err_msg=case)


def test_bench_times_avx2_against_peers_on_an_avx2_only_cpu(capsys):
    without_avx512()
    code = main(["bench", "--json", "--isa", "avx2", "--engines", "mlpinfer,numpy,onnxruntime",
                 "--batch-sizes", "1,40", "--threads", "1", "--repeats", "1",
                 "--min-seconds", "0", "--images", "80"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {(r["engine"], r["cpu"], r["batch_size"]): r for r in report["results"]}
    hidden = "AVX-512 hidden"
    assert set(rows) == {(e, c, b) for b in (1, 40) for e, c in [
        ("mlpinfer[avx2]", hidden), ("numpy", hidden), ("onnxruntime", hidden),
        ("numpy", None), ("onnxruntime", None)]}
    for batch in (1, 40):
        ours = rows["mlpinfer[avx2]", hidden, batch]
        peers = [rows[e, hidden, batch] for e in ("numpy", "onnxruntime")]
        best = max(peers, key=lambda r: r["images_per_second"])
        # compared with the engines timed on the same (emulated) CPU, not this one's
        assert ours["fastest_other"] == best["engine"]
        assert ours["vs_fastest_other"] == ours["images_per_second"] / best["images_per_second"]
        assert ours["vs_numpy"] == (ours["images_per_second"]
                                    / rows["numpy", hidden, batch]["images_per_second"])


def test_bench_run_whole_on_an_avx2_only_cpu_compares_every_row_with_its_peers():
    done = run_without_avx512("-m", "mlpinfer", "bench", "--json", "--isa", "all",
                              "--engines", "mlpinfer,numpy", "--batch-sizes", "1,40",
                              "--threads", "1", "--repeats", "1", "--min-seconds", "0",
                              "--images", "80")
    report = json.loads(done.stdout)
    assert report["avx512_hidden"]
    assert {(r["engine"], r["cpu"]) for r in report["results"]} == {
        ("mlpinfer[avx2]", None), ("mlpinfer[baseline]", None), ("numpy", None)}
    assert all(r["vs_numpy"] > 0 for r in report["results"])


@pytest.mark.parametrize(("worker", "message"), [
    (subprocess.CompletedProcess([], 1, "", "Traceback (most recent call last):\n  ...\n"
                                 "MemoryError: out of memory\n"),
     "timing mlpinfer with the baseline kernels failed: MemoryError: out of memory"),
    (subprocess.CompletedProcess([], -9, "", ""),
     "timing mlpinfer with the baseline kernels failed: exit status -9"),
])
def test_bench_reports_a_failed_worker_in_one_line(capsys, monkeypatch, worker, message):
    monkeypatch.setattr("mlpinfer._bench.subprocess.run", lambda *args, **kwargs: worker)
    code = main(["bench", "--isa", "baseline", "--engines", "mlpinfer", "--batch-sizes", "1",
                 "--threads", "1", "--repeats", "1", "--min-seconds", "0", "--images", "8"])
    assert code == 2
    assert capsys.readouterr().err == f"mlpinfer: error: {message}\n"


def test_bench_refuses_a_worker_that_did_not_hide_avx512(capsys, monkeypatch):
    without_avx512()  # only where the avx2 family is timed with AVX-512 hidden
    shown = json.dumps({"results": [], "efficiency": [], "skipped_engines": {}, "cpu": None})
    monkeypatch.setattr("mlpinfer._bench.subprocess.run",
                        lambda *args, **kwargs: subprocess.CompletedProcess([], 0, shown, ""))
    code = main(["bench", "--isa", "avx2", "--engines", "mlpinfer", "--batch-sizes", "1",
                 "--threads", "1", "--repeats", "1", "--min-seconds", "0", "--images", "8"])
    assert code == 2
    assert capsys.readouterr().err == ("mlpinfer: error: the avx2 worker was to run with "
                                       "AVX-512 hidden, and its CPUID still showed AVX-512\n")


def test_bench_refuses_a_family_this_cpu_does_not_run(capsys, supported):
    assert main(["bench", "--isa", "avx2,vax"]) == 2
    err = capsys.readouterr().err
    assert f"families this CPU runs ({', '.join(supported)}), got 'avx2,vax'" in err


def test_info_names_the_kernels(capsys):
    assert main(["info", "xor"]) == 0
    isa = mlpinfer.cpu_info()["isa"]
    assert f"kernels     {isa} (this CPU runs " in capsys.readouterr().out


if __name__ == "__main__":
    # python test_isa.py OUT.npz FAMILY: save this process's outputs (see outputs_under).
    in_use = mlpinfer.cpu_info()["isa"]
    if in_use != sys.argv[2]:
        sys.exit(f"asked for the {sys.argv[2]} kernels, MLPINFER_MAX_ISA gave {in_use}")
    np.savez(sys.argv[1], **compute_outputs())
