"""Which kernels the engine runs on this CPU."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

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


def hiding_library() -> Path | None:
    """The library that shows a process preloading it (``LD_PRELOAD``) a CPU without
    AVX-512 and AMX, as an AVX2-only CPU (cpp/tools/hide_avx512.cpp), or None where this
    build has none (it is built on Linux x86-64)."""
    path = Path(str(_core.__file__)).with_name("hide-avx512.so")
    return path if path.is_file() else None


def avx512_can_be_hidden() -> bool:
    """Whether a process preloading :func:`hiding_library` sees an AVX2-only CPU here:
    this CPU has AVX-512, the build has the library, and Linux makes CPUID trap on this
    CPU (the ``cpuid_fault`` flag)."""
    if "avx512" not in _IN_USE["supported"] or hiding_library() is None:  # type: ignore[operator]
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "cpuid_fault" in flags


def avx512_hidden_here() -> bool:
    """Whether this process preloaded :func:`hiding_library` and its CPUID now hides
    AVX-512 (RTLD_NOLOAD: this never loads the library, which would start hiding in the
    middle of a run)."""
    library = hiding_library()
    if library is None:
        return False
    try:
        handle = ctypes.CDLL(str(library), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except OSError:
        return False
    return bool(handle.mlpinfer_hidden_avx512())


_MAX_ISA_AT_IMPORT = os.environ.get(ISA_VARIABLE) or None
# The kernels are chosen now, at import, so that a bad MLPINFER_MAX_ISA fails the import
# with a ValueError naming the valid values, rather than the first prediction.
_IN_USE = _choose_kernels()
