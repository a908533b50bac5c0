"""Load a hostile file in a fresh process and measure what refusing it cost.

The budget of issue 13: every hostile file is refused in under 1 s of CPU beyond imports
and under 256 MB of resident memory growth. The child imports everything a load may
need first, then measures CPU time and peak RSS (VmHWM, reset after the imports: it
would otherwise carry the parent's peak over fork and exec) around the load alone; its
address space is capped (4 GB) so that a regression fails the test instead of the
machine. It runs with an empty HOME and reports whether anything was written there and
whether Keras or torch were imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_CPU_SECONDS = 1.0
MAX_RSS_GROWTH = 256 << 20

_CHILD = r"""
import json, os, resource, sys
import h5py, numpy, onnx  # the optional readers, imported before measuring
import mlpinfer, mlpinfer.formats
path, options = sys.argv[1], json.loads(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

# The peak RSS (VmHWM, ru_maxrss) survives fork and exec: reset it to the current RSS.
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

before_rss, before_cpu = status("VmRSS"), cpu()
try:
    mlpinfer.formats.load(path, **options)
    kind, message = None, None
except BaseException as error:
    kind, message = type(error).__name__, str(error)
peak = status("VmHWM")
print(json.dumps({"error": kind, "message": message, "cpu": cpu() - before_cpu,
                  "rss_growth": peak - before_rss,
                  "frameworks": sorted(m for m in ("keras", "torch") if m in sys.modules)}))
"""


@dataclass(frozen=True)
class Outcome:
    error: str | None
    message: str | None
    cpu: float
    rss_growth: int
    frameworks: list[str]
    home: list[str]


def load_in_fresh_process(path: Path, home: Path, **options: Any) -> Outcome:
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "KERAS_HOME": str(home / ".keras")}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(options)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Outcome(**report, home=sorted(p.name for p in home.iterdir()))


def assert_refused_within_budget(path: Path, home: Path, match: str,
                                 error: str = "WeightsError", **options: Any) -> Outcome:
    """``mlpinfer.load(path)`` fails with ``error`` whose message contains ``match`` (a
    regular expression) and the file's name, within the budget, touching nothing."""
    outcome = load_in_fresh_process(path, home, **options)
    assert outcome.error is not None, f"{path.name} loaded; it must be refused"
    accepted = {error, "UnsupportedModelError"} if error == "WeightsError" else {error}
    assert outcome.error in accepted, f"{outcome.error}: {outcome.message}"
    assert str(path) in outcome.message, outcome.message
    assert re.search(match, outcome.message), f"{match!r} not in {outcome.message!r}"
    assert outcome.cpu < MAX_CPU_SECONDS, f"{outcome.cpu:.2f} s of CPU to refuse {path.name}"
    assert outcome.rss_growth < MAX_RSS_GROWTH, (
        f"{outcome.rss_growth / 2**20:.0f} MB of resident memory to refuse {path.name}")
    assert outcome.frameworks == [], f"reading imported {outcome.frameworks}"
    assert outcome.home == [], f"reading wrote {outcome.home} into HOME"
    return outcome
