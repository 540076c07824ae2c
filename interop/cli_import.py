"""Import a model another tool made into a bundle, ready to export, render, bench and serve.

The format is read from the file's content:

  NAM .nam          Neural Amp Modeler's LSTM (with its stored start state and metadata); WaveNet
                    .nam files are convolutional and are refused
  RTNeural JSON     AIDA-X .aidax/.json, GuitarML (Proteus, NeuralPi), Guitarix: lstm or gru layers
                    and a dense output; extra inputs become knobs (0..1, named with --knob-names)
  Keras-2 .h5       the original experiment's CuDNNLSTM models (as `edgeamp import-legacy`)

The sample rate comes from the file where it says one (.nam); otherwise --sample-rate is
required. The bundle streams statefully with --hop-ms hops (default 10 ms), and its OpenVINO
IR is exported and verified unless --no-export.

examples:
  edgeamp import capture.nam capture.bundle
  edgeamp import model.aidax model.bundle --sample-rate 48000 --knob-names gain,tone
  edgeamp import model.h5 amp.bundle --original
"""

from __future__ import annotations

import argparse

from edgeamp.edge_runtime.cli_common import positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a .nam, .aidax/.json (RTNeural) or Keras-2 .h5 model file")
    p.add_argument("out", metavar="OUT_BUNDLE", help="bundle directory to write (replaced atomically)")
    p.add_argument("--sample-rate", type=positive_int,
                   help="the model's sample rate in Hz, where the file does not say it (RTNeural JSON, .h5)")
    p.add_argument("--hop-ms", type=positive_float, default=10.0, help="streaming hop in ms (default 10)")
    p.add_argument("--knob-names", help="names for an RTNeural model's parameter inputs, in order, e.g. gain,tone "
                   "(default: param1, param2, ... or the names the file gives)")
    p.add_argument("--no-export", action="store_true", help="write the bundle only (export its IR later)")
    legacy = p.add_argument_group(".h5 only (see `edgeamp import-legacy --help`)")
    legacy.add_argument("--window-samples", type=positive_int, help="input window per hop, in samples")
    legacy.add_argument("--hop-samples", type=positive_int, help="output samples per window, in samples")
    legacy.add_argument("--original", action="store_true",
                        help="the original experiment's 48000 Hz, 5280-sample window, 480-sample hop")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgeamp.edge_runtime.errors import ModelFormatError

    from .common import detect_format

    fmt = detect_format(Path(args.model))
    if fmt == "keras-h5":
        from edgeamp.export import cli_legacy

        return cli_legacy.run(args)
    if args.window_samples or args.original:
        raise ModelFormatError(f"{args.model} is not a Keras .h5: --window-samples and --original do not apply")
    from .importer import import_model

    names = [n.strip() for n in args.knob_names.split(",")] if args.knob_names else None
    bundle = import_model(args.model, args.out, sample_rate=args.sample_rate, hop_ms=args.hop_ms,
                          hop_samples=args.hop_samples, knob_names=names, export=not args.no_export)
    m = bundle.manifest
    a = m.architecture
    meta = m.provenance.get("source_metadata", {})
    label = " / ".join(str(meta[k]) for k in ("name", "gear_make", "gear_model") if meta.get(k))
    print(f"wrote {args.out}: {a.describe()}{', stored start state' if a.initial_state else ''}"
          f"{', knobs ' + ', '.join(f'{k.name} {k.minimum:g}..{k.maximum:g}' for k in a.knobs) if a.knobs else ''}, "
          f"{m.sample_rate} Hz, hop {m.streaming.hop_samples} samples{' (' + label + ')' if label else ''}")
    if m.exports:
        print(f"exported and verified {', '.join(sorted(m.exports))}")
    return 0
