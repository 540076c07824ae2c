"""Per-hop latency across backends, IR variants, precisions, threads, hop sizes and presets.

Every row runs a fresh processor on noise in blocks of exactly one hop (as a live callback
does) and records, besides pytest-benchmark's own timing of the hop: p50/p99/max, real-time
factor, deadline misses, compile time, memory taken, ESR against the float64 numpy reference on
the same input, the model's FLOPs per second of audio and the fraction of this machine's
measured f32 MatMul peak (same threads) that the hop reaches (see edgeamp.edge_runtime.bench).

Axes (not a full cross product: each axis varies around the seed topology, stateful, f32, one
thread, 10 ms hops): backend (OpenVINO hand-built graphs, numpy reference, Keras/TF; the
convert_model graph is in test_convert_model.py), IR variant (stateful, explicit_state, window),
weights f32/f16 and bf16 execution (where the CPU has it), 1 and 2 threads, hops of 1, 2.5, 5
and 10 ms, presets seed (64-64-1), stateful (32 + head) and small (12 + head).

Goals (issue: edge runtime): stateful >= 15x real time on one thread, p99 <= 1.5 ms; window >= 1.2x.
Run: make bench   (or .venv/bin/python -m pytest benchmarks --benchmark-only)
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgeamp.edge_runtime import ov_compat
from edgeamp.edge_runtime.bench import figures, matmul_peak_gflops, noise, open_for_bench

HOPS = {"stateful": 500, "explicit_state": 500, "window": 40}


@functools.cache
def peak(threads: int) -> float:
    return matmul_peak_gflops("CPU", threads)


def _run(benchmark, bundle, *, group: str, hops: int, threads: int | None = 1, **options):
    factory, proc, compile_s = open_for_bench(bundle, device="CPU", threads=threads, **options)
    hop = proc.hop_samples
    warmup = 10
    x = noise(warmup + hops, hop)
    y = np.empty_like(x)
    pos = [0]

    def one_hop():
        i = pos[0]
        proc.process(x[i * hop : (i + 1) * hop], y[i * hop : (i + 1) * hop])
        pos[0] += 1

    benchmark.group = group
    benchmark.pedantic(one_hop, rounds=hops, iterations=1, warmup_rounds=warmup)
    row = figures(bundle, factory, proc, x, y, hops=hops, compile_s=compile_s, threads=threads,
                  peak_gflops=peak(threads or 2) if factory.choice else None)
    row.pop("hop_times_ms")
    benchmark.extra_info.update(row)
    return row


@pytest.mark.parametrize("variant", ["stateful", "explicit_state", "window"])
def test_variant(benchmark, bundles, variant):
    mode = "window" if variant == "window" else "stateful"
    _run(benchmark, bundles("seed", mode), group="seed 10 ms f32 1 thread: IR variant", hops=HOPS[variant],
         variant=variant)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["stateful", "window"])
def test_threads(benchmark, bundles, mode, threads):
    _run(benchmark, bundles("seed", mode), group=f"seed {mode} 10 ms f32: threads", hops=HOPS[mode],
         threads=threads)


@pytest.mark.parametrize("precision", ["f32", "f16", "bf16"])
def test_precision(benchmark, bundles, precision):
    """f16: FP16 weights in the IR (what VPUs/NPUs load); bf16: CPU execution precision."""
    if precision == "bf16":
        caps = ov_compat.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in caps:
            pytest.skip(f"this CPU has no native bf16 (OpenVINO CPU capabilities: {', '.join(caps)})")
        _run(benchmark, bundles("seed"), group="seed stateful 10 ms 1 thread: precision", hops=HOPS["stateful"],
             inference_precision="bf16")
        return
    _run(benchmark, bundles("seed"), group="seed stateful 10 ms 1 thread: precision", hops=HOPS["stateful"],
         precision=precision)


@pytest.mark.parametrize("hop_ms", [1.0, 2.5, 5.0, 10.0])
def test_hop_size(benchmark, bundles, hop_ms):
    hop = int(round(hop_ms * 48))
    _run(benchmark, bundles("seed", "stateful", hop), group="seed stateful f32 1 thread: hop", hops=300)


@pytest.mark.parametrize("preset", ["seed", "stateful", "small"])
def test_preset(benchmark, bundles, preset):
    _run(benchmark, bundles(preset), group="stateful 10 ms f32 1 thread: preset", hops=HOPS["stateful"])


IMPORTED = {"nam_lstm_1x16.nam": None, "aidax_gru_12.aidax": 48000}  # file -> --sample-rate (the .nam says it)


@pytest.mark.parametrize("model", sorted(IMPORTED))
def test_imported(benchmark, tmp_path, model):
    """Models other tools made (tests/fixtures/interop, written by NAM's package and AIDA-X's trainer
    pipeline), imported as `edgeamp import` does: a NAM LSTM 1x16 and an AIDA-X GRU-12 with skip."""
    from pathlib import Path

    from edgeamp.export.exporter import export_bundle
    from edgeamp.interop.importer import import_model

    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "interop" / model
    bundle = import_model(fixture, tmp_path / "imported.bundle", sample_rate=IMPORTED[model])
    bundle = export_bundle(bundle.path, variants=("stateful",), precisions=("f32",), verify_seconds=1.0)
    _run(benchmark, bundle, group="imported models, stateful 10 ms f32 1 thread", hops=HOPS["stateful"])


def test_numpy_reference(benchmark, bundles):
    _run(benchmark, bundles("seed"), group="seed stateful 10 ms: backend", hops=20, backend="numpy", threads=None)


def test_keras_tensorflow(benchmark, bundles):
    """Keras 3 on TensorFlow (CPU), stateful: one call per hop with the LSTM state carried."""
    pytest.importorskip("tensorflow")
    import keras
    import tensorflow as tf

    from edgeamp.core import reference
    from edgeamp.core.metrics import esr
    from edgeamp.train.models import build_training_model, set_keras_weights

    bundle = bundles("seed")
    arch = bundle.manifest.architecture
    model = build_training_model(arch, keras)
    set_keras_weights(model, arch, bundle.weights)
    step = tf.function(lambda x, states: model([x, *states], training=False))
    hops, hop = 200, 480
    x = noise(hops + 10, hop)
    y = np.empty_like(x)
    state = [tf.zeros((1, u)) for u in arch.units for _ in arch.state_kinds]
    pos = [0]

    def one_hop():
        nonlocal state
        i = pos[0]
        out = step(tf.constant(x[None, i * hop : (i + 1) * hop, None]), state)
        y[i * hop : (i + 1) * hop] = out[0].numpy()[0, :, 0]
        state = out[1:]
        pos[0] += 1

    benchmark.group = "seed stateful 10 ms: backend"
    benchmark.pedantic(one_hop, rounds=hops, iterations=1, warmup_rounds=10)
    t = np.array(benchmark.stats.stats.data) * 1000
    ref, _ = reference.run_stateful(arch, bundle.weights, x[None, :48000, None].astype(np.float64))
    benchmark.extra_info.update({
        "backend": "keras-tensorflow", "variant": "keras", "precision": "f32", "threads": None,
        "hop_ms_p50": float(np.percentile(t, 50)), "hop_ms_p99": float(np.percentile(t, 99)),
        "hop_ms_max": float(t.max()), "real_time_factor": 10.0 / float(t.mean()),
        "deadline_misses": int(np.count_nonzero(t > 10.0)), "esr_vs_reference": esr(ref[0], y[:48000]),
        "tensorflow": tf.__version__,
    })
