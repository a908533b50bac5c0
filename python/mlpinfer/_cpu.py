"""Which kernels the engine runs on this CPU."""

from __future__ import annotations

import os

from ._errors import MaxIsaError
from ._network import _core

ISA_VARIABLE = "MLPINFER_MAX_ISA"


def cpu_info() -> dict[str, object]:
    """The engine's kernel family and what this CPU offers.

    Returns a new dict:

    - ``"isa"``: the kernels in use, ``"avx512"``, ``"avx2"`` or ``"baseline"`` on x86-64
      (``"neon"`` or ``"baseline"`` on ARM64), chosen once at import: the best this CPU
      runs, capped by the environment variable ``MLPINFER_MAX_ISA`` if it is set.
    - ``"supported"``: the kernel families this CPU runs, best first.
    - ``"fused_multiply_add"``: whether the kernels in use fuse multiply-adds. Every
      family that does gives bit-identical outputs on every CPU; ``"baseline"`` does not,
      and its outputs differ from theirs within the reference tolerance.
    - ``"max_isa"``: the value of ``MLPINFER_MAX_ISA`` at import, or None.
    """
    info: dict[str, object] = dict(_IN_USE)
    info["supported"] = list(_IN_USE["supported"])
    info["max_isa"] = _MAX_ISA_AT_IMPORT
    return info


def describe_kernels(info: dict[str, object]) -> str:
    """One line for reports: ``avx2 (this CPU runs avx512, avx2, baseline; MLPINFER_MAX_ISA=avx2)``."""
    supported = info["supported"]
    assert isinstance(supported, list)
    cap = f"{ISA_VARIABLE}={info['max_isa']}" if info["max_isa"] else f"{ISA_VARIABLE} unset"
    return f"{info['isa']} (this CPU runs {', '.join(supported)}; {cap})"


def _choose_kernels() -> dict[str, object]:
    try:
        return _core.cpu_info()
    except ValueError as error:  # the core's one ValueError here: an unknown cap
        raise MaxIsaError(str(error)) from None


_MAX_ISA_AT_IMPORT = os.environ.get(ISA_VARIABLE) or None
# The kernels are chosen now, at import, so that a bad MLPINFER_MAX_ISA fails the import
# with a ValueError naming the valid values, rather than the first prediction.
_IN_USE = _choose_kernels()
