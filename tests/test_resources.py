"""Threads, idle CPU and memory, observed from outside the engine in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PRELUDE = """
import json, os, resource, time
import numpy as np
import mlpinfer

def threads():
    return len(os.listdir("/proc/self/task"))

rng = np.random.default_rng(0)
params = {"W1": rng.standard_normal((784, 50)), "b1": np.zeros(50),
          "W2": rng.standard_normal((50, 100)), "b2": np.zeros(100),
          "W3": rng.standard_normal((100, 10)), "b3": np.zeros(10)}
net = mlpinfer.Network.from_params(params)
"""


def run_script(body: str) -> dict:
    script = PRELUDE + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_threads_argument_and_global_setting_are_respected():
    report = run_script("""
        x = rng.random((20_000, 784), dtype=np.float32)
        start = threads()
        net.predict(x, threads=1)
        after_one = threads()
        net.predict(x, threads=2)
        after_two = threads()
        mlpinfer.set_num_threads(1)
        net.predict(x)
        print(json.dumps({"start": start, "after_one": after_one, "after_two": after_two,
                          "global": mlpinfer.get_num_threads(), "end": threads()}))
    """)
    assert report["after_one"] == report["start"], "threads=1 started a worker"
    assert report["after_two"] == report["start"] + 1, "threads=2 should add exactly one worker"
    assert report["global"] == 1
    assert report["end"] == report["after_two"], "workers are reused, never added per call"


def test_no_thread_spins_after_predict_returns():
    report = run_script("""
        x = rng.random((50_000, 784), dtype=np.float32)
        for _ in range(3):
            net.predict(x, threads=2)
        began = time.process_time()
        time.sleep(1.0)
        print(json.dumps({"idle_cpu_seconds": time.process_time() - began}))
    """)
    assert report["idle_cpu_seconds"] < 0.05, f"{report['idle_cpu_seconds']:.3f} s of CPU while idle"


def test_a_million_images_in_chunks_stay_within_64_mb_beyond_input_and_output():
    report = run_script("""
        x = np.full((1_000_000, 784), 7, dtype=np.uint8)   # touched: counted in RSS
        net.predict(x[:1000], batch_size=100)                # warm-up: scratch, pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = net.predict(x, batch_size=10_000)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        del out

        def resident():
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        kept = [net.predict(x[:10_000], threads=2)]          # the output a call must allocate
        first = resident()
        for _ in range(50):
            kept.append(net.predict(x[:10_000], threads=2))
        per_call = (resident() - first) / 50
        print(json.dumps({"growth": peak - before, "output": 1_000_000 * 10 * 4,
                          "per_call": per_call, "output_per_call": kept[0].nbytes}))
    """)
    beyond_output = report["growth"] - report["output"]
    assert beyond_output < 64 * 2**20, f"{beyond_output / 2**20:.1f} MB beyond input and output"
    # Each call keeps its output alive here; anything beyond that would be the engine's.
    assert report["per_call"] < report["output_per_call"] + 64 * 1024, report
