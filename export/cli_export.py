"""Export a bundle to hand-built OpenVINO IR and verify every variant against the reference.

Variants (default: all that fit the bundle's streaming mode):
  stateful        LSTM state inside the graph (ReadValue/Assign); one hop per call. CPU/GPU/NPU.
  explicit_state  state in and out as tensors, ops OpenVINO 2022.3 reads: the Myriad VPU target.
  window          the original experiment: window in, last hop out, no state (window bundles only).

Each is written as f32 and f16-compressed weights (ir/<variant>-<precision>.xml), compiled on
CPU with f32 inference precision, streamed hop by hop over a test signal and compared with the
numpy reference; the errors go into the manifest. An f32 error above 1e-5 fails the export and
leaves the bundle untouched. Re-running an export is idempotent.

examples:
  edgeamp export out/amp.bundle
  edgeamp export out/amp.bundle --variants stateful --hop-ms 5
  edgeamp export out/amp.bundle --verify        # re-check the IR already in the bundle
"""

from __future__ import annotations

import argparse

from edgeamp.core.bundle import read_manifest
from edgeamp.core.model import hop_from_ms
from edgeamp.edge_runtime.cli_common import positive_float, positive_int

from .variants import PRECISIONS, VARIANTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}")
    hop = p.add_mutually_exclusive_group()
    hop.add_argument("--hop-ms", type=positive_float,
                     help="hop of the stateful variants in ms (default: the bundle's hop)")
    hop.add_argument("--hop-samples", type=positive_int, help="hop in samples instead of ms")
    p.add_argument("--precision", choices=[*PRECISIONS, "both"], default="both",
                   help="weights precision (default: both)")
    p.add_argument("--verify-seconds", type=positive_float, default=10.0,
                   help="seconds of test signal streamed per stateful variant (default: 10)")
    p.add_argument("--window-verify-seconds", type=positive_float, default=2.0,
                   help="seconds for the window variant, which costs a full window per hop (default: 2)")
    p.add_argument("--verify", action="store_true", help="only re-verify the IR already in the bundle")


def run(args: argparse.Namespace) -> int:
    from .exporter import export_bundle, verify_exports  # builds graphs: current OpenVINO only

    if args.verify:
        results = verify_exports(args.bundle, args.verify_seconds, args.window_verify_seconds)
        failed = False
        for key, r in results.items():
            ok = r.get("passed", True)  # f16 weights: reported, not judged
            failed |= not ok
            how = f"{r['criterion']}, limit {r['limit']:.2e}" if "passed" in r else "reported only"
            print(f"{key:28s} max abs error {r['max_abs_error']:.3e}  ESR vs reference {r['esr_vs_reference']:.3e}"
                  f"  {'OK' if ok else 'FAILED'} ({how})")
        return 1 if failed else 0
    manifest = read_manifest(args.bundle)
    hop = args.hop_samples or (hop_from_ms(args.hop_ms, manifest.sample_rate) if args.hop_ms else None)
    variants = tuple(v.strip() for v in args.variants.split(",")) if args.variants else None
    precisions = PRECISIONS if args.precision == "both" else (args.precision,)
    bundle = export_bundle(args.bundle, variants=variants, precisions=precisions, hop_samples=hop,
                           verify_seconds=args.verify_seconds, window_verify_seconds=args.window_verify_seconds)
    for _key, e in sorted(bundle.manifest.exports.items()):
        print(f"{e.xml:28s} hop {e.hop_samples:5d}  max abs error {e.max_abs_error:.3e}  "
              f"ESR vs reference {e.esr_vs_reference:.3e}  ops: {', '.join(e.ops)}")
    return 0
