"""Concurrent use of one Network: identical results, the GIL released during compute, loading
while predicting, and a clean interpreter exit with calls in flight."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import mlpinfer

THREADS = 8
CALLS = 1000


def make_network(seed: int = 0, widths=(20, 32, 16, 10)) -> mlpinfer.Network:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
        params[f"W{i}"] = rng.standard_normal((n_in, n_out)).astype(np.float32) / np.sqrt(n_in)
        params[f"b{i}"] = rng.standard_normal(n_out).astype(np.float32)
    return mlpinfer.Network.from_params(params, hidden="tanh", output="softmax")


def random_input(rng: np.random.Generator, width: int) -> np.ndarray:
    rows = int(rng.integers(0, 301))
    kind = rng.integers(0, 3)
    if kind == 0:
        return rng.standard_normal((rows, width)).astype(np.float32)
    if kind == 1:
        return rng.standard_normal((rows, width))
    return rng.integers(0, 256, (rows, width), dtype=np.uint8)


def run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as error:  # noqa: BLE001 -- reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a predict thread hung"
    return errors


def test_shared_network_gives_serial_results_under_contention():
    network = make_network()
    rng = np.random.default_rng(1)
    inputs = [[random_input(rng, network.n_inputs) for _ in range(CALLS)] for _ in range(THREADS)]
    expected = [[network.predict(x) for x in per_thread] for per_thread in inputs]
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        start.wait()
        for call, x in enumerate(inputs[index]):
            got = network.predict(x)
            if not np.array_equal(got, expected[index][call], equal_nan=True):
                raise AssertionError(
                    f"thread {index} call {call}: {x.dtype} {x.shape} differs from the serial result"
                )

    assert run_threads(work, THREADS) == []


def test_threads_argument_under_contention_matches_serial():
    # Explicit threads=2 from every caller: the pool is contended and callers that do
    # not get it run alone; the partition of rows must not change the answer.
    network = make_network(2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, network.n_inputs)).astype(np.float32)
    expected = network.predict(x, threads=2)

    def work(index: int) -> None:
        for _ in range(20):
            np.testing.assert_array_equal(network.predict(x, threads=2), expected)

    assert run_threads(work, 4) == []


def test_gil_is_released_during_compute():
    network = make_network(4, widths=(784, 512, 512, 10))
    x = np.random.default_rng(5).standard_normal((200_000, 784)).astype(np.float32)
    started = threading.Event()
    progressed = threading.Event()
    counter = []

    def helper() -> None:
        started.wait()
        counter.append(1)  # Python bytecode: runs only while the main thread lets go of the GIL
        progressed.set()

    thread = threading.Thread(target=helper)
    switch = sys.getswitchinterval()
    # With a switch interval far longer than the test, the interpreter never hands the GIL
    # over on its own: the helper can only run if predict releases it.
    sys.setswitchinterval(60.0)
    try:
        thread.start()
        started.set()
        seen = False
        for _ in range(5):
            network.predict(x)
            seen = progressed.is_set()
            if seen:
                break
    finally:
        sys.setswitchinterval(switch)
        thread.join(timeout=30)
    assert seen, "no other Python thread ran during predict"
    assert counter == [1]


def test_loading_while_predicting(tmp_path: Path):
    network = make_network(6)
    mlpinfer.save(network, tmp_path / "net.npz")
    params = {k: np.asarray(v) for k, v in network.params().items()}
    x = np.random.default_rng(7).standard_normal((257, network.n_inputs)).astype(np.float32)
    expected = network.predict(x)
    stop = threading.Event()

    def work(index: int) -> None:
        if index % 2 == 0:
            while not stop.is_set():
                np.testing.assert_array_equal(network.predict(x), expected)
            return
        try:
            for round_ in range(30):
                if index == 1:
                    loaded = mlpinfer.load(tmp_path / "net.npz")
                elif index == 3:
                    loaded = mlpinfer.Network.from_params(params, hidden="tanh", output="softmax")
                else:
                    loaded = make_network(6)
                    mlpinfer.save(loaded, tmp_path / f"copy-{index}-{round_}.npz")
                np.testing.assert_array_equal(loaded.predict(x), expected)
        finally:
            stop.set()

    assert run_threads(work, 6) == []


EXIT_SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    import mlpinfer

    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((64, 256)).astype(np.float32), "b1": np.zeros(256, np.float32),
              "W2": rng.standard_normal((256, 10)).astype(np.float32), "b2": np.zeros(10, np.float32)}
    network = mlpinfer.Network.from_params(params)
    x = rng.standard_normal((50_000, 64)).astype(np.float32)
    running = [threading.Event() for _ in range(4)]

    def loop(ready, threads):
        while True:
            network.predict(x, threads=threads)
            ready.set()

    for i, ready in enumerate(running):
        threading.Thread(target=loop, args=(ready, 1 + i % 2), daemon=True).start()
    for ready in running:
        ready.wait()
    print("exiting with calls in flight", flush=True)
    """
)


@pytest.mark.parametrize("how", ["return from main", "sys.exit"])
def test_no_deadlock_at_exit_with_calls_in_flight(how):
    script = EXIT_SCRIPT + ("raise SystemExit(0)\n" if how == "sys.exit" else "")
    # Where the exit lands in a call is a race: a few runs make a failure likely to show.
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "exiting with calls in flight" in result.stdout
