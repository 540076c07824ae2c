"""Per-hop latency and real-time factor of the streaming runtime (seed topology 64-64-1, 48 kHz, 10 ms hops).

Goals (issue: edge runtime): stateful >= 15x real time on one inference thread with per-hop
p99 <= 1.5 ms; window (the original experiment) >= 1.2x real time.
Run: make bench   (or .venv/bin/python -m pytest benchmarks -k runtime --benchmark-only)
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeamp.edge_runtime.session import open_processor

HOP_SECONDS = 480 / 48000


def _record(benchmark, proc, rounds_ms):
    t = np.asarray(rounds_ms)
    benchmark.extra_info.update({
        "real_time_factor": HOP_SECONDS * 1000 / float(np.mean(t)),
        "hop_ms_p50": float(np.percentile(t, 50)),
        "hop_ms_p99": float(np.percentile(t, 99)),
        "hop_ms_max": float(t.max()),
        "deadline_misses": int(np.sum(t > HOP_SECONDS * 1000)),
    })


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["stateful", "window"])
def test_openvino_hop(benchmark, seed_bundles, mode, threads):
    proc, _ = open_processor(seed_bundles[mode], device="CPU", aligned=True, threads=threads)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 480).astype(np.float32)
    out = np.empty_like(x)
    for _ in range(20):
        proc.process(x, out)
    rounds = 600 if mode == "stateful" else 60
    benchmark.group = f"hop-{mode}"
    benchmark.pedantic(proc.process, args=(x, out), rounds=rounds, iterations=1, warmup_rounds=5)
    _record(benchmark, proc, proc.hop_times_ms()[-rounds:])


def test_numpy_reference_hop(benchmark, seed_bundles):
    proc, _ = open_processor(seed_bundles["stateful"], backend="numpy", aligned=True)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 480).astype(np.float32)
    out = np.empty_like(x)
    benchmark.group = "hop-stateful"
    benchmark.pedantic(proc.process, args=(x, out), rounds=10, iterations=1, warmup_rounds=1)
    _record(benchmark, proc, proc.hop_times_ms()[-10:])
