"""mlpinfer: fast, exact CPU inference for multilayer perceptrons."""

from ._errors import DataError, MlpinferError, WeightsError
from ._network import Layer, Network, get_num_threads, load, set_num_threads
from .importers import convert

__all__ = [
    "DataError",
    "Layer",
    "MlpinferError",
    "Network",
    "WeightsError",
    "convert",
    "get_num_threads",
    "load",
    "set_num_threads",
]
