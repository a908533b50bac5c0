"""``mlpinfer bench``: mlpinfer against the NumPy reference, ONNX Runtime and PyTorch.

Method: every engine runs the same network on the same images (float32 x/255; mlpinfer
also on the raw uint8 pixels). Before timing, each engine's labels on the whole set must
equal the reference's. For each batch size, a run classifies the images in consecutive
batches of that size; one warm-up run, then repeated runs until both a minimum count and
a minimum time are reached, and the median run is reported as images/s and per-call
latency. Ratios compare engines at the same batch size and thread count in this run.
Efficiency is the dense FLOP rate (2 * images * sum(in * out) / time) against the same
BLAS's 2048^3 sgemm, on these images and on inputs without zeros: the engine skips
inputs that are zero in every row it computes at once, which a digit's background is.
With ``--isa all``, mlpinfer runs once per kernel family this CPU runs, each in a
subprocess with MLPINFER_MAX_ISA set (the family is chosen once per process), started
between the other engines' measurements at the same thread count. That subprocess's
OpenBLAS is told to use its kernel of the same instruction set (OPENBLAS_CORETYPE), whose
2048^3 sgemm is a second ceiling: what the family would be measured against on a CPU that
has nothing better (an AVX2-only CPU's OpenBLAS runs its Haswell kernel). On a CPU with
AVX-512, the avx2 family's subprocess also hides AVX-512 from every library in it (Linux,
where the CPU traps CPUID for the kernel: cpp/tools/hide_avx512.cpp) and times the other
engines there too: its ratios are to ONNX Runtime, PyTorch and NumPy as they run on an
AVX2-only CPU, which is what issue 12's AVX2 floors are about. Those rows are marked
"AVX-512 hidden" and compared only with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _core, _shipped, datasets, reference
from ._cpu import (
    ISA_VARIABLE,
    avx512_can_be_hidden,
    avx512_hidden_here,
    cpu_info,
    describe_kernels,
    hiding_library,
)
from ._network import Layer, Network
from ._progress import Progress, stderr_is_terminal
from .formats import load, save

__all__ = ["add_arguments", "run"]

_OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                       "OMP_NUM_THREADS")
_REEXEC_MARK = "MLPINFER_BENCH_REEXEC"
_WORKER_MARK = "MLPINFER_BENCH_WORKER"  # a subprocess timing one kernel family (--isa)
_SGEMM_SIZE = 2048
# OpenBLAS's kernel of each family's instruction set (a DYNAMIC_ARCH build's core names);
# baseline is SSE2, and Nehalem is OpenBLAS's last x86 kernel without AVX.
_SAME_ISA_BLAS_CORE = {"avx512": "SkylakeX", "avx2": "Haswell", "baseline": "Nehalem"}
_AVX512_HIDDEN = "AVX-512 hidden"  # the CPU a hiding worker's rows were timed on

Forward = Callable[[np.ndarray], np.ndarray]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None,
                        help="weight file (e.g. the textbook's sample_weight.pkl); "
                             "default: the shipped digits network")
    parser.add_argument("--data", default=None,
                        help="directory with the MNIST test IDX files; default: MNIST found "
                             "as mlpinfer.datasets does (no download), else the embedded sample tiled")
    parser.add_argument("--batch-sizes", default="1,10,100,1000,10000",
                        help="comma-separated batch sizes (default %(default)s)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--engines", default="mlpinfer,mlpinfer-uint8,numpy,onnxruntime,torch",
                        help="engines to run, when installed (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs at least (median)")
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="keep repeating until this much time was measured")
    parser.add_argument("--images", type=int, default=10_000, help="images per run")
    parser.add_argument("--native-openblas", action="store_true",
                        help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this run "
                             "(re-executes the process so that BLAS libraries load without them)")
    parser.add_argument("--isa", default="default",
                        help="kernel families to time mlpinfer with: 'default' (the ones this "
                             "process chose), 'all' (every family this CPU runs), or a "
                             "comma-separated list such as avx2,baseline")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--chart", metavar="FILE.png", help="plot images/s against batch size")


@dataclass
class Measurement:
    engine: str
    threads: int
    batch_size: int
    images_per_second: float
    latency_us: float
    vs_numpy: float | None = None
    vs_fastest_other: float | None = None
    fastest_other: str | None = None
    cpu: str | None = None  # _AVX512_HIDDEN, or None for the CPU as it is


# --------------------------------------------------------------------------- engines

def _reference_layers(network: Network) -> list[Layer]:
    return list(network.layers)  # LayerNorms included


def _float_scale(network: Network) -> float:
    """The scale a network applies to float input (uint8 pixels get 1/255 by default)."""
    return 1.0 if network.input_scale is None else network.input_scale


def _numpy_engine(network: Network) -> Forward:
    layers = _reference_layers(network)
    scale = _float_scale(network)
    transform = network.input_transform
    return lambda batch: reference.forward(layers, batch, scale, dtype=np.float32,
                                           input_transform=transform)


def _onnxruntime_engine(network: Network, threads: int, workdir: Path) -> Forward:
    import onnxruntime

    path = workdir / "network.onnx"
    if not path.exists():
        save(network, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return forward


def _torch_engine(network: Network, threads: int) -> Forward:
    import torch

    from .importers import to_torch

    torch.set_num_threads(threads)
    model = to_torch(network)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return forward


def _mlpinfer_engine(network: Network, threads: int) -> Forward:
    return lambda batch: network.predict(batch, threads=threads)


def _engine(name: str, network: Network, threads: int, workdir: Path) -> Forward | None:
    """The forward function of engine ``name``, or None when it is not installed."""
    try:
        if name in ("mlpinfer", "mlpinfer-uint8"):
            return _mlpinfer_engine(network, threads)
        if name == "numpy":
            return _numpy_engine(network)
        if name == "onnxruntime":
            return _onnxruntime_engine(network, threads, workdir)
        if name == "torch":
            return _torch_engine(network, threads)
    except ImportError:
        return None
    raise ValueError(f"unknown engine {name!r}")


# --------------------------------------------------------------------------- timing

def _time_runs(forward: Forward, images: np.ndarray, batch_size: int, repeats: int,
               min_seconds: float) -> tuple[float, float]:
    """Median seconds of one pass over ``images`` in batches, and calls per pass."""
    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]

    def one_pass() -> float:
        began = time.perf_counter()
        for batch in batches:
            forward(batch)
        return time.perf_counter() - began

    one_pass()  # warm-up: first-touch allocations, lazy thread pools, caches
    samples: list[float] = []
    while len(samples) < repeats or sum(samples) < min_seconds:
        samples.append(one_pass())
    return statistics.median(samples), len(batches)


def _environment(network: Network) -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "machine": f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "network": repr(network),
        "mlpinfer_blas": _core.blas_info(),
        "kernels": cpu_info(),
        "avx512_hidden": avx512_hidden_here(),
        "blas_libraries": [
            {key: info.get(key) for key in ("internal_api", "version", "architecture",
                                             "num_threads", "threading_layer", "filepath")}
            for info in threadpool_info()
        ],
        "environment": {name: os.environ.get(name) for name in _OPENBLAS_VARIABLES},
    }


def _images(spec: str | None, count: int) -> tuple[str, np.ndarray]:
    if spec is not None:
        images, _ = datasets.load_directory(spec, "test")
        source = f"MNIST test images from {spec}"
    else:
        try:
            images, _ = datasets.load_mnist("test", download=False)
            source = "MNIST test images"
        except datasets.DataError:
            images, _ = _shipped.load_digits_sample()
            source = "embedded sample (tiled)"
    reps = -(-count // len(images))
    return source, np.tile(images.reshape(len(images), -1), (reps, 1))[:count]


def _reexec_without_openblas_env() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env[_REEXEC_MARK] = "1"
    argv = [sys.executable, "-m", "mlpinfer", *[a for a in sys.argv[1:] if a != "--native-openblas"]]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


def run(args: argparse.Namespace) -> int:
    if args.native_openblas and not os.environ.get(_REEXEC_MARK):
        _reexec_without_openblas_env()
    import tempfile

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ImportError("mlpinfer bench needs threadpoolctl: pip install 'mlpinfer[bench]'") from None

    families = _families(args.isa)
    worker = bool(os.environ.get(_WORKER_MARK))
    network = load(args.weights) if args.weights else load("digits")
    batch_sizes = _positive_list(args.batch_sizes, "--batch-sizes")
    thread_counts = _positive_list(args.threads, "--threads")
    images = _positive_list(str(args.images), "--images")[0]
    engine_names = args.engines.split(",")
    source, pixels = _images(args.data, images)
    # Every engine gets the floats that the pixels stand for: x / 255 for the textbook's
    # networks, x itself for one that scales its input (e.g. a Keras Rescaling layer).
    if network.pixel_scale is None:
        raise ValueError(
            f"{args.weights}: bench runs the network on uint8 images, and this network does "
            "not record the scale of its pixels; write a copy that does: mlpinfer convert "
            "--pixel-scale 1/255 (or 1) IN OUT.npz"
        )
    floats = pixels.astype(np.float32)
    ratio = network.pixel_scale / _float_scale(network)
    if ratio != 1.0:
        floats /= np.float32(1 / ratio)  # 255 exactly for the textbook's networks
    expected = np.argmax(
        reference.forward(_reference_layers(network), floats, _float_scale(network)), axis=1)
    environment = _environment(network)

    results: list[Measurement] = []
    efficiency: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    # On stderr, and only for a person watching: stdout stays the report (or JSON).
    steps = len(thread_counts) * len(engine_names) * len(batch_sizes)
    progress = Progress("bench", steps, unit="runs") if stderr_is_terminal() else None
    done = 0
    with tempfile.TemporaryDirectory() as workdir:
        for threads in thread_counts:
            # Every BLAS and OpenMP pool in the process (NumPy's, PyTorch's) gets the
            # same thread count as the engine under test, once per thread setting:
            # threadpool_limits costs hundreds of microseconds, far more than a call.
            limits = threadpool_limits(threads)
            for family in [f for f in families or [] if _hides_avx512_for(f)]:
                # Every engine, in one subprocess that sees an AVX2-only CPU.
                measured, rates, not_timed = _time_in_worker(args, ",".join(engine_names),
                                                             family, threads, hide_avx512=True)
                results += measured
                efficiency += rates
                skipped.update(not_timed)
            for name in engine_names:
                done += len(batch_sizes)  # counted up front: a skipped engine's runs are done
                if name in skipped:
                    continue
                if families and name.startswith("mlpinfer"):
                    for family in families:
                        if not _hides_avx512_for(family):
                            measured, rates, _ = _time_in_worker(args, name, family, threads)
                            results += measured
                            efficiency += rates
                    continue
                forward = _engine(name, network, threads, Path(workdir))
                if forward is None:
                    skipped[name] = "not installed"
                    continue
                inputs = pixels if name == "mlpinfer-uint8" else floats
                labels = np.argmax(forward(inputs), axis=1)
                disagreements = int(np.count_nonzero(labels != expected))
                if disagreements:
                    skipped[name] = (f"not timed: its labels differ from the reference's on "
                                     f"{disagreements} of {len(labels)} images")
                    continue
                for position, batch_size in enumerate(batch_sizes, start=1):
                    seconds, calls = _time_runs(forward, inputs, batch_size, args.repeats,
                                                args.min_seconds)
                    results.append(Measurement(name, threads, batch_size,
                                               len(inputs) / seconds, seconds / calls * 1e6))
                    if progress:
                        progress.update(done - len(batch_sizes) + position)
            limits.restore_original_limits()
    if progress:
        progress.update(steps)
        progress.close()
    _add_ratios(results)
    efficiency += _flop_rates(network, results, floats.shape, max(batch_sizes), args)
    if worker:  # the parent adds its own ceiling and the contention runs
        for threads in thread_counts:
            _add_same_isa_ceiling(efficiency, threads)
        print(json.dumps({"results": [asdict(m) for m in results], "efficiency": efficiency,
                          "skipped_engines": skipped,
                          "cpu": _AVX512_HIDDEN if avx512_hidden_here() else None}))
        return 0
    ceiling = {t: 2 * _SGEMM_SIZE**3 / _core.time_blas_sgemm(_SGEMM_SIZE, t, 3)
               for t in thread_counts}
    for row in efficiency:
        row["sgemm_gflops"] = ceiling[row["threads"]] / 1e9
        row["fraction_of_sgemm"] = row["gflops"] * 1e9 / ceiling[row["threads"]]
    contention = _beside_busy_numpy(network, floats, thread_counts, args.min_seconds)
    if args.chart:
        _chart(Path(args.chart), results)
    report = {"source": source, "images": len(pixels),
              "zero_fraction": float(np.count_nonzero(floats == 0) / max(floats.size, 1)),
              **environment,
              "skipped_engines": skipped, "results": [asdict(m) for m in results],
              "efficiency": efficiency, "beside_busy_numpy": contention}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report, results)
    return 0


def _families(spec: str) -> list[str] | None:
    """The kernel families ``--isa`` asks for, or None for this process's own."""
    if spec == "default":
        return None
    supported: list[str] = list(cpu_info()["supported"])  # type: ignore[call-overload]
    if spec == "all":
        return supported
    families = spec.split(",")
    unknown = [family for family in families if family not in supported]
    if unknown:
        raise ValueError(f"--isa takes 'default', 'all' or families this CPU runs "
                         f"({', '.join(supported)}), got {spec!r}")
    return families


