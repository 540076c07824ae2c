"""Import every model file under a folder as a new user would, and report the share that deploys.

Each file is detected, imported (a file that states no sample rate at its players' rate), its
stateful IR exported and verified against the numpy reference, and played through
``edgeamp.load`` on the CPU (output finite), then on each CPU engine (native, OpenVINO) against the
float64 reference on the same input (the worst and median error are printed). Prints, per format,
how many deploy and why the others were refused (grouped), and the worst check against a file's
own stored test output (AIDA-X's ``output_batch``, NAM's model directory). Not a test: run it on
captures you gathered, e.g. the model collections in NAM's, GuitarML's and AIDA-X's public repositories.

    .venv/bin/python benchmarks/capture_survey.py CAPTURES_DIR [--out DIR] [--no-export] [--shard 0/2]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import tempfile
from pathlib import Path

import numpy as np

import edgeamp
from edgeamp.core.errors import EdgeampError
from edgeamp.interop.formats import FORMATS, detect_format
from edgeamp.interop.importer import import_model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, help="where the bundles go (default: a temporary folder)")
    p.add_argument("--no-export", action="store_true", help="import only (no IR, no playing)")
    p.add_argument("--shard", default="0/1", help="K/N: every N-th file from the K-th (run N at once)")
    args = p.parse_args()
    k, n = (int(v) for v in args.shard.split("/"))
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeamp-survey-"))
    rates = {f.name: f.player_rate for f in FORMATS}
    counts: dict = collections.defaultdict(collections.Counter)
    reasons: collections.Counter = collections.Counter()
    checks, seen = [], set()
    engines: dict[str, list] = collections.defaultdict(list)  # backend -> (max abs error per unit of peak, file)
    files = sorted(f for f in args.root.rglob("*") if f.is_file())
    for i, f in enumerate(files):
        if i % n != k:
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        duplicate = digest in seen
        seen.add(digest)
        try:
            fmt = detect_format(f)
        except EdgeampError as exc:
            counts["unknown"]["refused"] += 1
            reasons[str(exc).split(": ", 1)[-1][:100]] += 1
            continue
        try:
            b = import_model(f, out / f"{i}-{f.stem[:40]}.bundle", default_sample_rate=rates.get(fmt),
                             export=not args.no_export, variants=("stateful",), precisions=("f32",),
                             verify_seconds=1.0)
            if not args.no_export:
                x = np.random.default_rng(0).uniform(-0.5, 0.5, 4800).astype(np.float32)
                y = edgeamp.load(b.path, device="CPU")(x, b.manifest.sample_rate)  # the default backend
                if not np.all(np.isfinite(y)):
                    raise EdgeampError("non-finite output")
                # every CPU engine on the same input against the float64 reference
                ref = edgeamp.load(b.path, backend="numpy")(x, b.manifest.sample_rate).astype(np.float64)
                for backend in ("native", "openvino"):
                    try:
                        got = edgeamp.load(b.path, device="CPU", backend=backend)(x, b.manifest.sample_rate)
                    except EdgeampError as exc:
                        engines[backend].append((float("inf"), f"{f.name}: {exc}"))
                        continue
                    scale = max(1.0, float(np.abs(ref).max()))
                    engines[backend].append((float(np.abs(got - ref).max()) / scale, f.name))
            counts[fmt]["deployed"] += 1
            counts[fmt]["distinct deployed"] += not duplicate
            check = b.manifest.provenance.get("source_check")
            if check:
                checks.append((check["max_abs_error"], f.name))
        except EdgeampError as exc:
            counts[fmt]["refused"] += 1
            reasons[f"{fmt}: " + str(exc).split(": ", 1)[-1][:110]] += 1
    for fmt, c in sorted(counts.items()):
        print(f"{fmt:14s} {dict(c)}")
    for reason, count in reasons.most_common():
        print(f"  {count:4d} refused: {reason}")
    if checks:
        worst, name = max(checks)
        print(f"worst check against a file's own test output: {worst:.2e} ({name})")
    for backend, errors in sorted(engines.items()):
        values = np.array([e for e, _ in errors])
        worst, name = max(errors)
        print(f"{backend:9s} against the float64 reference, max abs error per unit of peak over {len(errors)} models: "
              f"median {np.median(values):.1e}, worst {worst:.1e} ({name}); within 1e-5: "
              f"{int(np.count_nonzero(values <= 1e-5))}")
    print(f"{len(seen)} distinct files of {len(files[k::n])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
