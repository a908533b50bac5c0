"""mlpinfer.dask against single-process predict: chunkings, dtypes, threads, shipping, 1M images.

A dask result is compared bit for bit with ``network.predict`` on the same chunks (with the
threads the task used) and, since a row's arithmetic does not depend on how a call groups
its rows (for layers of at most 4,096 inputs and outputs), bit for bit with one call on the whole input.
"""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from support import random_network

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


import mlpinfer
import mlpinfer.dask as mdask


def textbook_shaped_network(seed: int = 0) -> mlpinfer.Network:
    return random_network((784, 50, 100, 10), rng=np.random.default_rng(seed))


def per_chunk_predict(network, x, chunks, threads=1):
    bounds = np.cumsum((0, *chunks))
    return np.concatenate(
        [network.predict(x[a:b], threads=threads) for a, b in itertools.pairwise(bounds)]
    )


def assert_equal_rows(actual, expected):
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype}, expected {expected.dtype}"
    differ = np.nonzero((actual != expected).reshape(len(actual), -1).any(axis=1))[0]
    if differ.size:
        row = int(differ[0])
        raise AssertionError(
            f"{differ.size} rows differ; first row {row}: expected {expected[row]!r}, "
            f"got {actual[row]!r}"
        )


@pytest.fixture(scope="module")
def network() -> mlpinfer.Network:
    return textbook_shaped_network()


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (2500, 28, 28), dtype=np.uint8)


# ---------------------------------------------------------------------- threaded scheduler


@pytest.mark.parametrize(
    "chunks",
    [2500, 1000, (1, 1023, 1476), (700, 300, 1, 1499), 64],
    ids=["one-chunk", "even", "uneven", "uneven-with-1-row", "small"],
)
def test_predict_matches_predict_on_the_same_chunks(network, pixels, chunks):
    x = pixels.reshape(len(pixels), 784)
    images = da.from_array(x, chunks=(chunks, 784))
    outputs = mdask.predict(network, images)
    assert outputs.shape == (2500, 10)
    assert outputs.chunks[0] == images.chunks[0]
    actual = outputs.compute(scheduler="threads")
    assert_equal_rows(actual, per_chunk_predict(network, x, images.chunks[0]))
    # Each row's result is independent of the split: one call agrees.
    assert_equal_rows(actual, network.predict(x))


def test_image_input_is_flattened_and_feature_chunks_are_merged(network, pixels):
    images = da.from_array(pixels, chunks=(333, 7, 14))
    actual = mdask.predict(network, images).compute(scheduler="threads")
    assert_equal_rows(actual, per_chunk_predict(network, pixels, images.chunks[0]))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.float16])
def test_dtypes_follow_the_network_policy(network, pixels, dtype):
    x = pixels[:1200].reshape(1200, 784)
    x = x if dtype == np.uint8 else (x / 255).astype(dtype)
    images = da.from_array(x, chunks=(500, 392))
    actual = mdask.predict(network, images).compute(scheduler="threads")
    assert_equal_rows(actual, per_chunk_predict(network, x, images.chunks[0]))


def test_batch_size_is_passed_to_every_block(network, pixels):
    x = pixels.reshape(len(pixels), 784)
    actual = mdask.predict(network, da.from_array(x, chunks=(1000, 784)), batch_size=300)
    expected = np.concatenate(
        [network.predict(x[a:a + 1000], batch_size=300, threads=1) for a in (0, 1000, 2000)]
    )
    assert_equal_rows(actual.compute(scheduler="threads"), expected)


def test_classify_and_accuracy_match_the_network(network, pixels):
    images = da.from_array(pixels, chunks=(600, 28, 28))
    labels = np.concatenate([network.classify(pixels[a:a + 600], threads=1)
                             for a in range(0, 2500, 600)])
    predicted = mdask.classify(network, images)
    assert predicted.dtype == np.int64
    assert_equal_rows(predicted.compute(scheduler="threads"), labels)

    truth = np.random.default_rng(4).integers(0, 10, 2500)
    truth[:1000] = labels[:1000]  # an accuracy far from chance, so a mix-up shows
    expected = float(np.count_nonzero(labels == truth)) / 2500
    assert mdask.accuracy(network, images, truth) == expected
    assert mdask.accuracy(network, images, np.eye(10)[truth]) == expected
    assert mdask.accuracy(network, images, da.from_array(truth, chunks=777)) == expected
    lazy = mdask.accuracy(network, images, truth, compute=False)
    assert isinstance(lazy, da.Array)
    assert lazy.ndim == 0
    assert float(lazy.compute()) == expected


def test_accuracy_rejects_labels_of_another_length_and_empty_sets(network, pixels):
    images = da.from_array(pixels, chunks=(1000, 28, 28))
    with pytest.raises(ValueError, match=r"one label or one-hot row per sample \(2500\)"):
        mdask.accuracy(network, images, np.zeros(2499, dtype=np.int64))
    with pytest.raises(ValueError, match="0 samples"):
        mdask.accuracy(network, images[:0], np.zeros(0, dtype=np.int64))


