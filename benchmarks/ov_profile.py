"""Where OpenVINO's time goes on a hop: per-operation profiles and the fixed cost of a call.

For each model of benchmarks/test_cpu_peers.py (random weights; NAM's WaveNet fixtures), the
stateful IR on one CPU thread at f32 and bf16 execution: OpenVINO's own per-node counters
(``PERF_COUNT``, what ``benchmark_app -pc`` prints), summed by operation type with the kernel the
plugin picked (``exec_type``), and the wall time of the call around them; then the hop of an empty
graph (audio in, audio times one out), which is what any model pays per call. Prints markdown.

Run: taskset -c 1 .venv/bin/python benchmarks/ov_profile.py [--hops 300] [--top 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgeamp.edge_runtime import ov_compat  # noqa: E402


def empty_hop_ms(hop: int, hops: int) -> float:
    ov, ops = ov_compat.ov(), ov_compat.opset8()
    a = ops.parameter([1, hop], np.float32, name="audio")
    model = ov.Model([ops.multiply(a, ops.constant(np.float32(1.0)))], [a], "empty")
    req = ov_compat.core().compile_model(model, "CPU", ov_compat.cpu_config(1)).create_infer_request()
    return _time(req, hops)


def _time(req, hops: int) -> float:
    for _ in range(20):
        req.start_async()
        req.wait()
    t = []
    for _ in range(hops):
        t0 = time.perf_counter()
        req.start_async()
        req.wait()
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1000


def profile(bundle, precision: str, hops: int, top: int) -> tuple[float, list[dict]]:
    """The stateful IR's call (median wall ms, on the request edgeamp runs) and OpenVINO's counters."""
    from edgeamp.edge_runtime.bench import op_profile
    from edgeamp.edge_runtime.session import ProcessorFactory

    factory = ProcessorFactory(bundle, device="CPU", threads=1, backend="openvino", variant="stateful",
                               inference_precision=precision)
    engine = factory.new().engine
    engine.compute()
    wall = _time(engine.request, hops)
    return wall, op_profile(factory, hops=hops, top=top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hops", type=int, default=300)
    ap.add_argument("--top", type=int, default=6, help="operation types shown per model")
    args = ap.parse_args()
    import test_cpu_peers as peers

    from edgeamp.core.bundle import Bundle, Manifest, write_bundle
    from edgeamp.core.model import Architecture, Streaming, random_weights
    from edgeamp.export.exporter import export_bundle
    from edgeamp.interop.importer import import_model

    caps = ov_compat.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precisions = ("f32", "bf16") if "BF16" in caps else ("f32",)
    print(f"OpenVINO {ov_compat.version()}, 1 thread, 10 ms hops (480 samples), median of {args.hops} calls\n")
    print(f"empty graph (audio x 1): {empty_hop_ms(480, args.hops):.4f} ms a call\n")
    print("| model | execution | call ms | counted ms | top operations (type / kernel: ms) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        bundles = {}
        for name, (units, cell) in peers.RECURRENT.items():
            arch = Architecture(units, head=units[-1] != 1, cell=cell)
            path = Path(tmp) / f"{cell}{'-'.join(map(str, units))}.bundle"
            write_bundle(path, Bundle(Manifest(48000, arch, Streaming("stateful", 480)), random_weights(arch)))
            bundles[name] = export_bundle(path, variants=("stateful",), verify_seconds=0.2)
        for n in peers.WAVENETS:
            bundles[f"NAM WaveNet {n}"] = import_model(peers.FIX / f"nam_wavenet_{n}.nam", Path(tmp) / f"{n}.bundle",
                                                       export=True, variants=("stateful",), precisions=("f32",),
                                                       verify_seconds=0.2)
        for name, bundle in bundles.items():
            for precision in precisions:
                wall, ops = profile(bundle, precision, args.hops, args.top)
                counted = ops[0]["ms_per_hop"] / ops[0]["share"] if ops and ops[0]["share"] else 0.0  # all ops
                text = "; ".join(f"{p['op']} / {p['kernel']}: {p['ms_per_hop']:.3f}" for p in ops)
                print(f"| {name} | {precision} | {wall:.3f} | {counted:.3f} | {text} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
