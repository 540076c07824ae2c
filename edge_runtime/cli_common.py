"""Options shared by the runtime commands (render, live, bench, serve)."""

from __future__ import annotations

import argparse

import numpy as np

from .errors import ConfigError
from .model import hop_from_ms
from .session import open_processor


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model runtime")
    g.add_argument("--backend", choices=["openvino", "numpy"], default="openvino",
                   help="openvino (default) or the numpy reference (slow, exact)")
    g.add_argument("--device", default="auto",
                   help="auto (NPU > Myriad > GPU > CPU), or an OpenVINO device string: CPU, GPU.0, NPU, "
                        "MYRIAD, AUTO:NPU,CPU ... (see `edgeamp devices`)")
    g.add_argument("--strict", action="store_true", help="fail instead of falling back to CPU")
    g.add_argument("--mode", choices=["stateful", "window"], help="streaming semantics (default: the bundle's)")
    hop = g.add_mutually_exclusive_group()
    hop.add_argument("--hop-ms", type=float, help="hop in ms (needs IR exported at that hop; default: the bundle's)")
    hop.add_argument("--hop-samples", type=int, help="hop in samples")
    g.add_argument("--threads", type=int, help="CPU inference threads (default: OpenVINO's choice)")
    g.add_argument("--variant", choices=["stateful", "explicit_state", "window"],
                   help="IR variant (default: what the device needs, e.g. explicit_state on a Myriad VPU)")
    g.add_argument("--precision", choices=["f32", "f16"], help="IR weights (default: f16 on VPU/NPU, else f32)")
    g.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="set a knob in its own units, e.g. --knob gain=7 (repeatable)")


def parse_knobs(items: list[str]) -> dict[str, float]:
    knobs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--knob takes NAME=VALUE, got {item!r}")
        try:
            knobs[name.strip()] = float(value)
        except ValueError as exc:
            raise ConfigError(f"--knob {item!r}: {value!r} is not a number") from exc
    return knobs


def hop_from_args(args: argparse.Namespace, sample_rate: int) -> int | None:
    if args.hop_samples:
        return args.hop_samples
    if args.hop_ms:
        return hop_from_ms(args.hop_ms, sample_rate)
    return None


def processor_from_args(args: argparse.Namespace, bundle, *, aligned: bool = False):
    proc, choice = open_processor(
        bundle,
        backend=args.backend,
        device=args.device,
        mode=args.mode,
        hop_samples=hop_from_args(args, bundle.manifest.sample_rate),
        strict=args.strict,
        aligned=aligned,
        threads=args.threads,
        variant=args.variant,
        precision=args.precision,
    )
    for name, value in parse_knobs(args.knob).items():
        proc.set_knob(name, value)
    proc.reset()  # knobs set before the first hop apply without a ramp
    return proc, choice


def latency_summary(times_ms: np.ndarray) -> str:
    if times_ms.size == 0:
        return "no hops"
    p50, p99 = np.percentile(times_ms, [50, 99])
    return f"per-hop compute p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {times_ms.max():.3f} ms"
