"""Batched inference: many streams in one inference, each equal to its own unbatched render."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgeamp.edge_runtime.batching import BatchedEngine
from edgeamp.edge_runtime.bundle import read_bundle
from edgeamp.edge_runtime.errors import DeviceError
from edgeamp.edge_runtime.processor import Processor
from edgeamp.edge_runtime.render import render
from edgeamp.edge_runtime.session import ProcessorFactory

SR = 48000


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.4 * np.sin(2 * np.pi * (80 + 60 * seed) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def batched(exported_bundles):
    bundle = read_bundle(exported_bundles["stateful"])
    record = bundle.manifest.exports["batched-f32"]
    engine = BatchedEngine(bundle.checked_ir(record), bundle.architecture, 480, max_batch=8, wait_ms=2.0,
                           lanes=2)
    engine.set_rate(SR)
    yield bundle, engine
    engine.close()


def _unbatched(bundle, x, knobs, reset_at=None, block=480):
    proc = ProcessorFactory(bundle, device="CPU", variant="explicit_state").new()
    for name, value in knobs.items():
        proc.set_knob(name, value)
    proc.reset()
    if reset_at is None:
        return render(proc, x, block=block)[0]
    a = render(proc, x[:reset_at], block=block)[0]
    proc.reset()
    return np.concatenate([a, render(proc, x[reset_at:], block=block)[0]])


def test_streams_in_one_batch_equal_their_unbatched_renders(batched):
    """Different signals, knobs, start times, lengths, block sizes; one stream resets mid-way."""
    bundle, engine = batched
    cases = [  # (seed, samples, knobs, start delay in hops, reset at, block)
        (1, 24000, {"gain": 2.0}, 0, None, 480),
        (2, 19200, {"gain": 9.0}, 3, None, 480),
        (3, 28800, {}, 7, 9600, 480),
        (4, 14400, {"gain": 5.5}, 1, None, 1000),
        (5, 9600, {"gain": 0.0}, 12, None, 480),
    ]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(cases))

    def run(seed, n, knobs, delay, reset_at, block):
        try:
            slot = engine.slot()
            proc = Processor(slot, bundle.architecture, SR)
            for name, value in knobs.items():
                proc.set_knob(name, value)
            proc.reset()
            x = _signal(n, seed)
            start.wait()
            for _ in range(delay):  # a late joiner: other streams tick without it
                engine.submit(engine.slot(), np.zeros(480, np.float32), np.zeros((480, 1), np.float32))
            if reset_at is None:
                results[seed] = render(proc, x, block=block)[0]
            else:
                a = render(proc, x[:reset_at], block=block)[0]
                proc.reset()
                results[seed] = np.concatenate([a, render(proc, x[reset_at:], block=block)[0]])
            slot.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=case) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for seed, n, knobs, _, reset_at, block in cases:
        expected = _unbatched(bundle, _signal(n, seed), knobs, reset_at, block)
        err = np.max(np.abs(results[seed] - expected))
        assert err <= 1e-5 * max(1.0, float(np.max(np.abs(expected)))), (seed, err)
    assert max(engine.batch_sizes) > 1  # hops really were batched


def test_a_lone_stream_is_not_held_back(batched):
    bundle, engine = batched
    slot = engine.slot()
    before = engine.ticks
    for _ in range(5):
        engine.submit(slot, np.zeros(480, np.float32), np.zeros((480, 1), np.float32))
    assert engine.ticks - before == 5
    slot.close()


def test_a_stream_that_stops_delays_the_others_by_the_wait_at_most(batched):
    bundle, engine = batched
    stalled = engine.slot()
    engine.submit(stalled, np.zeros(480, np.float32), np.zeros((480, 1), np.float32))  # active, then silent
    live = engine.slot()
    ticks = engine.ticks
    for _ in range(3):  # each tick waits for `stalled` until wait_ms, then runs without it
        engine.submit(live, np.zeros(480, np.float32), np.zeros((480, 1), np.float32))
    assert engine.ticks - ticks == 3
    stalled.close()
    live.close()


def test_an_ir_that_is_not_batched_is_refused(exported_bundles):
    bundle = read_bundle(exported_bundles["stateful"])
    with pytest.raises(DeviceError, match="not a batched IR"):
        BatchedEngine(bundle.checked_ir(bundle.manifest.exports["explicit_state-f32"]), bundle.architecture, 480)
