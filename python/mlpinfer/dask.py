"""Score image sets of any size with Dask: lazy ``predict``/``classify``, and ``accuracy``.

Install with ``pip install "mlpinfer[dask]"`` (Dask's ``array`` and ``distributed`` extras).
The same mlpinfer version must be installed on every worker.

Each function takes a :class:`mlpinfer.Network` and a ``dask.array`` of samples, shaped
``(N, features)`` or ``(N, 28, 28)``-like (flattened per block), chunked in any way along
the sample axis. Chunks across the feature axes are merged into one: a block needs whole
samples. dtypes follow ``Network.predict`` (float32, float64, uint8 pixels).

The network is one key of the graph that every block task depends on, so it is shipped
with the graph once and each worker receives it once, not once per task.

Threads. Dask runs one task per worker thread, and the engine gives each task a share of
the cores so that the two never multiply (``threads=None``):

- on a ``dask.distributed`` worker: ``OMP_NUM_THREADS`` engine threads per task when the
  environment sets it (the nanny sets it to 1 by default: Dask's own budget for native
  thread pools), else ``max(1, cores // worker threads)``;
- in the threaded scheduler's pool: ``max(1, cores // pool threads)``, usually 1;
- in the synchronous scheduler: the engine's default (``mlpinfer.get_num_threads()``).

Recommended layout: processes x threads = cores on every host (Dask's default). Inference
releases the GIL, so threads scale as well as processes: one worker process per host (or
per NUMA node) with ``--nthreads`` = cores holds one copy of the network and moves no data
between processes; use more processes only for GIL-bound steps elsewhere in the graph.
Make chunks of 10,000 to 100,000 samples, and at least as many chunks as the cluster has
threads. Pass ``threads=`` to give each task a fixed number of engine threads instead
(e.g. on a worker deliberately run with fewer threads than cores).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from ._network import Network, _positive_int

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.system import CPU_COUNT
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        'mlpinfer.dask needs Dask: pip install "mlpinfer[dask]" '
        '(or pip install "dask[array,distributed]")'
    ) from error

__all__ = ["accuracy", "classify", "from_npy", "predict"]


def predict(
    network: Network,
    images: da.Array,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
) -> da.Array:
    """Lazy network outputs: a float32 dask array (N, outputs), chunked like ``images``.

    ``batch_size`` is passed to ``Network.predict`` in every block; ``threads`` fixes the
    engine threads per task (default: the worker's share, see the module docstring).
    """
    return _map_samples(_predict_block, network, images, batch_size, threads, np.float32,
                        outputs_axis=True)


def classify(
    network: Network,
    images: da.Array,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
) -> da.Array:
    """Lazy class labels: an int64 dask array (N,), as ``Network.classify`` per block."""
    return _map_samples(_classify_block, network, images, batch_size, threads, np.int64,
                        outputs_axis=False)


def accuracy(
    network: Network,
    images: da.Array,
    labels: da.Array | npt.ArrayLike,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    compute: bool = True,
) -> float | da.Array:
    """Fraction of samples whose label equals ``labels`` (labels, or one-hot rows).

    Computes with the current scheduler (an active ``distributed.Client`` if any) and
    returns a float; ``compute=False`` returns a lazy 0-d float64 dask array instead,
    to compute together with other results.
    """
    predicted = classify(network, images, batch_size=batch_size, threads=threads)
    truth = network.true_labels(
        labels if isinstance(labels, da.Array) else da.from_array(np.asarray(labels))
    )
    samples = predicted.shape[0]
    if not math.isnan(truth.shape[0]) and not math.isnan(samples) and truth.shape[0] != samples:
        raise ValueError(
            f"labels must hold one label or one-hot row per sample ({samples}), "
            f"got shape {labels.shape if hasattr(labels, 'shape') else np.shape(labels)}"
        )
    if samples == 0:
        raise ValueError("accuracy of an empty set is undefined: images has 0 samples")
    truth = truth.rechunk({0: predicted.chunks[0]})
    score = (predicted == truth).mean(dtype=np.float64)
    return float(score.compute()) if compute else score


def from_npy(path: str | os.PathLike[str], *, chunks: int | str = "auto") -> da.Array:
    """A lazy dask array over a ``.npy`` file, ``chunks`` samples (rows) per block.

    Each task opens the file by path (memory-mapped) and reads only its rows: nothing is
    read on the client but the header, and the graph carries the path, not the data (an
    ``np.memmap`` would pickle its contents). Every worker must see the file at ``path``,
    e.g. on shared storage.
    """
    path = os.path.abspath(os.fspath(path))
    header = np.load(path, mmap_mode="r")
    shape, dtype = header.shape, header.dtype
    del header
    if len(shape) == 0:
        raise ValueError(f"{path} holds a scalar, expected an array of samples")
    source = _NpyFile(path, shape, dtype)
    block_chunks = da.core.normalize_chunks((chunks, *(-1,) * (len(shape) - 1)), shape,
                                            dtype=dtype)
    stat = os.stat(path)
    name = "npy-" + tokenize(path, stat.st_size, stat.st_mtime_ns, block_chunks)
    return da.from_array(source, chunks=block_chunks, name=name, lock=False, asarray=True,
                         meta=np.empty((0,) * len(shape), dtype=dtype))


class _NpyFile:
    """Array-like over a ``.npy`` path that pickles as the path and maps it on first use."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        # A view of the mapping: the engine reads the rows straight from the page cache.
        return np.load(self.path, mmap_mode="r")[index]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_NpyFile, (self.path, self.shape, self.dtype))


