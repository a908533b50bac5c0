"""What counts as a finding, shared by the harnesses.

A finding is any exception other than the harness's expected error type. For a long
exploratory run while findings are open, ``MLPINFER_FUZZ_KNOWN`` may list signatures
(``ExceptionType:function``, the function being the innermost mlpinfer frame, as printed
for each finding) to step over, so the fuzzer keeps looking for new ones. CI leaves it unset.
"""

from __future__ import annotations

import os
import sys
import traceback

_KNOWN = frozenset(filter(None, os.environ.get("MLPINFER_FUZZ_KNOWN", "").split(",")))
_seen: set[str] = set()


def signature(error: BaseException) -> str:
    function = "?"
    for frame in traceback.extract_tb(error.__traceback__):
        if f"{os.sep}mlpinfer{os.sep}" in frame.filename:
            function = frame.name
    return f"{type(error).__name__}:{function}"


def is_known(error: BaseException) -> bool:
    """True for a listed signature (reported once on stderr); False means: a new finding."""
    found = signature(error)
    if found not in _KNOWN:
        print(f"finding signature: {found}", file=sys.stderr)
        return False
    if found not in _seen:
        _seen.add(found)
        print(f"known finding stepped over: {found}", file=sys.stderr)
    return True


def load_or_none(path: str) -> object:
    """``mlpinfer.load(path)``, or None when it is refused with WeightsError (or a known
    finding); any other exception propagates as a finding."""
    import mlpinfer

    try:
        return mlpinfer.load(path)
    except mlpinfer.WeightsError:
        return None
    except Exception as error:
        if is_known(error):
            return None
        raise


def load_and_run(path: str, rows: int) -> None:
    """Load ``path`` as a user would; WeightsError is the expected refusal, and a file that
    loads must give a network that runs."""
    import numpy as np

    network = load_or_none(path)
    if network is None:
        return
    x = np.linspace(-1.0, 1.0, rows * network.n_inputs, dtype=np.float32).reshape(rows, -1)
    out = network.predict(x)
    assert out.shape == (rows, network.n_outputs), out.shape
    assert out.dtype == np.float32


def fuzz(check: object, scratch_path: str) -> None:
    """Run atheris on ``check`` with this process's arguments; remove the file it rewrites."""
    import atheris

    try:
        atheris.Setup(sys.argv, check)
        atheris.Fuzz()
    finally:
        if os.path.exists(scratch_path):
            os.unlink(scratch_path)
