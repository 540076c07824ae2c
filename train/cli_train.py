"""Train a model of an amplifier from DI/amp recording pairs (or the built-in demo data).

Pairs are checked (rates, lengths, silence, clipping, NaN, unrelated files), the amp's
latency is found by whitened correlation and compensated, leading digital silence in the
target is trimmed, polarity is reported (the model learns it). Three parts, always: training
audio; a validation clip, which picks the best checkpoint and drives the learning-rate halving and
early stopping; a test clip, scored once at the end and never used for any choice. The figures
printed and stored at the top of the manifest are the test clip's (the validation clip's are kept
apart under metrics.validation). Without --val-*/--test-* options the last 15 % of each pair is the
test clip and the 15 % before it the validation clip (NAM's standard inputs: NAM's own validation
clip is the test clip). The result is a bundle
(weights, manifest with held-out metrics and provenance, plots), exported to OpenVINO IR.

presets (test-clip ESR plain / pre-emphasised after 8 minutes on 2 CPU cores, real amplifier
recordings ../shared/data/real-amp, clips 1-3 train, 4 validates, 5 tests; runtime: p50 of a 10 ms
hop on one core, the native engine; README, "Quality against a peer"):
  cab       (default) LSTM 32 + dense head + a learned 1024-tap FIR stage (a cabinet's or output
            transformer's long response), loss plain + pre-emphasised ESR: B10_M0_T0 0.0092 / 0.0114,
            B1_M3_T7 0.0190 / 0.0860 (NAM's WaveNet lite: 0.0203 / 0.0284 and 0.0496 / 0.1837); on
            playing it never heard (B1_M3_T7, each clip left out in turn: benchmarks/nam_peer.py --folds)
            mean 0.096 / 0.324, worst clip 0.269 / 0.818; 0.12 ms
  stateful  LSTM 32 + dense head, truncated BPTT with carried state, pre-emphasised ESR + DC loss, no
            FIR stage: B1_M3_T7 0.0858 / 0.2016; 0.09 ms
  seed      the original experiment: LSTM 64-64-1, 110 ms windows, MSE on the last 10 ms, batch 16
            (needs a GPU to get anywhere: about 3 s per step on 2 CPU cores); 1.0 ms
  small     LSTM 12 + head, for CI and Pi-class boxes; 0.04 ms

examples:
  edgeamp train --demo out/demo.bundle --minutes 3
  edgeamp train --input di.wav --target amp.wav out/amp.bundle --minutes 15      # the cab preset
  edgeamp train --data-dir ../shared/data/real-amp/B1_M3_T7 out/jvm.bundle --minutes 8 \
      --val-pattern file_4 --test-pattern file_5      # the reference protocol on the real recordings
  edgeamp train ... out/amp.bundle --resume           # continue from out/amp.bundle.checkpoint

several GPUs: --strategy mirrored. Several machines: --strategy multi_worker with TF_CONFIG set on
each worker (same command and data everywhere; worker 0 writes the bundle). See README.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile

from edgeamp.core.errors import ConfigError
from edgeamp.edge_runtime.cli_common import non_negative_int, positive_float, positive_int

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .presets import DEFAULT_PRESET, PRESETS

    p.add_argument("out", metavar="OUT_BUNDLE", help="bundle directory to write")
    src = p.add_argument_group("data")
    src.add_argument("--demo", action="store_true", help="built-in demo data (synthesised guitar + teacher amp)")
    src.add_argument("--demo-seconds", type=positive_float, default=120.0,
                     help="length of the demo performance (default 120)")
    src.add_argument("--input", action="append", default=[], help="dry DI file (repeat with --target for more pairs)")
    src.add_argument("--target", action="append", default=[], help="amp output for the --input at the same position")
    src.add_argument("--data-dir", help="folder (searched recursively) of pairs NAME_input.wav + NAME.wav, or a "
                     "shared CLIP_input.wav + SETTING_CLIP.wav targets; knob values in the names (B1_M3_T7_G5_...) "
                     "make a knob-conditioned model")
    src.add_argument("--knob-manifest", help="JSON or CSV listing pairs and their knob values (see knob_data)")
    src.add_argument("--knob-names", help="letters in file names -> knob names (default B=bass,M=mid,T=treble,G=gain)")
    src.add_argument("--knob-range", action="append", default=[], metavar="NAME=MIN:MAX[:DEFAULT]",
                     help="a knob's range (default 0:10, default value in the middle)")
    src.add_argument("--demo-grid", help="with --demo: teacher knob grid GAINS x TONES, e.g. 0,5,10x2,8 "
                     "(trains a gain/tone-conditioned model)")
    src.add_argument("--val-pattern", metavar="REGEX",
                     help="pairs whose input or target path matches are the validation set, e.g. 'file_4'")
    src.add_argument("--val-input", action="append", default=[], help="validation DI file(s)")
    src.add_argument("--val-target", action="append", default=[], help="validation amp file(s)")
    src.add_argument("--test-pattern", metavar="REGEX",
                     help="pairs whose input or target path matches are the test set, scored once at the end, e.g. "
                          "'file_5|B4_M5_T5|B5_M6_T5|B5_M5_T8' (a clip and whole settings)")
    src.add_argument("--test-input", action="append", default=[], help="test DI file(s)")
    src.add_argument("--test-target", action="append", default=[], help="test amp file(s)")
    src.add_argument("--channel", type=positive_int, help="channel of multi-channel files, 1-based (default 1)")
    src.add_argument("--resample", action="store_true", help="resample targets whose rate differs from the input's")
    src.add_argument("--no-align", action="store_true", help="keep the measured latency instead of compensating it")
    t = p.add_argument_group("training")
    t.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                   help=f"model preset (default: {DEFAULT_PRESET}, the best measured; see presets above)")
    t.add_argument("--steps", type=positive_int, help="stop after this many steps")
    t.add_argument("--minutes", type=positive_float, help="stop after this many minutes (default 3 if no --steps)")
    t.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data: same model)")
    t.add_argument("--resume", action="store_true", help="continue from OUT_BUNDLE.checkpoint")
    t.add_argument("--init-from", metavar="BUNDLE",
                   help="fine-tune this bundle (e.g. an `edgeamp import`ed NAM or AIDA-X capture) on the data: its "
                        "architecture, knobs and weights are the start, the preset gives the recipe and schedule")
    t.add_argument("--cell", choices=["lstm", "gru"],
                   help="recurrent cell of every layer (default: the preset's, lstm); a GRU has 3/4 of the weights")
    t.add_argument("--fir-taps", type=non_negative_int,
                   help="add a learned FIR stage of this many taps after the head (a long linear response such as "
                        "a cabinet, which an LSTM remembers badly; e.g. 512 = 10.7 ms at 48 kHz); 0: none (default)")
    t.add_argument("--batch-size", type=positive_int, help="override the preset's batch size")
    t.add_argument("--learning-rate", type=positive_float, help="override the preset's learning rate")
    t.add_argument("--xla", action="store_true", help="jit-compile the train step (measured slower on CPU)")
    t.add_argument("--loss", choices=["esr_pre", "esr", "esr+esr_pre"],
                   help="stateful recipe loss (default esr_pre: ESR after pre-emphasis), plus the DC term")
    t.add_argument("--no-balance-settings", action="store_true",
                   help="knob-conditioned data: let loud settings dominate the loss (default: each setting counts "
                        "alike)")
    t.add_argument("--no-export", action="store_true", help="do not export OpenVINO IR (no held-out metrics then)")
    t.add_argument("--strategy", choices=["mirrored", "multi_worker"],
                   help="tf.distribute data parallelism: mirrored = all GPUs of this machine (or --cpu-replicas "
                        "logical CPUs); multi_worker = several machines, each with TF_CONFIG set (see README)")
    t.add_argument("--cpu-replicas", type=positive_int,
                   help="split the CPU into N logical devices for --strategy mirrored (testing without GPUs)")


def run(args: argparse.Namespace) -> int:
    from .data import PairSpec
    from .pipeline import DataOptions, train_to_bundle
    from .presets import get_preset

    if args.cpu_replicas:
        if args.strategy != "mirrored":
            raise ConfigError("--cpu-replicas only makes sense with --strategy mirrored")
        from .fit import configure_cpu_replicas

        configure_cpu_replicas(args.cpu_replicas)

    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("learning_rate", args.learning_rate),
                                   ("xla", args.xla or None), ("loss", args.loss), ("cell", args.cell),
                                   ("fir_taps", args.fir_taps),
                                   ("balance_settings", False if args.no_balance_settings else None))
                 if v is not None}
    config = get_preset(args.preset, **overrides)
    if len(args.input) != len(args.target):
        raise ConfigError(f"{len(args.input)} --input but {len(args.target)} --target: give them in pairs")
    if len(args.val_input) != len(args.val_target):
        raise ConfigError("--val-input and --val-target must come in pairs")
    if len(args.test_input) != len(args.test_target):
        raise ConfigError("--test-input and --test-target must come in pairs")
    from . import knob_data

    specs = [PairSpec(i, t) for i, t in zip(args.input, args.target)]
    val = [PairSpec(i, t) for i, t in zip(args.val_input, args.val_target)]
    test = [PairSpec(i, t) for i, t in zip(args.test_input, args.test_target)]
    ranges = knob_data.parse_ranges(args.knob_range)
    sources = [name for name, given in (("--input/--target", specs), ("--data-dir", args.data_dir),
                                        ("--knob-manifest", args.knob_manifest), ("--demo", args.demo)) if given]
    if len(sources) > 1:
        raise ConfigError(f"choose one data source, got {' and '.join(sources)}")
    if args.demo_grid and not args.demo:
        raise ConfigError("--demo-grid goes with --demo")
    knobs = ()
    minutes = args.minutes if (args.minutes or args.steps) else 3.0
    options = DataOptions(args.channel, args.resample, not args.no_align)
    with tempfile.TemporaryDirectory(prefix="edgeamp-demo-") as tmp:
        if args.demo:
            from .cli_demo_data import parse_grid
            from .demo_data import write_demo_data

            demo = write_demo_data(tmp, seconds=args.demo_seconds, grid=parse_grid(args.demo_grid))
            knobs, specs = knob_data.pairs_from_manifest(demo.manifest, ranges)
        elif args.data_dir:
            knobs, specs = knob_data.pairs_from_names(args.data_dir, knob_data.parse_letters(args.knob_names), ranges)
        elif args.knob_manifest:
            knobs, specs = knob_data.pairs_from_manifest(args.knob_manifest, ranges)
        if not specs:
            raise ConfigError("no training data: give --input/--target pairs, --data-dir, --knob-manifest or --demo")
        # test first: a pair that is test data is never validation data
        specs, test = _hold_out(specs, test, args.test_pattern, "--test-pattern", "test")
        specs, val = _hold_out(specs, val, args.val_pattern, "--val-pattern", "validation")
        knobs = knob_data.varying_knobs(knobs, specs)
        init = None
        if args.init_from:
            from edgeamp.core.bundle import read_bundle

            init = read_bundle(args.init_from)
            given = {k.name for k in knobs}
            if given == set(init.architecture.knob_names):
                knobs = init.architecture.knobs  # the model's order, ranges and input mapping
        specs, val, test = (knob_data.restrict(x, knobs) for x in (specs, val, test))
        if knobs:
            log.info("knob-conditioned model: %s over %d training pair(s)",
                     ", ".join(f"{k.name} [{k.minimum:g}, {k.maximum:g}]" for k in knobs), len(specs))
        bundle = train_to_bundle(config, specs, args.out, knobs=knobs, val_specs=val or None, test_specs=test or None,
                                 options=options,
                                 steps=args.steps, minutes=minutes, seed=args.seed, resume=args.resume,
                                 export=not args.no_export, strategy=args.strategy, init=init)
    _print_summary(bundle)
    return 0


def _hold_out(specs: list, held: list, regex: str | None, flag: str, what: str) -> tuple[list, list]:
    """Move the pairs whose input or target path matches ``regex`` from ``specs`` to ``held`` (the
    target's name holds the setting where many targets share one DI)."""
    if not regex:
        return specs, held
    pattern = re.compile(regex)
    match = [bool(pattern.search(s.input) or pattern.search(s.target)) for s in specs]
    held = held + [s for s, m in zip(specs, match) if m]
    specs = [s for s, m in zip(specs, match) if not m]
    if not specs or not held:
        raise ConfigError(f"{flag} {regex!r} leaves {len(specs)} training and {len(held)} {what} pairs; both need "
                          "at least one")
    return specs, held


def _print_summary(bundle) -> None:
    from edgeamp.core.metrics import esr_verdict, format_esr

    m, p = bundle.manifest, bundle.manifest.provenance
    print(f"wrote {bundle.path}: preset {p['preset']}, {p['steps']} steps in {p['training_seconds']:.0f} s "
          f"({p['samples_per_second']} samples/s, {p['stopped_by']})")
    if m.metrics:
        mt = m.metrics
        v = mt.get("validation", {})
        if v:
            print(f"validation clip {v['seconds']} s (picked the checkpoint): ESR {format_esr(v['esr'])}, "
                  f"pre-emphasised {format_esr(v['esr_pre_emphasis'])}")
        print(f"test clip {mt['held_out_seconds']} s (never used for any choice): ESR {format_esr(mt['esr'])} "
              f"({esr_verdict(mt['esr'])}), "
              f"pre-emphasised {format_esr(mt['esr_pre_emphasis'])}, MSE {mt['mse']:.3g}, DC {mt['dc_error']:.2g}, "
              f"STFT distance {mt['stft_distance']:.3f}")
        for entry in mt.get("per_setting", []):
            setting = ", ".join(f"{k} {v:g}" for k, v in entry["knobs"].items())
            print(f"  at {setting}: ESR {format_esr(entry['esr'])}, pre-emphasised "
                  f"{format_esr(entry['esr_pre_emphasis'])} "
                  f"({entry['seconds']} s)")
    print(f"plots: {bundle.path / 'plots'}")