def test_bad_inputs_fail_on_the_client_with_the_network_messages(network, pixels):
    with pytest.raises(TypeError, match=r"dask\.array"):
        mdask.predict(network, pixels)
    with pytest.raises(TypeError, match=r"mlpinfer\.Network"):
        mdask.predict("weights.pkl", da.from_array(pixels))
    with pytest.raises(ValueError, match="784 values per sample"):
        mdask.predict(network, da.from_array(pixels[:, :27]))
    with pytest.raises(ValueError, match="784 values per sample"):
        mdask.predict(network, da.from_array(pixels[0, 0]))
    with pytest.raises(TypeError, match="got dtype int32"):
        mdask.predict(network, da.from_array(pixels.astype(np.int32)))
    with pytest.raises(ValueError, match="threads must be at least 1"):
        mdask.predict(network, da.from_array(pixels), threads=0)


def test_predict_is_lazy(network, monkeypatch):
    calls = []
    monkeypatch.setattr(mlpinfer.Network, "predict", lambda *args, **kwargs: calls.append(1))
    images = da.zeros((10_000, 784), chunks=1000, dtype=np.float32)
    outputs = mdask.predict(network, images)
    assert calls == [1]  # the zero-row dtype check on the client, no block
    assert outputs.dtype == np.float32


def test_the_network_is_one_key_that_every_block_task_depends_on(network, pixels):
    images = da.from_array(pixels, chunks=(100, 28, 28))
    (outputs,) = dask.optimize(mdask.predict(network, images))
    graph = dict(outputs.__dask_graph__())
    network_keys = [key for key, task in graph.items()
                    if isinstance(getattr(task, "value", None), mlpinfer.Network)]
    assert len(network_keys) == 1
    block_keys = [key for key in graph if key[0] == outputs.name]
    assert len(block_keys) == 25
    for key in block_keys:
        assert network_keys[0] in graph[key].dependencies
    assert sum(pickle.dumps(task).count(b"_rebuild") for task in graph.values()) == 1


def test_networks_that_differ_only_in_their_input_transform_have_different_keys(network):
    """A shared key would let a combined graph run one network's blocks with the other."""
    transforms = [mlpinfer.InputTransform(np.zeros(784), np.ones(784)),
                  mlpinfer.InputTransform(np.zeros(784), np.full(784, 2.0)), None]
    networks = [mlpinfer.Network(network.layers, input_transform=t) for t in transforms]
    images = da.zeros((20, 784), chunks=10, dtype=np.float32) + 0.5
    keys = set()
    for net in networks:
        graph = dict(mdask.predict(net, images).__dask_graph__())
        keys |= {key for key, task in graph.items()
                 if isinstance(getattr(task, "value", None), mlpinfer.Network)}
    assert len(keys) == 3


def test_two_networks_in_one_graph_each_compute_their_own_outputs(network):
    """Outputs were named "mlpinfer-predict" whatever the network: computed together, the
    second network's blocks were the first's."""
    other = mlpinfer.Network(network.layers, input_transform=mlpinfer.InputTransform(
        np.full(784, 0.25), np.full(784, 3.0)))
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    images = da.from_array(x, chunks=10)
    first, second = dask.compute(mdask.predict(network, images), mdask.predict(other, images))
    np.testing.assert_array_equal(first, network.predict(x))
    np.testing.assert_array_equal(second, other.predict(x))


def test_threaded_scheduler_tasks_get_their_share_of_the_cores(network, pixels, monkeypatch):
    seen = set()
    predict = mlpinfer.Network.predict

    def recording(self, x, *, batch_size=None, threads=None):
        seen.add(threads)
        return predict(self, x, batch_size=batch_size, threads=threads)

    monkeypatch.setattr(mlpinfer.Network, "predict", recording)
    outputs = mdask.predict(network, da.from_array(pixels, chunks=(250, 28, 28)))
    cores = dask.system.CPU_COUNT
    seen.clear()
    outputs.compute(scheduler="threads")
    assert seen == {1}  # the default pool has one thread per core
    seen.clear()
    with dask.config.set(num_workers=1):
        outputs.compute(scheduler="threads")
    assert seen == {cores}
    seen.clear()
    outputs.compute(scheduler="sync")
    assert seen == {None}  # one task at a time: the engine's default
    fixed = mdask.predict(network, da.from_array(pixels, chunks=(250, 28, 28)), threads=3)
    seen.clear()
    fixed.compute(scheduler="threads")
    assert seen == {3}


# ---------------------------------------------------------------------- .npy input


def test_from_npy_reads_rows_lazily_and_pickles_as_the_path(tmp_path, pixels):
    path = tmp_path / "pixels.npy"
    np.save(path, pixels)
    images = mdask.from_npy(path, chunks=1000)
    assert images.shape == pixels.shape
    assert images.dtype == np.uint8
    assert images.chunks == ((1000, 1000, 500), (28,), (28,))
    assert len(pickle.dumps(dict(images.__dask_graph__()))) < 10_000
    np.testing.assert_array_equal(images[1500:2100].compute(), pixels[1500:2100])
    assert mdask.from_npy(path, chunks=500).name != images.name


