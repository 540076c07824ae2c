"""Streaming processors: block-size invariance, reset, latency, knobs, allocation, errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edgeamp.core.bundle import compute_output, read_bundle
from edgeamp.core.errors import BundleError, ConfigError, InputError
from edgeamp.edge_runtime.session import open_processor

BLOCK_SIZES = [1, 7, 479, 480, 481, 4096]
BACKENDS = [("openvino", "stateful"), ("openvino", "window"), ("numpy", "stateful"), ("numpy", "window")]


def _signal(n=4800, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 48000
    return (0.5 * np.sin(2 * np.pi * 110 * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _offline(bundle, x, mode):
    """The offline reference for mono x at default knobs, in the bundle's or the asked mode."""
    knobs = np.zeros((x.shape[0], 1), np.float32)  # gain default 5 of 0..10 -> 0.0
    m = bundle.manifest
    if mode != m.streaming.mode:
        from dataclasses import replace

        from edgeamp.core.model import Streaming

        m = replace(m, streaming=Streaming("stateful", m.streaming.hop_samples))
    return compute_output(m, bundle.weights, x, knobs)


def _run_blocks(proc, x, block):
    outs = [proc.process(x[i : i + block]) for i in range(0, x.shape[0], block)]
    return np.concatenate(outs)


@pytest.mark.parametrize("backend,mode", BACKENDS)
@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_block_size_invariance(exported_bundles, backend, mode, block):
    bundle = read_bundle(exported_bundles[mode])
    x = _signal(4800 if mode == "stateful" else 2400)
    proc, _ = open_processor(bundle, backend=backend, device="CPU")
    y = _run_blocks(proc, x, block)
    assert y.shape == x.shape and y.dtype == np.float32
    lat = proc.latency_samples
    assert lat == 479
    ref = _offline(bundle, x, mode)
    np.testing.assert_array_equal(y[:lat], 0.0)
    np.testing.assert_allclose(y[lat:], ref[: x.shape[0] - lat], atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend,mode", BACKENDS)
def test_reset_gives_identical_output(exported_bundles, backend, mode):
    x = _signal(2400, seed=3)
    proc, _ = open_processor(exported_bundles[mode], backend=backend, device="CPU")
    first = _run_blocks(proc, x, 333)
    proc.reset()
    second = _run_blocks(proc, x, 333)
    np.testing.assert_array_equal(first, second)
    third = _run_blocks(proc, x, 333)  # no reset: state carried, output differs
    assert not np.array_equal(first, third)


def test_aligned_processor_has_no_buffering_latency(exported_bundles):
    bundle = read_bundle(exported_bundles["stateful"])
    x = _signal(4800)
    proc, _ = open_processor(bundle, device="CPU", aligned=True)
    assert proc.latency_samples == 0
    y = _run_blocks(proc, x, 960)
    np.testing.assert_allclose(y, _offline(bundle, x, "stateful"), atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="multiples of 480 samples, got 100"):
        proc.process(x[:100])


def test_steady_state_allocates_nothing_per_block(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU")
    x = _signal(480)
    out = np.empty_like(x)
    for _ in range(20):  # warm up
        proc.process(x, out)
    tracemalloc.start()
    try:
        worst = 0
        for _ in range(200):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            proc.process(x, out)
            _, peak = tracemalloc.get_traced_memory()
            worst = max(worst, peak - before)
    finally:
        tracemalloc.stop()
    # what remains is numpy view objects (about 1 KB in all, measured 980 B); a 480-sample float32
    # buffer alone is 1920 B + header, so any per-block audio allocation crosses this bound
    assert worst < 1536, f"{worst} bytes allocated transiently in one block"


def test_knob_changes_ramp_without_clicks(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    x = np.full(480 * 6, 0.3, np.float32)
    steady = [proc.process(x[:480]) for _ in range(40)][-1].copy()  # settle
    proc.set_knob("gain", 10.0)
    y = np.concatenate([proc.process(x[i : i + 480]) for i in range(0, x.shape[0], 480)])
    assert abs(y[-1] - steady[-1]) > 1e-3  # the knob moved the output
    jumps = np.abs(np.diff(np.concatenate([steady[-1:], y])))
    # a hard switch moves the output by (y[-1]-steady) in one sample; the ramp spreads it over 480
    assert jumps.max() < abs(y[-1] - steady[-1]) / 4
    assert proc.knob_values() == {"gain": 10.0}


def test_knob_errors(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], backend="numpy")
    with pytest.raises(ConfigError, match=r"unknown knob 'volume'; known knobs: gain"):
        proc.set_knob("volume", 1)
    with pytest.raises(ConfigError, match=r"value 11.0 outside \[0.0, 10.0\]"):
        proc.set_knob("gain", 11)


@pytest.mark.parametrize(
    "block,message",
    [
        (np.zeros(10, np.float64), "float32"),
        (np.zeros((10, 2), np.float32), r"shape \(10, 2\)"),
        ([0.0] * 10, "list"),
    ],
)
def test_bad_blocks_raise_and_are_counted(exported_bundles, block, message):
    proc, _ = open_processor(exported_bundles["stateful"], backend="numpy")
    with pytest.raises(InputError, match=message):
        proc.process(block)
    assert proc.stats.bad_blocks == 1


def test_bypass_passes_dry_signal_with_same_latency(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU")
    proc.bypass = True
    x = _signal(1440)
    y = proc.process(x)
    np.testing.assert_array_equal(y[479:], x[: 1440 - 479])


def test_stats_and_timings(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU")
    proc.process(_signal(4800))
    assert proc.stats.hops == 10
    times = proc.hop_times_ms()
    assert times.shape == (10,) and np.all(times > 0)


def test_missing_ir_for_hop_names_the_export_command(exported_bundles):
    with pytest.raises(BundleError, match=r"no stateful IR with a hop of 240 samples.*--hop-samples 240"):
        open_processor(exported_bundles["stateful"], device="CPU", hop_samples=240, backend="openvino")


def test_window_mode_needs_window_bundle(exported_bundles):
    with pytest.raises(ConfigError, match="window mode needs a window-mode bundle"):
        open_processor(exported_bundles["stateful"], mode="window")


def test_nonfinite_input_is_zeroed_and_counted_without_poisoning_state(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    clean, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    x = _signal(1440)
    bad = x.copy()
    bad[500] = np.nan  # second hop
    bad[1000] = np.inf  # third hop
    fixed = x.copy()
    fixed[[500, 1000]] = 0.0
    y = proc.process(bad)
    assert np.all(np.isfinite(y)) and proc.stats.nonfinite_hops == 2
    np.testing.assert_array_equal(y, clean.process(fixed))
    np.testing.assert_array_equal(proc.process(x), clean.process(x))  # state carried on, unpoisoned


def test_hop_times_since_reads_across_the_ring():
    """The timing window is a ring: the hops after any count come back oldest first, wrapped or not."""
    from edgeamp.edge_runtime.processor import Processor

    proc = Processor.__new__(Processor)
    proc._times_ns = np.arange(8, dtype=np.int64) * 1_000_000  # hop i took i ms (window of 8)
    proc.stats = type("S", (), {"hops": 13})()  # hops 5..12 are in the ring, at (hop % 8)
    ring = {h: (h % 8) for h in range(5, 13)}
    for seen in range(0, 14):
        got = proc.hop_times_since(seen)
        want = [ring[h] for h in range(max(seen, 5), 13)]
        assert got.tolist() == want, seen
    assert proc.last_hop_ns() == (12 % 8) * 1_000_000
