"""Type stub of the compiled engine (python/bindings.cpp). Use the mlpinfer package."""

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__version__: str

_Array: TypeAlias = npt.NDArray[np.float32]
# (gamma, beta, epsilon, after_activation)
_NormSpec: TypeAlias = tuple[_Array, _Array, float, bool] | None
# (W, b, activation name, alpha, beta, norm): alpha and beta are the activation's
# parameters (leaky_relu's slope, elu's alpha, hard_sigmoid's slope and offset).
_LayerSpec: TypeAlias = tuple[_Array, _Array, str, float, float, _NormSpec]

# (shift, multiplier), float64, one value per input feature: see mlpinfer.InputTransform.
_TransformSpec: TypeAlias = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None

class Network:
    def __init__(self, layers: list[_LayerSpec], transform: _TransformSpec) -> None: ...
    @property
    def input_width(self) -> int: ...
    @property
    def output_width(self) -> int: ...
    def predict(self, x: np.ndarray, input_scale: float, threads: int) -> npt.NDArray[np.float32]: ...
    def forward(
        self, x: np.ndarray, input_scale: float, out: npt.NDArray[np.float32], threads: int
    ) -> None: ...

def default_threads() -> int: ...
def set_default_threads(threads: int) -> None: ...
def cpu_info() -> dict[str, str | bool | list[str]]: ...
def blas_info() -> str: ...
def time_blas_sgemm(n: int, threads: int, repeats: int) -> float: ...