# ---------------------------------------------------------------------- distributed


class CountingNetwork(mlpinfer.Network):
    """Logs to ``log`` each pickling, unpickling and block task, with the process's pid."""

    log: str

    def __reduce__(self):
        _record(self.log, "pickled")
        _, (params, activations, input_scale, *_) = super().__reduce__()
        return (_rebuild_counting, (params, activations, input_scale, self.log))

    def predict(self, x, **kwargs):
        _record(self.log, "task")
        return super().predict(x, **kwargs)


def _record(log, event):
    with open(log, "a") as stream:
        stream.write(f"{event} {os.getpid()}\n")


def _rebuild_counting(params, activations, input_scale, log):
    _record(log, "received")
    base = mlpinfer.Network.from_params(params, activations=activations, input_scale=input_scale)
    network = CountingNetwork(base.layers, input_scale=input_scale)
    network.log = log
    return network


@pytest.fixture(scope="module")
def cluster_client():
    """Two worker processes of one thread each, as on a 2-core machine.

    Work stealing and the active memory manager are off: both move data by timing (a
    stolen task is sent a second time, a dropped replica is fetched again), which made the
    count of network shipments vary under load. The scheduler then places each task once.
    """
    # A random dashboard port: the default 8787 may be taken, and its warning is an error.
    with dask.config.set({"distributed.scheduler.work-stealing": False,
                          "distributed.scheduler.active-memory-manager.start": False}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_distributed_ships_the_network_once_per_worker_not_per_task(
    cluster_client, tmp_path, pixels
):
    base = textbook_shaped_network(seed=5)
    network = CountingNetwork(base.layers)
    network.log = str(tmp_path / "pickles.log")
    images = da.from_array(pixels, chunks=(50, 28, 28))
    outputs = mdask.predict(network, images)
    assert outputs.numblocks[0] == 50
    actual = outputs.compute()
    events = [line.split() for line in Path(network.log).read_text().splitlines()]
    pickled = [pid for event, pid in events if event == "pickled"]
    received = collections.Counter(pid for event, pid in events if event == "received")
    ran_tasks = {pid for event, pid in events if event == "task"} - {str(os.getpid())}
    workers = {str(pid) for pid in cluster_client.run(os.getpid).values()}
    # Both workers ran blocks (else "once per worker" would not be tested) ...
    assert ran_tasks == workers, (ran_tasks, workers)
    # ... and the network arrived once in the scheduler (this process, with the graph) and
    # once in each worker (from the scheduler, or from the other worker): 3 shipments for
    # 50 tasks, each one pickling.
    assert received == collections.Counter({str(os.getpid()): 1} | dict.fromkeys(workers, 1)), \
        events
    assert len(pickled) == sum(received.values()), events
    assert_equal_rows(actual, per_chunk_predict(base, pixels, images.chunks[0]))


def test_distributed_tasks_get_one_engine_thread_per_worker_thread(cluster_client):
    workers = list(cluster_client.scheduler_info()["workers"])
    budgets = [
        cluster_client.submit(mdask._task_threads, workers=[address], pure=False).result()
        for address in workers
    ]
    assert budgets == [1, 1]


def write_npy_in_chunks(path: Path, rows: int, features: int, chunk: int) -> None:
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, features))
    rng = np.random.default_rng(6)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        target[start:stop] = np.frombuffer(rng.bytes((stop - start) * features), np.uint8) \
            .reshape(stop - start, features)
    target.flush()
    del target


def test_a_million_images_from_a_npy_file_on_two_worker_processes(
    cluster_client, tmp_path, network
):
    rows, chunk = 1_000_000, 62_500
    path = tmp_path / "images.npy"
    write_npy_in_chunks(path, rows, 784, chunk)
    images = mdask.from_npy(path, chunks=chunk)
    outputs = mdask.predict(network, images)
    # The client ships the path and the network, not the 784 MB of images.
    shipped = len(pickle.dumps(dict(outputs.__dask_graph__())))
    assert shipped < len(pickle.dumps(network)) + 20_000

    started = time.perf_counter()
    actual = outputs.compute()
    seconds = time.perf_counter() - started
    assert actual.shape == (rows, 10)
    print(f"\n1,000,000 images on 2 worker processes: {seconds:.2f} s, "
          f"{rows / seconds:,.0f} images/s")

    # Compared with a single-process predict in slices that are not the Dask chunks
    # and use the default threads: every row is bit-identical all the same.
    stored = np.load(path, mmap_mode="r")
    step = 100_000
    for start in range(0, rows, step):
        expected = network.predict(stored[start:start + step])
        assert_equal_rows(actual[start:start + step], expected)
    labels = mdask.classify(network, images).compute()
    np.testing.assert_array_equal(labels, np.argmax(actual, axis=1))
