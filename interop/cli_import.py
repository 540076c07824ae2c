"""Import a model another tool made into a bundle, ready to export, render, bench and serve.

The format is read from the file's content:

  NAM .nam          Neural Amp Modeler's LSTM (with its stored start state and metadata); WaveNet
                    .nam files are convolutional and are refused
  RTNeural JSON     AIDA-X .aidax/.json, Guitarix: lstm or gru layers and a dense output; extra
                    inputs become knobs (0..1, named with --knob-names); AIDA-X's in_gain/out_gain
                    levels are applied as AIDA-X applies them, and a file's own test output
                    (input_batch/output_batch) is checked and reported
  GuitarML JSON     Proteus, NeuralPi, Chameleon, TS-M1N3, PrincePedal, NeuralSeed, GuitarML's tone
                    library (model_data + state_dict, as Automated-GuitarAmpModelling writes it):
                    LSTM or GRU, any layers, input skip; extra inputs become knobs (0..1)
  Keras-2 .h5       the original experiment's CuDNNLSTM models (window mode, as import-legacy)

The sample rate comes from the file where it says one (.nam, AIDA-X); otherwise --sample-rate is
required (GuitarML's players run at 44100 Hz, AIDA-X at 48000 Hz). The bundle streams statefully
with --hop-ms hops (default 10 ms), and its OpenVINO IR is exported and verified unless
--no-export. An import over an existing bundle replaces it only once the new one is complete.

examples:
  edgeamp import capture.nam capture.bundle
  edgeamp import model.aidax model.bundle --knob-names gain,tone
  edgeamp import Proteus/BluesJr.json bluesjr.bundle --sample-rate 44100
  edgeamp import model.h5 amp.bundle --original
"""

from __future__ import annotations

import argparse
import math

from edgeamp.edge_runtime.cli_common import positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="a .nam, .aidax/.json (RTNeural, AIDA-X), GuitarML .json or Keras-2 .h5 model file")
    p.add_argument("out", metavar="OUT_BUNDLE", help="bundle directory to write (replaced atomically)")
    p.add_argument("--sample-rate", type=positive_int,
                   help="the model's sample rate in Hz, where the file does not say it (GuitarML and older "
                   "RTNeural JSON, .h5)")
    p.add_argument("--hop-ms", type=positive_float, default=10.0, help="streaming hop in ms (default 10)")
    p.add_argument("--hop-samples", type=positive_int,
                   help="the hop in samples instead of --hop-ms (for a .h5: output samples per window)")
    p.add_argument("--knob-names", help="names for an RTNeural or GuitarML model's parameter inputs, in order, e.g. "
                   "gain,tone (default: param1, param2, ... or the names the file gives)")
    p.add_argument("--no-export", action="store_true", help="write the bundle only (export its IR later)")
    legacy = p.add_argument_group(".h5 only (see `edgeamp import-legacy --help`)")
    legacy.add_argument("--window-samples", type=positive_int, help="input window per hop, in samples")
    legacy.add_argument("--original", action="store_true",
                        help="the original experiment's 48000 Hz, 5280-sample window, 480-sample hop")


def run(args: argparse.Namespace) -> int:
    from .importer import import_model

    names = [n.strip() for n in args.knob_names.split(",")] if args.knob_names else None
    bundle = import_model(args.model, args.out, sample_rate=args.sample_rate, hop_ms=args.hop_ms,
                          hop_samples=args.hop_samples, knob_names=names, export=not args.no_export,
                          window_samples=args.window_samples, original=args.original)
    m = bundle.manifest
    a = m.architecture
    meta = m.provenance.get("source_metadata", {})
    label = " / ".join(str(meta[k])[:80] for k in ("name", "gear_make", "gear_model") if meta.get(k))
    levels = [f"{what} {20 * math.log10(g):+.1f} dB" for what, g in (("input", m.input_gain), ("output", m.output_gain))
              if g != 1.0 and g > 0]
    stream = (f"hop {m.streaming.hop_samples} samples" if m.streaming.mode == "stateful"
              else f"window {m.streaming.window_samples} / hop {m.streaming.hop_samples} samples")
    print(f"wrote {args.out}: {a.describe()}{', stored start state' if a.initial_state else ''}"
          f"{', knobs ' + ', '.join(f'{k.name} {k.minimum:g}..{k.maximum:g}' for k in a.knobs) if a.knobs else ''}"
          f"{', levels ' + ', '.join(levels) if levels else ''}, "
          f"{m.sample_rate} Hz, {stream}{' (' + label + ')' if label else ''}")
    check = m.provenance.get("source_check")
    if check:
        print(f"the file's own test output ({check['samples']} samples) reproduced within "
              f"{check['max_abs_error']:.2e} max abs (ESR {check['esr']:.2e})")
    if m.exports:
        print(f"exported and verified {', '.join(sorted(m.exports))}")
    return 0