def _map_samples(
    function: Any,
    network: Network,
    images: da.Array,
    batch_size: int | None,
    threads: int | None,
    dtype: type,
    *,
    outputs_axis: bool,
) -> da.Array:
    if not isinstance(network, Network):
        raise TypeError(f"network must be an mlpinfer.Network, got {type(network).__name__}")
    if not isinstance(images, da.Array):
        raise TypeError(
            f"images must be a dask.array (e.g. da.from_array(x, chunks=...)), "
            f"got {type(images).__name__}; for NumPy input use network.predict"
        )
    if images.ndim < 2 or math.prod(images.shape[1:]) != network.n_inputs:
        raise ValueError(
            f"expected (N, {network.n_inputs}) samples or (N, ...) with {network.n_inputs} "
            f"values per sample; got a dask array of shape {images.shape}"
        )
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    if threads is not None:
        threads = _positive_int(threads, "threads")
    # Raises Network.predict's own dtype error here, not later inside a worker.
    network.predict(np.empty((0, network.n_inputs), dtype=images.dtype))

    images = images.rechunk({axis: -1 for axis in range(1, images.ndim)})
    sample_axes = "".join(chr(ord("b") + axis) for axis in range(images.ndim - 1))
    out_axes = "az" if outputs_axis else "a"
    return da.blockwise(
        function, out_axes,
        images, "a" + sample_axes,
        _network_key(network), None,
        batch_size, None,
        threads, None,
        new_axes={"z": network.n_outputs} if outputs_axis else {},
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0,) * len(out_axes), dtype=dtype),
        token=f"mlpinfer-{function.__name__.strip('_').removesuffix('_block')}",
    )


def _network_key(network: Network) -> Delayed:
    # Named by content, so that tokenising does not pickle the network, and two calls with
    # the same weights share one key in a combined graph.
    norms = [None if layer.norm is None else (layer.norm.gamma, layer.norm.beta, layer.norm.epsilon,
                                               layer.norm_after_activation)
             for layer in network.layers]
    transform = network.input_transform
    token = tokenize(network.params(), network.activations, norms, network.input_scale,
                     network.pixel_scale, network.classes_,
                     None if transform is None else (transform.shift, transform.multiplier))
    return dask.delayed(network, name=f"mlpinfer-network-{token}", pure=True)


def _predict_block(
    block: np.ndarray, network: Network, batch_size: int | None, threads: int | None
) -> np.ndarray:
    return network.predict(
        _as_rows(block, network),
        batch_size=batch_size,
        threads=threads if threads is not None else _task_threads(),
    )


def _classify_block(
    block: np.ndarray, network: Network, batch_size: int | None, threads: int | None
) -> np.ndarray:
    return network.classify(
        _as_rows(block, network),
        batch_size=batch_size,
        threads=threads if threads is not None else _task_threads(),
    )


def _as_rows(block: np.ndarray, network: Network) -> np.ndarray:
    # Always 2-D, so that a block of one sample is not answered as a single sample.
    return block.reshape(block.shape[0], network.n_inputs)


def _task_threads() -> int | None:
    """Engine threads for the task running on this thread; None: the engine's default."""
    worker = _distributed_worker()
    if worker is not None:
        budget = os.environ.get("OMP_NUM_THREADS", "")
        if budget.isdigit() and int(budget) > 0:
            return int(budget)
        return max(1, CPU_COUNT // worker.state.nthreads)
    if threading.current_thread() is threading.main_thread() and (
        multiprocessing.parent_process() is None
    ):
        return None  # the synchronous scheduler: this task is the only one running
    # The threaded (or processes) scheduler runs num_workers tasks at once, CPU_COUNT
    # unless configured.
    pool = dask.config.get("num_workers", None) or CPU_COUNT
    return max(1, CPU_COUNT // pool)


def _distributed_worker() -> Any:
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:
        return None
