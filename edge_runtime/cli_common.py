"""Options shared by the runtime commands (render, live, bench, serve)."""

from __future__ import annotations

import argparse

import numpy as np

from edgeamp.core.errors import ConfigError

from .session import ProcessorFactory, RuntimeOptions


def float_list(text: str) -> list[float]:
    """argparse type: comma-separated positive numbers, e.g. 1,2.5,5,10."""
    return [positive_float(part) for part in text.split(",")]


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated positive whole numbers, e.g. 1,4,16."""
    return [positive_int(part) for part in text.split(",")]


def add_runtime_arguments(p: argparse.ArgumentParser, *, hop_list: bool = False) -> None:
    g = p.add_argument_group("model runtime")
    g.add_argument("--backend", choices=["auto", "native", "openvino", "numpy"], default="auto",
                   help="auto (default: edgeamp's native engine on a CPU wherever it runs the model as asked, "
                        "the faster path on every model measured; OpenVINO on NPU/GPU/Myriad and for bf16, f16 "
                        "weights, an IR --variant or window mode), native (edgeamp's C++ kernels: CPU, stateful, "
                        "any hop, no IR needed), openvino (an exported IR), or numpy (the float64 reference: "
                        "slow, exact)")
    g.add_argument("--device", default="auto",
                   help="auto (NPU > Myriad > GPU > CPU), or an OpenVINO device string: CPU, GPU.0, NPU, "
                        "MYRIAD, AUTO:NPU,CPU ... (see `edgeamp devices`)")
    g.add_argument("--strict", action="store_true", help="fail instead of falling back to CPU")
    g.add_argument("--mode", choices=["stateful", "window"], help="streaming semantics (default: the bundle's)")
    hop = g.add_mutually_exclusive_group()
    hop.add_argument("--hop-ms", type=float_list if hop_list else positive_float,
                     help="hop in ms (needs IR exported at that hop; default: the bundle's)")
    hop.add_argument("--hop-samples", type=positive_int, help="hop in samples")
    g.add_argument("--threads", type=positive_int, help="CPU inference threads (default: OpenVINO's choice)")
    g.add_argument("--variant", choices=["stateful", "explicit_state", "window"],
                   help="IR variant (default: what the device needs, e.g. explicit_state on a Myriad VPU)")
    g.add_argument("--precision", choices=["f32", "f16"], help="IR weights (default: f16 on VPU/NPU, else f32)")
    g.add_argument("--inference-precision", choices=["f32", "bf16", "f16"], default="f32",
                   help="CPU execution precision (default f32). bf16 runs natively on CPUs with AVX512_BF16 or AMX: "
                        "on the native engine for recurrent models (layers with 32 KB or more of step weights; smaller "
                        "ones stay f32, where bf16 measured slower), on OpenVINO otherwise; f16 natively only with "
                        "AVX512_FP16/AMX-FP16 (elsewhere the CPU plugin runs it as bf16: same ESR); GPUs and NPUs run "
                        "f16 natively. `edgeamp bench` reports the ESR it costs")
    g.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="set a knob in its own units, e.g. --knob gain=7 (repeatable)")
    add_cache_argument(g)


def add_cache_argument(p) -> None:
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where a capture file given instead of a bundle (.nam, .aidax, .json) is imported once and "
                        "reused (default ~/.cache/edgeamp/captures, or $EDGEAMP_CACHE_DIR)")


def _number_type(kind: type, minimum: float, above: bool, words: str):
    """An argparse type: a finite ``kind`` (int or float) > or >= ``minimum``, refused at parse time
    with the value named."""
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (value > minimum if above else value >= minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{words}, got {text}")
        return value

    parse.__name__ = words
    return parse


positive_int = _number_type(int, 1, False, "must be at least 1")
non_negative_int = _number_type(int, 0, False, "must be 0 or more")
non_negative_float = _number_type(float, 0.0, False, "must be 0 or more")
positive_float = _number_type(float, 0.0, True, "must be a positive number")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (pick a free one) to 65535."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535, got {value}")
    return value


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
        if knobs[name.strip()] != knobs[name.strip()] or abs(knobs[name.strip()]) == float("inf"):
            raise ConfigError(f"--knob {item!r}: the value must be a finite number")
    return knobs


def options_from_args(args: argparse.Namespace, **extra) -> RuntimeOptions:
    """The :class:`RuntimeOptions` that the runtime arguments describe (``extra`` overrides)."""
    return RuntimeOptions(
        backend=args.backend, device=args.device, mode=args.mode, hop_samples=args.hop_samples, hop_ms=args.hop_ms,
        strict=args.strict, threads=args.threads, variant=args.variant, precision=args.precision,
        inference_precision=args.inference_precision, knobs=parse_knobs(args.knob), **extra,
    )


def factory_from_args(args: argparse.Namespace, bundle, **extra) -> ProcessorFactory:
    """Open ``bundle`` as the runtime arguments say: the one way every command opens a model."""
    return ProcessorFactory(bundle, options_from_args(args, **extra))


def latency_summary(times_ms: np.ndarray) -> str:
    if times_ms.size == 0:
        return "no hops"
    p50, p99 = np.percentile(times_ms, [50, 99])
    return f"per-hop compute p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {times_ms.max():.3f} ms"
