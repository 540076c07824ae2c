"""Write a bundle as another player's model file.

  --format nam     Neural Amp Modeler .nam (LSTM; NAM plugins and NAM's Python package load it)
  --format aidax   RTNeural JSON for AIDA-X (.aidax; also GuitarML and Guitarix players)

What a format cannot express is refused, naming the feature: knobs, an input skip or a GRU in
.nam; a sample rate other than 48 kHz or a stored start state in .aidax; window-mode models in
both. A model with a FIR stage (the demo's, the cab preset's) is written as the model without it
plus the stage as an impulse response, OUT_ir.wav beside OUT (float, at the model's rate): NAM and
AIDA-X players convolve their IR after the model, where the FIR stage is, so the pair reproduces the
model exactly when the IR is loaded unnormalised (a FIR before an input skip is refused).
Exact rewrites are made where they exist: input/output gains fold into the weights (.nam) or
become AIDA-X's in_gain/out_gain levels, a head-less model gets a unit head in .nam, knob ranges
become AIDA-X's 0..1 parameters. A .aidax that AIDA-X's player does not compile in (it runs one
LSTM/GRU layer of 8-80 units and a dense output) is written with a warning naming the nearest
size, or refused with --strict. A .nam carries NAM's metadata: name, date, levels where known, and
the loudness/gain NAM computes on its standard input (when NAM's package or --loudness-input
provides that file).

examples:
  edgeamp export-model amp.bundle amp.nam --format nam
  edgeamp export-model amp.bundle amp.aidax --format aidax
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    p.add_argument("out", metavar="OUT", help="model file to write (replaced atomically)")
    p.add_argument("--format", required=True, choices=["nam", "aidax"], help="the player's format")
    p.add_argument("--strict", action="store_true",
                   help="aidax: refuse a model AIDA-X's player does not compile in (one LSTM/GRU layer of 8, 12, "
                        "16, 20, 24, 32, 40, 64 or 80 units, a dense output, at most 2 knobs) instead of warning")
    p.add_argument("--loudness-input", metavar="WAV",
                   help="nam: NAM's standard loudness input, for the loudness/gain metadata NAM players normalise "
                        "with (default: from NAM's installed Python package, or $EDGEAMP_NAM_LOUDNESS_INPUT)")


def run(args: argparse.Namespace) -> int:
    from edgeamp.core.bundle import read_bundle

    from .importer import export_model, ir_path

    options = {"strict": args.strict} if args.format == "aidax" else {"loudness_input": args.loudness_input}
    bundle = read_bundle(args.bundle)
    path = export_model(bundle, args.out, args.format, **options)
    fir = getattr(bundle.architecture, "fir_taps", 0)
    print(f"wrote {path} ({args.format}, {path.stat().st_size} bytes)"
          + (f" and {ir_path(path)}: the model's {fir}-tap FIR stage as an impulse response, for the player's IR "
             "loader (unnormalised)" if fir else ""))
    return 0
