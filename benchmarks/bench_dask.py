"""Throughput of mlpinfer.dask against one plain ``Network.predict`` call, on the same data.

    python benchmarks/bench_dask.py                 # 1,000,000 images, 3 timed runs each
    python benchmarks/bench_dask.py --rows 200000 --json

The images (uint8, N x 784) are written once to a ``.npy`` file and read from it by every
method: a memory map for the plain call, ``mlpinfer.dask.from_npy`` for Dask. Each method
runs once untimed (page cache, worker start-up and imports), then ``--repeats`` timed
rounds over all methods; the table shows the median and the fastest run. Dask results are gathered to the client like ``predict``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dask
import distributed
import numpy as np

import mlpinfer
import mlpinfer.dask as mdask

# (worker processes, threads per worker)
CLUSTER_LAYOUTS = [(2, 1), (1, 2)]


def textbook_shaped_network(seed: int = 0) -> mlpinfer.Network:
    rng = np.random.default_rng(seed)
    params = {}
    widths = [784, 50, 100, 10]
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
        params[f"W{i}"] = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
        params[f"b{i}"] = rng.standard_normal(n_out) * 0.5
    return mlpinfer.Network.from_params(params, hidden="sigmoid", output="softmax")


def write_images(path: Path, rows: int, chunk: int = 50_000) -> None:
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 784))
    rng = np.random.default_rng(6)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        target[start:stop] = np.frombuffer(rng.bytes((stop - start) * 784), np.uint8).reshape(
            stop - start, 784
        )
    target.flush()


def measure(path: Path, rows: int, chunk: int, repeats: int) -> list[dict[str, object]]:
    network = textbook_shaped_network()
    stored = np.load(path, mmap_mode="r")
    outputs = mdask.predict(network, mdask.from_npy(path, chunks=chunk))
    methods: list[tuple[str, str, Callable[[], object]]] = [
        ("Network.predict", f"1 process, {mlpinfer.get_num_threads()} engine threads",
         lambda: network.predict(stored)),
        ("dask threaded scheduler", f"1 process, {dask.system.CPU_COUNT} threads",
         lambda: outputs.compute(scheduler="threads")),
    ]
    with contextlib.ExitStack() as stack:
        for processes, threads_per_worker in CLUSTER_LAYOUTS:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=processes, threads_per_worker=threads_per_worker, processes=True,
                dashboard_address=":0"))
            client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
            methods.append((
                "dask.distributed LocalCluster",
                f"{processes} processes x {threads_per_worker} threads",
                functools.partial(lambda c: c.compute(outputs).result(), client),
            ))
        # Rounds over all methods, rather than all runs of one method in a row, so that
        # load from other processes on the machine falls on every method alike.
        seconds: list[list[float]] = [[] for _ in methods]
        for round_number in range(repeats + 1):
            for (_, _, run), times in zip(methods, seconds, strict=True):
                started = time.perf_counter()
                run()
                if round_number:  # the first round warms the page cache and the workers
                    times.append(time.perf_counter() - started)
    results = []
    for (method, layout, _), times in zip(methods, seconds, strict=True):
        median = statistics.median(times)
        results.append({
            "method": method, "layout": layout, "rows": rows, "chunk": chunk,
            "seconds": times, "median_seconds": median, "images_per_second": rows / median,
        })
    return results


def print_table(results: list[dict[str, object]]) -> None:
    header = ("method", "layout", "images/s (median)", "median s", "fastest s")
    rows = [(str(r["method"]), str(r["layout"]), f"{r['images_per_second']:,.0f}",
             f"{r['median_seconds']:.2f}", f"{min(r['seconds']):.2f}") for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="images (default 1M)")
    parser.add_argument("--chunk", type=int, default=62_500, help="images per dask block")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    parser.add_argument("--data", type=Path, help="reuse or create this .npy file")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_dask_") as scratch:
        path = args.data or Path(scratch) / "images.npy"
        if not path.exists():
            print(f"writing {args.rows:,} images to {path}", flush=True)
            write_images(path, args.rows)
        rows = int(np.load(path, mmap_mode="r").shape[0])
        print(f"{platform.node()}: {os.cpu_count()} CPUs, dask {dask.__version__}, "
              f"distributed {distributed.__version__}", flush=True)
        results = measure(path, rows, args.chunk, args.repeats)
    print()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                        "processor": platform.processor(), "python": platform.python_version()},
            "versions": {"mlpinfer": importlib.metadata.version("mlpinfer"),
                         "dask": dask.__version__, "distributed": distributed.__version__,
                         "numpy": np.__version__},
            "results": results,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
