"""Fixtures over the real data in ../shared/data, and a summary of what could not run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATA, shared_file

# Skip reasons by cause, as pytest.importorskip and shared_file() word them.
MISSING_FRAMEWORK = "could not import"
MISSING_DATA = ("../shared/data", str(SHARED_DATA.parent), "dataset-fashion-mnist")


@pytest.fixture(scope="session")
def sample_weight_path() -> Path:
    return shared_file("sample_weight.pkl")


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (uint8, N x 28 x 28) and labels."""
    from mlpinfer.datasets import load_mnist

    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    return load_mnist("test", data_dir=SHARED_DATA / "mnist", download=False)



@pytest.fixture(scope="session")
def mnist(mnist_test) -> tuple[np.ndarray, np.ndarray]:
    """The test images as the frameworks see them: (10000, 784) float32 x/255, and labels."""
    from framework_support import mnist_floats

    return mnist_floats(mnist_test)


def _skips(terminalreporter, *causes: str) -> list[tuple[str, str]]:
    """(test or module, reason) of every skip whose reason names one of ``causes``."""
    found = []
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            if any(cause in reason for cause in causes):
                found.append((report.nodeid, reason))
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say loudly what was not tested for want of the real data or a framework."""
    sections = [
        (_skips(terminalreporter, *MISSING_DATA),
         (f"NOT TESTED: the real data was not found ({SHARED_DATA} beside the project, or "
          "Debian's dataset-fashion-mnist)")),
        (_skips(terminalreporter, MISSING_FRAMEWORK),
         ('NOT TESTED: a framework is not installed (PyTorch and Keras come with '
          '"test-frameworks"; see README "Set-up")')),
    ]
    for skipped, title in sections:
        if skipped:
            terminalreporter.section(f"{title}: {len(skipped)} skipped", sep="!", red=True, bold=True)
            for nodeid, reason in skipped:
                terminalreporter.line(f"{nodeid}: {reason}", red=True)


def pytest_sessionfinish(session, exitstatus) -> None:
    # CI installs every framework; a skip for a missing one there is a broken set-up.
    if os.environ.get("CI") and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and _skips(reporter, MISSING_FRAMEWORK):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
