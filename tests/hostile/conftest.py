"""Fixtures of the hostile-file tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory whose marker file appears only if code from a file ran."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