def _hides_avx512_for(family: str) -> bool:
    """Whether ``family`` is timed on this CPU with AVX-512 hidden: the avx2 family, where
    the CPU has AVX-512 and it can be hidden."""
    return family == "avx2" and avx512_can_be_hidden()


def _time_in_worker(args: argparse.Namespace, engines: str, family: str, threads: int,
                    hide_avx512: bool = False,
                    ) -> tuple[list[Measurement], list[dict[str, Any]], dict[str, str]]:
    """``engines`` timed by a subprocess whose kernels are ``family``'s, on a CPU with
    AVX-512 hidden if ``hide_avx512``: its measurements, FLOP rates and skipped engines."""
    command = [sys.executable, "-m", "mlpinfer", "bench", "--json", "--engines", engines,
               "--threads", str(threads), "--batch-sizes", args.batch_sizes,
               "--repeats", str(args.repeats), "--min-seconds", str(args.min_seconds),
               "--images", str(args.images)]
    for option, value in (("--weights", args.weights), ("--data", args.data)):
        if value is not None:
            command += [option, str(value)]
    env = {**os.environ, ISA_VARIABLE: family, _WORKER_MARK: "1"}
    if family in _SAME_ISA_BLAS_CORE:
        env["OPENBLAS_CORETYPE"] = _SAME_ISA_BLAS_CORE[family]
    if hide_avx512:
        env["LD_PRELOAD"] = f"{hiding_library()} {env.get('LD_PRELOAD', '')}".strip()
        # faulthandler would take the SIGSEGV of every hidden CPUID for a crash.
        env.pop("PYTHONFAULTHANDLER", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    # ChildProcessError, an OSError: the command reports it in one line, as any failure
    # of the system under the benchmark; the worker's own last line says what went wrong.
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ChildProcessError(f"timing mlpinfer with the {family} kernels failed: {said[0]}")
    report = json.loads(done.stdout)
    if hide_avx512 and report["cpu"] != _AVX512_HIDDEN:
        raise ChildProcessError(f"the {family} worker was to run with AVX-512 hidden, and its "
                                "CPUID still showed AVX-512")
    # A worker's rows are on another CPU than this process's only if this process asked;
    # if the whole run sees AVX-512 hidden (the library preloaded by hand), so do they all.
    cpu = report["cpu"] if hide_avx512 else None
    measured = []
    for row in report["results"]:
        if row["engine"].startswith("mlpinfer"):
            row["engine"] = f"{row['engine']}[{family}]"
        row.update(vs_numpy=None, vs_fastest_other=None, fastest_other=None, cpu=cpu)
        measured.append(Measurement(**row))
    for row in report["efficiency"]:
        row["engine"] = f"{row['engine']}[{family}]"
    skipped = {f"{name} [{cpu}]" if cpu else name: why for name, why in report["skipped_engines"].items()}
    return measured, report["efficiency"], skipped


def _add_same_isa_ceiling(efficiency: list[dict[str, Any]], threads: int) -> None:
    """Adds to this worker's rows at ``threads`` the sgemm rate of this process's BLAS
    kernel, and which kernel that was (OpenBLAS ignores an OPENBLAS_CORETYPE it cannot
    run, so the name is read back, not assumed)."""
    rows = [row for row in efficiency if row["threads"] == threads]
    if not rows:
        return
    rate = 2 * _SGEMM_SIZE**3 / _core.time_blas_sgemm(_SGEMM_SIZE, threads, 3)
    described = _core.blas_info()
    kernel = described.rsplit("(kernel ", 1)[1].rstrip(")") if "(kernel " in described else None
    for row in rows:
        row["isa_sgemm_gflops"] = rate / 1e9
        row["isa_sgemm_kernel"] = kernel
        row["fraction_of_isa_sgemm"] = row["gflops"] * 1e9 / rate


def _flop_rates(network: Network, results: list[Measurement], shape: tuple[int, ...],
                batch_size: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The dense FLOP rate of this process's float32 mlpinfer runs at ``batch_size``, on
    the images and on inputs without zeros. The engine skips inputs that are zero in every
    row of a tile (most of a digit's background), so on the images the dense FLOP count
    overstates the arithmetic done; inputs without zeros measure the kernels themselves."""
    flops_per_image = 2 * sum(layer.inputs * layer.outputs for layer in network.layers)
    dense = np.random.default_rng(0).uniform(0.5 / 255, 1.0, shape).astype(np.float32)
    rates = []
    for m in results:
        if m.engine != "mlpinfer" or m.batch_size != batch_size:
            continue
        seconds, _ = _time_runs(_mlpinfer_engine(network, m.threads), dense, m.batch_size,
                                args.repeats, args.min_seconds)
        for inputs, rate in (("dense", len(dense) / seconds), ("images", m.images_per_second)):
            rates.append({"engine": m.engine, "threads": m.threads, "batch_size": m.batch_size,
                          "input": inputs, "gflops": rate * flops_per_image / 1e9})
    return rates


def _beside_busy_numpy(network: Network, floats: np.ndarray, thread_counts: list[int],
                       min_seconds: float) -> list[dict[str, Any]]:
    """mlpinfer's throughput on the whole set while another thread keeps NumPy's BLAS busy
    with 1024^3 products on all its threads: whether our threads fight NumPy's."""
    import threading

    square = np.ones((1024, 1024), np.float32)
    stop = threading.Event()
    products = [0]

    def busy() -> None:
        while not stop.is_set():
            square @ square
            products[0] += 1

    rows = []
    for threads in thread_counts:
        forward = _mlpinfer_engine(network, threads)
        alone, _ = _time_runs(forward, floats, len(floats), 3, min_seconds)
        worker = threading.Thread(target=busy, daemon=True)
        products[0] = 0
        worker.start()
        began = time.perf_counter()
        beside, _ = _time_runs(forward, floats, len(floats), 3, min_seconds)
        elapsed = time.perf_counter() - began
        stop.set()
        worker.join()
        stop.clear()
        rows.append({"threads": threads, "images_per_second_alone": len(floats) / alone,
                     "images_per_second_beside_numpy": len(floats) / beside,
                     "numpy_products_per_second": products[0] / elapsed})
    return rows


def _positive_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"{option} takes positive integers separated by commas, got {text!r}")
    return values


def _add_ratios(results: list[Measurement]) -> None:
    # Rows timed with AVX-512 hidden are compared only with each other.
    by_key: dict[tuple[str | None, int, int], list[Measurement]] = {}
    for m in results:
        by_key.setdefault((m.cpu, m.threads, m.batch_size), []).append(m)
    for group in by_key.values():
        numpy_rate = next((m.images_per_second for m in group if m.engine == "numpy"), None)
        for m in group:
            if numpy_rate:
                m.vs_numpy = m.images_per_second / numpy_rate
            others = [o for o in group if not o.engine.startswith("mlpinfer") and o is not m]
            if m.engine.startswith("mlpinfer") and others:
                best = max(others, key=lambda o: o.images_per_second)
                m.vs_fastest_other = m.images_per_second / best.images_per_second
                m.fastest_other = best.engine


def _label(m: Measurement) -> str:
    return f"{m.engine} [{m.cpu}]" if m.cpu else m.engine


def _print_report(report: dict[str, Any], results: list[Measurement]) -> None:
    print(f"machine     {report['machine']}")
    print(f"network     {report['network']}")
    print(f"inputs      {report['images']:,} {report['source']} "
          f"({report['zero_fraction']:.0%} of the values zero)")
    print(f"mlpinfer    {report['mlpinfer_blas']}")
    print(f"kernels     {describe_kernels(report['kernels'])}")
    for lib in report["blas_libraries"]:
        print(f"blas        {lib['internal_api']} {lib['version']} kernel {lib['architecture']} "
              f"threads {lib['num_threads']} ({Path(str(lib['filepath'])).name})")
    print("env         " + " ".join(f"{k}={v}" for k, v in report["environment"].items()))
    for engine, why in report["skipped_engines"].items():
        print(f"skipped     {engine}: {why}")
    if report["avx512_hidden"]:
        print("cpu         this whole run sees a CPU without AVX-512 and AMX "
              "(hide-avx512.so preloaded)")
    if any(m.cpu == _AVX512_HIDDEN for m in results):
        print(f"cpu         rows marked [{_AVX512_HIDDEN}] ran in a process whose CPUID hid "
              "AVX-512 and AMX, as on an AVX2-only CPU: every library there chose its AVX2 "
              "kernels; they are compared only with each other")
    print()
    header = (f"{'engine':<32}{'threads':>8}{'batch':>8}{'images/s':>14}{'us/call':>11}"
              f"{'vs numpy':>10}{'vs best other':>22}")
    print(header)
    print("-" * len(header))
    for m in results:
        numpy_ratio = f"{m.vs_numpy:.2f}x" if m.vs_numpy else "-"
        other = f"{m.vs_fastest_other:.2f}x {m.fastest_other}" if m.vs_fastest_other else "-"
        print(f"{_label(m):<32}{m.threads:>8}{m.batch_size:>8}{m.images_per_second:>14,.0f}"
              f"{m.latency_us:>11.1f}{numpy_ratio:>10}{other:>22}")
    print()
    for row in report["beside_busy_numpy"]:
        print(f"contention  {row['threads']} threads, whole set: "
              f"{row['images_per_second_alone']:,.0f} images/s alone, "
              f"{row['images_per_second_beside_numpy']:,.0f} while NumPy multiplies "
              f"({row['numpy_products_per_second']:.1f} 1024^3 products/s)")
    described = {"dense": "input without zeros",
                 "images": "these images, zeros skipped, counted as dense"}
    for row in report["efficiency"]:
        same_isa = ""
        if row.get("isa_sgemm_kernel"):
            same_isa = (f", {row['fraction_of_isa_sgemm']:.0%} of the "
                        f"{row['isa_sgemm_gflops']:.0f} of its {row['isa_sgemm_kernel']} kernel")
        print(f"efficiency  {row['engine']}, {row['threads']} threads, batch {row['batch_size']}, "
              f"{described[row['input']]}: {row['gflops']:.0f} GFLOP/s = "
              f"{row['fraction_of_sgemm']:.0%} of the {row['sgemm_gflops']:.0f} GFLOP/s that "
              f"the same BLAS reaches on a {_SGEMM_SIZE}^3 sgemm{same_isa}")


def _chart(path: Path, results: list[Measurement]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--chart needs matplotlib: pip install matplotlib") from None
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for engine in dict.fromkeys(_label(m) for m in results):
        for threads in dict.fromkeys(m.threads for m in results):
            points = [(m.batch_size, m.images_per_second) for m in results
                      if _label(m) == engine and m.threads == threads]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", label=f"{engine} ({threads} threads)")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("batch size")
    axis.set_ylabel("images/s")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
