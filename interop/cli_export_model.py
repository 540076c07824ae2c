"""Write a bundle as another player's model file.

  --format nam     Neural Amp Modeler .nam (LSTM; NAM plugins and NAM's Python package load it)
  --format aidax   RTNeural JSON for AIDA-X (.aidax; also GuitarML and Guitarix players)

What a format cannot express is refused, naming the feature: knobs, an input skip or a GRU in
.nam; a sample rate other than 48 kHz or a stored start state in .aidax; window-mode models in
both. Exact rewrites are made where they exist: input/output gains fold into the weights, a
head-less model gets a unit head in .nam, knob ranges become AIDA-X's 0..1 parameters.

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


def run(args: argparse.Namespace) -> int:
    from .importer import export_model

    path = export_model(args.bundle, args.out, args.format)
    print(f"wrote {path} ({args.format}, {path.stat().st_size} bytes)")
    return 0
