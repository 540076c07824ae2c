"""The Python API's cost: ``edgeamp.load(...)`` / ``amp(x, sr)`` against the bare processor.

- streaming (``reset=False``) at 10 ms (480-sample) and 4096-sample blocks: the API's checks
  (dtype, shape, NaN scan) and its output allocation against ``Processor.process(block, out)``
  writing into a preallocated buffer. Goal: within 5 %. Bare and API rounds are interleaved
  (this 2-core machine drifts by tens of percent between minutes), and the overhead is recorded
  as ``extra_info["api_overhead_percent"]`` on the API rows;
- a 60 s file in one call (``amp(x, sr)``: aligned output) and the same file at 44.1 kHz
  (resampled in and out): real-time factor.

Model: the product's `stateful` preset topology (LSTM 32 + head), one inference thread, 48 kHz.
Run: .venv/bin/python -m pytest benchmarks/test_api.py --benchmark-only
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import edgeamp

SR = 48000
SECONDS = 2.0
ROUNDS = 15


@pytest.fixture(scope="module")
def preset_bundle(bundles):
    return bundles("stateful")


def _signal(seconds: float, rate: int = SR) -> np.ndarray:
    return (0.3 * np.random.default_rng(0).standard_normal(int(seconds * rate))).astype(np.float32)


def _bare_and_api(bundle):
    amp = edgeamp.load(bundle.path, device="CPU", threads=1)
    proc = amp.factory.new()
    return amp, proc


def _run_bare(proc, x, block, out):
    for lo in range(0, x.shape[0], block):
        proc.process(x[lo : lo + block], out[lo : lo + block])


def _run_api(amp, x, block):
    for lo in range(0, x.shape[0], block):
        amp(x[lo : lo + block], SR, reset=False)


@pytest.mark.parametrize("block", [480, 4096])
@pytest.mark.parametrize("path", ["bare", "api"])
def test_streaming_blocks(benchmark, preset_bundle, block, path):
    amp, proc = _bare_and_api(preset_bundle)
    x = _signal(SECONDS)
    out = np.empty_like(x)
    bare = lambda: _run_bare(proc, x, block, out)  # noqa: E731
    api = lambda: _run_api(amp, x, block)  # noqa: E731
    timings = {"bare": [], "api": []}
    for _ in range(ROUNDS):  # interleaved, so that drift hits both alike
        for name, fn in (("bare", bare), ("api", api)):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in timings.items()}
    benchmark.group = f"API overhead, {block}-sample blocks, {SECONDS:g} s of audio per round"
    benchmark.pedantic(bare if path == "bare" else api, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({
        "block": block, "audio_seconds": SECONDS,
        "interleaved_median_s_bare": med["bare"], "interleaved_median_s_api": med["api"],
        "api_overhead_percent": 100 * (med["api"] / med["bare"] - 1),
        "real_time_factor": SECONDS / med[path],
    })


@pytest.mark.parametrize("rate", [48000, 44100])
def test_file_in_one_call(benchmark, preset_bundle, rate):
    amp = edgeamp.load(preset_bundle.path, device="CPU", threads=1)
    x = _signal(60.0, rate)
    benchmark.group = "60 s file, amp(x, sr) in one call"
    result = benchmark.pedantic(amp, args=(x, rate), rounds=3, iterations=1, warmup_rounds=0)
    assert result.shape == x.shape
    benchmark.extra_info.update({"sample_rate": rate, "audio_seconds": 60.0,
                                 "real_time_factor": 60.0 / benchmark.stats.stats.median})
