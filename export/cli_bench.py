"""Measure a bundle's per-hop latency on a device: for people benchmarking VPU/NPU/GPU/CPU latency.

Compiles the bundle (timed), runs --hops hops of noise in blocks of exactly one hop, and reports
per-hop p50/p99/max, real-time factor, deadline misses, memory taken, ESR against the float64
numpy reference on the same input, the model's FLOPs and the fraction of this device's measured
f32 MatMul peak. Machine, device name and software versions are recorded with the figures so
that results from different machines compare. Writes bench.json, bench.md and latency.png
(the PNG needs matplotlib) to --out-dir.

Sweeps, no trained model needed (--arch): random-weight bundles for every architecture and hop,
exported and verified like any bundle, each measured as above; with --batch, the batched IR timed
at each batch size. One table (sweep.md), one plot (sweep.png) and sweep.json in --out-dir.
"device p50" is the device's own inference time (the InferRequest alone, as OpenVINO's
benchmark_app measures it, or the native kernel's call), timed inside the same hops as the hop
itself; "edgeamp overhead" is the p50 of what the runtime adds around it, hop by hop; RTF is the
hop length over the p50 hop. The table ends with the benchmark_app command that runs the same IR
the same way (its defaults differ: throughput hint, several streams, bf16 where the CPU has it);
--profile adds OpenVINO's per-operation counters.

examples:
  edgeamp bench amp.bundle                               # auto device (NPU > Myriad > GPU > CPU)
  edgeamp bench amp.bundle --device NPU --strict --precision f16
  edgeamp bench amp.bundle --device CPU --threads 1 --hop-ms 5 --out-dir bench/cpu-5ms
  edgeamp bench amp.bundle --device CPU --backend openvino --threads 1 --profile   # per-operation view
  edgeamp bench amp.bundle --device MYRIAD --json        # OpenVINO 2022.3 + a Myriad stick
  edgeamp bench --arch 64,64,1 --arch 32 --hop-ms 1,2.5,5,10 --batch 1,4,16 --device NPU
  edgeamp bench --arch wavenet:standard --arch wavenet:feather --hop-ms 2.5,10 --batch 1,4 --device CPU
  edgeamp bench capture.nam --device CPU --threads 1     # a capture file opens through the import cache
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeamp.edge_runtime.cli_common import (
    add_runtime_arguments,
    int_list,
    non_negative_int,
    options_from_args,
    positive_int,
)

OPENS_BUNDLE = True  # BUNDLE may be a capture file: the dispatcher (edgeamp.cli) opens it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", nargs="?", help="a bundle (or none, with --arch)")
    p.add_argument("--arch", action="append", default=[], metavar="UNITS",
                   help="sweep: layer sizes of a random-weight model, e.g. 64,64,1 (the original: last layer 1 unit, "
                        "no head), 32 (with a dense head), gru:12 (a GRU, AIDA-X's size) or wavenet:standard (NAM's "
                        "WaveNet sizes: standard, lite, feather, nano); repeatable")
    p.add_argument("--allow-fallback", action="store_true",
                   help="with a named --device that is missing, measure the CPU instead (recorded as a fallback in "
                        "bench.json and the table); without it the benchmark fails, as benchmark_app -d does")
    p.add_argument("--batch", type=int_list, metavar="B[,B...]",
                   help="sweep: also time the batched IR at these batch sizes, e.g. 1,4,16")
    p.add_argument("--hops", type=positive_int, default=1000, help="hops to time (default 1000: 10 s at 10 ms hops)")
    p.add_argument("--warmup", type=non_negative_int, default=50, help="hops run before timing (default 50)")
    p.add_argument("--out-dir", default="bench", help="where bench.json, bench.md, latency.png go (default bench/)")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the device's MatMul peak")
    p.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    p.add_argument("--profile", action="store_true",
                   help="add OpenVINO's per-operation counters (PERF_COUNT, as benchmark_app -pc): time per hop by "
                        "operation and the kernel the plugin picked, from a separate counted run")
    add_runtime_arguments(p, hop_list=True)


def run(args: argparse.Namespace) -> int:
    from edgeamp.core.bundle import read_bundle
    from edgeamp.core.errors import ConfigError
    from edgeamp.edge_runtime.bench import bench_bundle, histogram_png, markdown

    if args.hops < 10:
        raise ConfigError("--hops must be at least 10 for percentiles to mean anything")
    if args.device.lower() != "auto" and not args.allow_fallback:
        args.strict = True  # a benchmark of a named device measures that device or fails (as benchmark_app -d)
    if args.arch:
        return _sweep(args)
    if not args.bundle:
        raise ConfigError("give a BUNDLE, or --arch for a sweep of random-weight models")
    if args.batch:
        raise ConfigError("--batch is for sweeps (--arch); a service batches by itself (edgeamp serve)")
    if args.hop_ms and len(args.hop_ms) > 1:
        raise ConfigError("several --hop-ms values make a sweep: add --arch (or give one hop)")
    args.hop_ms = args.hop_ms[0] if args.hop_ms else None
    bundle = read_bundle(args.bundle)
    result = bench_bundle(bundle, options_from_args(args), hops=args.hops, warmup=args.warmup, peak=not args.no_peak,
                          profile=args.profile)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown([result])
    (out / "bench.md").write_text(table)
    png = histogram_png(result, out / "latency.png")
    if args.profile and result.get("op_profile") is None:
        print(f"--profile: no OpenVINO graph runs on the {result['variant']} engine (add --backend openvino for "
              "its per-operation counters)", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "hop_times_ms"}, indent=2))
    else:
        print(table)
        print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}"
              + (f", {out / 'latency.png'}" if png else " (no latency.png: pip install matplotlib)"))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from edgeamp.core.errors import ConfigError

    from .sweep import ArchSpec, markdown, plot, run_sweep

    if args.bundle:
        raise ConfigError("--arch sweeps random-weight models: give no BUNDLE")
    archs = [ArchSpec.parse(a) for a in args.arch]
    hops = args.hop_ms or [10.0]
    args.hop_ms = None  # each sweep bundle is exported at its own hop
    options = options_from_args(args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = run_sweep(archs, hops, args.batch or [1], options, out, hops=args.hops, warmup=args.warmup)
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out / "sweep.md").write_text(table)
    png = plot(result, out / "sweep.png")
    print(table)
    print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}"
          + (f", {out / 'sweep.png'}" if png else " (no sweep.png: pip install matplotlib)"))
    return 0
