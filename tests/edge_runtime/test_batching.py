"""Batched inference: many streams in one inference, each equal to its own unbatched render."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgeamp.core.bundle import read_bundle
from edgeamp.core.errors import DeviceError
from edgeamp.edge_runtime.batching import BatchedEngine
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


def test_streams_awaiting_on_one_event_loop_equal_their_unbatched_renders(exported_bundles):
    """The service's path: every stream a coroutine on one loop (``process_async``), no thread per
    stream; different signals, knobs, block sizes and a mid-way reset, two lanes."""
    import asyncio

    bundle = read_bundle(exported_bundles["stateful"])
    factory = ProcessorFactory(bundle, device="CPU")
    engine = factory.batched_engine(max_batch=8, wait_ms=5.0, lanes=2)  # a wait, so that batches form unloaded
    cases = [(1, 9600, {"gain": 2.0}, None, 480), (2, 7200, {"gain": 9.0}, 4800, 480),
             (3, 8640, {}, None, 1440), (4, 4800, {"gain": 0.5}, None, 960)]

    async def one(seed, n, knobs, reset_at, block):
        proc = factory.new(aligned=True, engine=engine.slot())  # no hop of latency: equal to the render
        for name, value in knobs.items():
            proc.set_knob(name, value)
        proc.reset()
        x, y = _signal(n, seed), np.zeros(n, np.float32)
        for lo in range(0, n, block):
            if lo == reset_at:
                proc.reset()
            await proc.process_async(x[lo:lo + block], y[lo:lo + block])
            await asyncio.sleep(0)
        proc.engine.close()
        return y

    async def main():
        return await asyncio.gather(*(one(*case) for case in cases))

    try:
        outs = asyncio.run(main())
        assert not engine._slots and not engine.queued()  # every stream gone, nothing left queued
        assert max(engine.batch_sizes) > 1
    finally:
        engine.close()
    for (seed, n, knobs, reset_at, block), y in zip(cases, outs):
        expected = _unbatched(bundle, _signal(n, seed), knobs, reset_at, block)
        err = np.max(np.abs(y - expected))
        assert err <= 1e-5 * max(1.0, float(np.max(np.abs(expected)))), (seed, err)


def test_unbatched_workers_run_at_once(exported_bundles):
    """The service's workers share one compiled model with NUM_STREAMS = workers and one thread
    each; the plugin keeps no more streams than threads, so the total must be threads x workers
    (with 1 thread in all, two workers' hops ran one after the other)."""
    factory = ProcessorFactory(read_bundle(exported_bundles["stateful"]), device="CPU", threads=1, num_streams=2,
                               backend="openvino")
    assert int(factory.compiled.get_property("NUM_STREAMS")) == 2
    assert int(factory.compiled.get_property("INFERENCE_NUM_THREADS")) == 2


def test_lanes_are_streams_of_their_own(exported_bundles):
    """With NUM_STREAMS 1 the CPU plugin ran two lanes' requests one after the other."""
    bundle = read_bundle(exported_bundles["stateful"])
    engine = ProcessorFactory(bundle, device="CPU").batched_engine(lanes=2, wait_ms=0.0)
    try:
        assert int(engine.compiled.get_property("NUM_STREAMS")) == 2
        assert len(engine._lanes) == 2
    finally:
        engine.close()


class _Gated:
    """An inference request that waits for ``go`` (and may fail): ticks held where a test wants them."""

    def __init__(self, request, fail: bool = False) -> None:
        self.request, self.fail = request, fail
        self.go, self.started = threading.Event(), threading.Event()
        self.batches: list[list[float]] = []  # the first sample of each hop, per tick

    def infer(self, inputs):
        self.batches.append([round(float(v), 3) for v in inputs["audio"][:, 0]])
        self.started.set()
        assert self.go.wait(30)
        if self.fail:
            raise RuntimeError("device lost")
        return self.request.infer(inputs)

    def get_tensor(self, name):
        return self.request.get_tensor(name)


def _hop(value: float = 0.1):
    return np.full(480, value, np.float32), np.zeros((480, 1), np.float32)


def test_real_time_hops_go_before_bulk_hops_and_a_stream_that_leaves_mid_tick_keeps_its_row(exported_bundles):
    bundle = read_bundle(exported_bundles["stateful"])
    engine = ProcessorFactory(bundle, device="CPU").batched_engine(max_batch=1, wait_ms=0.0, lanes=1)
    gate = _Gated(engine._lanes[0].request)
    engine._lanes[0].request = gate
    try:
        first, bulk, realtime = engine.slot(), engine.slot(), engine.slot()
        bulk.priority = 1
        hops = {first: 0.1, bulk: 0.2, realtime: 0.3}
        threads = [threading.Thread(target=engine.submit, args=(s, *_hop(hops[s]))) for s in hops]
        threads[0].start()
        assert gate.started.wait(30)  # `first` is in a running tick; the other two queue behind it
        for t, queued in zip(threads[1:], (1, 2)):
            t.start()
            while engine.queued() < queued:
                time.sleep(0.001)
        first.close()  # leaves mid-tick: its row must not go to a new stream before the tick is done
        newcomer = engine.slot()
        assert newcomer.row != first.row
        gate.go.set()
        for t in threads[1:]:
            t.join(30)
        assert gate.batches == [[0.1], [0.3], [0.2]]  # the real-time hop overtook the bulk one
        assert first.row in engine._free
    finally:
        gate.go.set()
        engine.close()


def test_a_failed_inference_fails_its_hops_and_the_lane_runs_on(exported_bundles):
    bundle = read_bundle(exported_bundles["stateful"])
    engine = ProcessorFactory(bundle, device="CPU").batched_engine(wait_ms=0.0, lanes=1)
    gate = _Gated(engine._lanes[0].request, fail=True)
    gate.go.set()
    engine._lanes[0].request = gate
    try:
        slot = engine.slot()
        with pytest.raises(DeviceError, match="device lost"):
            engine.submit(slot, *_hop())
        gate.fail = False
        assert np.all(np.isfinite(engine.submit(slot, *_hop())))
    finally:
        engine.close()


def test_tick_cost_fits_time_against_batch_size():
    from edgeamp.edge_runtime.batching import TickCost

    cost = TickCost()
    assert cost(4) == 0.0  # nothing run yet: no wait is cut short
    cost.add(2, 0.004)
    assert cost(4) == pytest.approx(0.008)  # one size seen: time per hop times the size
    for _ in range(20):
        cost.add(1, 0.002)
        cost.add(4, 0.005)
    assert cost(8) == pytest.approx(0.009, rel=0.05)  # 1 ms + 1 ms per hop
    assert cost(1) == pytest.approx(0.002, rel=0.05)


@pytest.mark.parametrize("coming_in_s, batched_with_it", [(0.05, True), (0.6, False)])
def test_a_tick_waits_only_for_hops_on_their_way(exported_bundles, coming_in_s, batched_with_it):
    """Streams are periodic: a hop waits for another stream's only when that one's next hop is
    due within the wait (its last hop plus one hop duration); otherwise its tick runs at once."""
    bundle = read_bundle(exported_bundles["stateful"])
    engine = ProcessorFactory(bundle, device="CPU").batched_engine(wait_ms=300.0, lanes=1)
    engine.set_rate(480)  # a 1 s hop: the deadline (DEADLINE hops) is far beyond the wait (and no
    # tick has run yet, so the tick-cost fit cuts no wait short)
    try:
        a, b = engine.slot(), engine.slot()
        b.last_submit = time.perf_counter() - engine.hop_s + coming_in_s  # b's next hop comes in coming_in_s
        sizes = engine.batch_sizes.copy()
        t = threading.Thread(target=engine.submit, args=(a, *_hop(0.1)))
        start = time.perf_counter()
        t.start()
        if batched_with_it:
            time.sleep(coming_in_s)
            engine.submit(b, *_hop(0.2))
        t.join(30)
        ran = engine.batch_sizes - sizes
        if batched_with_it:
            assert ran == {2: 1}  # one tick carried both
            assert engine.waits_s[-1] >= 0.8 * coming_in_s
        else:
            assert ran == {1: 1} and engine.waits_s[-1] < 0.25  # not held for the whole 300 ms wait
            assert time.perf_counter() - start < 0.6
    finally:
        engine.close()


def test_a_fault_in_finishing_a_tick_fails_its_hops_instead_of_hanging_them(exported_bundles):
    bundle = read_bundle(exported_bundles["stateful"])
    calls = []

    def on_tick(size, waited):
        calls.append(size)
        if len(calls) == 1:
            raise ValueError("metrics broke")

    engine = ProcessorFactory(bundle, device="CPU").batched_engine(wait_ms=0.0, lanes=1, on_tick=on_tick)
    try:
        slot = engine.slot()
        with pytest.raises(DeviceError, match="metrics broke"):
            engine.submit(slot, *_hop())
        assert np.all(np.isfinite(engine.submit(slot, *_hop())))  # the lane runs on
    finally:
        engine.close()
