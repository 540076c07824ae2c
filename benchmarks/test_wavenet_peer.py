"""NAM's WaveNet sizes on edgeamp's OpenVINO CPU path against NeuralAmpModelerCore, in one run.

Per 10 ms hop (480 samples at 48 kHz), one thread, one core (the benchmark pins itself and the
peer to the same CPU), p50 over 1000 hops of noise. edgeamp: the stateful IR at f32 and at bf16
execution (where the CPU has it), with the ESR of each against the float64 reference. NAM Core:
``benchmarks/peers/nam_core_run`` (built by hand from NAM Core's sources: peers/README.md) with exact
tanh and with NAM's fast tanh (what NAM's plugins run). The models are the fixtures NAM's own
package wrote (tests/fixtures/interop/nam_wavenet_*.nam), so both engines run the same file.

Goals (issue: convolutional models): NAM standard f32 at least as fast as NAM Core, bf16 faster
still; a standard hop <= 10 % of a core.
Run: .venv/bin/python -m pytest benchmarks/test_wavenet_peer.py --benchmark-only -s
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeamp.edge_runtime import ov_compat
from edgeamp.edge_runtime.bench import figures, noise, open_for_bench
from edgeamp.interop.importer import import_model

FIX = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "interop"
PEER = Path(os.environ.get("EDGEAMP_NAM_CORE_RUN", Path(__file__).parent / "peers" / "nam_core_run"))
SIZES = ("standard", "lite", "feather", "nano")
HOPS = 1000
CPU = sorted(os.sched_getaffinity(0))[-1]


@pytest.fixture(scope="module")
def wavenets(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavenet")
    return {n: import_model(FIX / f"nam_wavenet_{n}.nam", root / f"{n}.bundle", export=True, variants=("stateful",),
                            precisions=("f32",), verify_seconds=0.5) for n in SIZES}


def _peer(model: Path, fast_tanh: bool) -> dict | None:
    if not PEER.is_file():
        return None
    cmd = ["taskset", "-c", str(CPU), str(PEER), "bench", str(model), "--hops", str(HOPS)]
    return json.loads(subprocess.run(cmd + (["--fast-tanh"] if fast_tanh else []), check=True,
                                     capture_output=True, text=True).stdout)


@pytest.mark.parametrize("size", SIZES)
def test_wavenet_against_nam_core(benchmark, wavenets, size):
    os.sched_setaffinity(0, {CPU})
    try:
        rows = {}
        caps = ov_compat.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        for precision in ("f32", "bf16") if "BF16" in caps else ("f32",):
            factory, proc, compile_s = open_for_bench(wavenets[size], device="CPU", threads=1,
                                                      inference_precision=precision)
            hop = proc.hop_samples
            x = noise(HOPS + 50, hop)
            y = np.empty_like(x)
            for i in range(HOPS + 50):
                proc.process(x[i * hop : (i + 1) * hop], y[i * hop : (i + 1) * hop])
            row = figures(wavenets[size], factory, proc, x, y, hops=HOPS, compile_s=compile_s, threads=1,
                          peak_gflops=None)
            rows[f"edgeamp {precision}"] = (row["hop_ms_p50"], row["esr_vs_reference"])
        for fast in (False, True):
            peer = _peer(FIX / f"nam_wavenet_{size}.nam", fast)
            if peer:
                rows[f"NAM Core{' fast tanh' if fast else ''}"] = (peer["p50_ms"], None)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
    benchmark.group = f"NAM WaveNet {size}, 10 ms hop, 1 thread, CPU {CPU}"
    benchmark.extra_info.update({"size": size, "rows": {k: {"p50_ms": v[0], "esr": v[1]} for k, v in rows.items()},
                                 "peer_built": PEER.is_file()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\nNAM {size}: " + "; ".join(f"{k} {v[0]:.3f} ms" + (f" (ESR {v[1]:.1e})" if v[1] is not None else "")
                                     for k, v in rows.items()))
