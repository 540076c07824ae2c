"""Does batching streams into one inference help on this CPU? One LSTMSequence stack (the seed
topology, 64-64-1) over a 10 ms hop with batch 1, 4 and 16: the cost per stream tells whether a
service could carry more streams by batching them (it cannot when the cost grows linearly).
Run: .venv/bin/python -m pytest benchmarks/test_batching.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeamp.edge_runtime import ov_compat


def _seed_stack(batch: int, steps: int = 480):
    ov, ops = ov_compat.ov(), ov_compat.opset8()
    rng = np.random.default_rng(0)
    x = ops.parameter([batch, steps, 1], np.float32, name="audio")
    cur, n_in = x, 1
    for units in (64, 64, 1):
        zeros = ops.constant(np.zeros((batch, 1, units), np.float32))
        seq = ops.lstm_sequence(
            cur, zeros, zeros, ops.constant(np.full(batch, steps, np.int32)),
            ops.constant((0.3 * rng.standard_normal((1, 4 * units, n_in))).astype(np.float32)),
            ops.constant((0.3 * rng.standard_normal((1, 4 * units, units))).astype(np.float32)),
            ops.constant(np.zeros((1, 4 * units), np.float32)), units, "forward")
        cur = ops.squeeze(seq.output(0), ops.constant(np.array([1], np.int64)))
        n_in = units
    return ov.Model([cur.output(0)], [x], f"seed-batch{batch}")


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_lstmsequence_batch(benchmark, batch):
    compiled = ov_compat.core().compile_model(_seed_stack(batch), "CPU", ov_compat.cpu_config(threads=1))
    req = compiled.create_infer_request()
    req.get_input_tensor(0).data[:] = np.random.default_rng(1).uniform(-0.5, 0.5, (batch, 480, 1))

    def run():
        req.start_async()
        req.wait()

    benchmark.group = "seed stack, one 10 ms hop, 1 thread: batch"
    benchmark.pedantic(run, rounds=200, iterations=1, warmup_rounds=20)
    per_stream = benchmark.stats.stats.median * 1000 / batch
    benchmark.extra_info.update({"batch": batch, "ms_per_stream": per_stream,
                                 "real_time_factor": 10.0 / (benchmark.stats.stats.mean * 1000)})


@pytest.mark.parametrize("batch", [1, 2, 4, 8, 16])
def test_batched_ir_dynamic_or_static_batch(benchmark, bundles, batch):
    """The bundle's batched IR (seed topology) as exported, with a dynamic batch dimension, against
    the same IR reshaped to a static batch (the engine could compile a few sizes and pad). The two
    run in turn within each round, so that this VM's drifting speed hits both alike; extra_info has
    each one's median. Measured on 2 AVX-512 cores: within 0.2 ms of each other at every size, so
    the engine keeps the one dynamic model."""
    import time

    from edgeamp.core.bundle import read_bundle

    bundle = read_bundle(bundles("seed").path)
    core = ov_compat.core()
    xml = str(bundle.checked_ir(bundle.manifest.exports["batched-f32"]))
    static = core.read_model(xml)
    static.reshape({p.get_any_name(): [batch if i == 0 else d for i, d in enumerate(p.get_partial_shape())]
                    for p in static.inputs})
    requests = {shape: core.compile_model(model, "CPU", ov_compat.cpu_config(threads=1)).create_infer_request()
                for shape, model in (("dynamic", core.read_model(xml)), ("static", static))}
    rng = np.random.default_rng(1)
    feeds = {p.get_any_name(): rng.uniform(-0.5, 0.5, [batch] + [d.get_length() for d in p.get_partial_shape()[1:]])
             .astype(np.float32) for p in core.read_model(xml).inputs}
    times: dict[str, list[float]] = {shape: [] for shape in requests}

    def both():
        for shape, req in requests.items():
            t = time.perf_counter()
            req.infer(feeds)
            times[shape].append(time.perf_counter() - t)

    benchmark.group = "seed batched IR, 10 ms hop, 1 thread: dynamic + static batch in turn (each in extra_info)"
    benchmark.pedantic(both, rounds=100, iterations=1, warmup_rounds=10)
    medians = {shape: float(np.median(t[10:])) * 1000 for shape, t in times.items()}
    benchmark.extra_info.update({"batch": batch, "dynamic_ms": medians["dynamic"], "static_ms": medians["static"],
                                 "ms_per_stream": medians["dynamic"] / batch})
