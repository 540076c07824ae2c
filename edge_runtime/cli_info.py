"""Show a bundle: model, streaming contract, knobs, metrics, exported IR variants.

--verify recomputes the stored golden output with the numpy reference, checks every exported IR
file against the SHA-256 recorded at export, and exits with status 1 on any failure (a
difference over --tolerance, non-finite golden data, a missing or altered IR file).

examples:
  edgeamp info out/amp.bundle
  edgeamp info out/amp.bundle --verify
  edgeamp info out/amp.bundle --json
"""

from __future__ import annotations

import argparse
import json

from edgeamp.core.bundle import BundleError, read_bundle, verify_golden
from edgeamp.core.config import to_dict

from .cli_common import add_cache_argument, positive_float

OPENS_BUNDLE = True  # BUNDLE may be a capture file: the dispatcher (edgeamp.cli) opens it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="a model bundle directory, or a capture file (.nam, .aidax, .json)")
    add_cache_argument(p)
    p.add_argument("--verify", action="store_true", help="recompute golden data with the numpy reference")
    p.add_argument(
        "--tolerance", type=positive_float, default=1e-5, help="max abs error that --verify accepts (default: 1e-5)"
    )
    p.add_argument("--json", action="store_true", help="print the manifest (and verify result) as JSON")


def run(args: argparse.Namespace) -> int:
    bundle = read_bundle(args.bundle)
    m = bundle.manifest
    result = verify_bundle(bundle) if args.verify else None
    if args.json:
        doc = to_dict(m)
        if result is not None:
            doc["verify"] = result
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        a, s = m.architecture, m.streaming
        print(f"bundle      {bundle.path}")
        print(f"schema      {m.format} v{m.schema_version}")
        print(f"model       {a.describe()}{', stored start state' if a.initial_state else ''}, "
              f"{a.parameter_count()} parameters, {a.flops_per_sample()} FLOPs/sample")
        if s.mode == "window":
            stream = f"window: {s.window_samples} samples in, last {s.hop_samples} out per hop"
        else:
            stream = f"stateful, hop {s.hop_samples} samples"
        print(f"streaming   {stream} ({1000 * s.hop_samples / m.sample_rate:.2f} ms at {m.sample_rate} Hz)")
        print(f"gains       in {m.input_gain:g}, out {m.output_gain:g}; latency {m.latency_samples} samples")
        for k in a.knobs:
            print(f"knob        {k.name}: {k.minimum:g}..{k.maximum:g} (default {k.default:g})")
        for key, value in sorted(m.metrics.items()):
            print(f"metric      {key} = {value:.6g}" if isinstance(value, float) else f"metric      {key} = {value}")
        for name, rec in sorted(m.exports.items()):
            print(f"ir          {name}: hop {rec.hop_samples}, max abs error vs reference {rec.max_abs_error:.2e}, "
                  f"ESR {rec.esr_vs_reference:.2e}")
        for key, value in sorted(m.provenance.items()):
            print(f"provenance  {key}: {value if not isinstance(value, (dict, list)) else json.dumps(value)}")
        if result is not None:
            ok = result["max_abs_error"] <= args.tolerance  # False for NaN too
            print(f"verify      {'OK' if ok else 'FAILED'}: max abs error {result['max_abs_error']:.3e}, "
                  f"ESR {result['esr']:.3e} over {result['samples']} golden samples (tolerance {args.tolerance:g})")
            for key, problem in sorted(result["ir"].items()):
                print(f"verify      ir {key}: {problem}")
    if result is not None and not (result["max_abs_error"] <= args.tolerance and result["ir_ok"]):
        return 1
    return 0


def verify_bundle(bundle) -> dict:
    """Golden data recomputed, and every IR checked against its recorded hashes."""
    result = verify_golden(bundle)
    result["ir"] = {}
    result["ir_ok"] = True
    for key, record in sorted(bundle.manifest.exports.items()):
        try:
            bundle.checked_ir(record)
            result["ir"][key] = "OK" if record.sha256 else "no hashes recorded (exported by an older edgeamp)"
        except BundleError as exc:
            result["ir"][key] = f"FAILED: {exc}"
            result["ir_ok"] = False
    return result
