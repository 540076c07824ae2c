"""Train a model of an amplifier from DI/amp recording pairs (or the built-in demo data).

Pairs are checked (rates, lengths, silence, clipping, NaN, unrelated files), the amp's
latency is found by whitened correlation and compensated, leading digital silence in the
target is trimmed, polarity is reported (the model learns it). The last --val-fraction of
each pair is held out unless --val-input/--val-target are given. The result is a bundle
(weights, manifest with held-out metrics and provenance, plots), exported to OpenVINO IR.

presets:
  stateful  LSTM 32 + dense head, truncated BPTT with carried state, ESR+DC loss (CPU default)
  seed      the original experiment: LSTM 64-64-1, 110 ms windows, MSE on the last 10 ms, batch 16
            (needs a GPU to get anywhere: about 3 s per step on 2 CPU cores)
  small     LSTM 12 + head, for CI and Pi-class boxes

examples:
  edgeamp train --demo out/demo.bundle --minutes 3
  edgeamp train --input di.wav --target amp.wav out/amp.bundle --preset stateful --minutes 15
  edgeamp train --data-dir ../shared/data/real-amp/B1_M3_T7 out/jvm.bundle --minutes 8
  edgeamp train ... out/amp.bundle --resume           # continue from out/amp.bundle.checkpoint

several GPUs: --strategy mirrored. Several machines: --strategy multi_worker with TF_CONFIG set on
each worker (same command and data everywhere; worker 0 writes the bundle). See README.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
from pathlib import Path

from edgeamp.edge_runtime.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .presets import PRESETS

    p.add_argument("out", metavar="OUT_BUNDLE", help="bundle directory to write")
    src = p.add_argument_group("data")
    src.add_argument("--demo", action="store_true", help="built-in demo data (synthesised guitar + teacher amp)")
    src.add_argument("--demo-seconds", type=float, default=120.0, help="length of the demo performance (default 120)")
    src.add_argument("--input", action="append", default=[], help="dry DI file (repeat with --target for more pairs)")
    src.add_argument("--target", action="append", default=[], help="amp output for the --input at the same position")
    src.add_argument("--data-dir", help="folder of pairs NAME_input.wav + NAME.wav (e.g. ../shared/data/real-amp/X)")
    src.add_argument("--val-input", action="append", default=[], help="held-out DI file(s)")
    src.add_argument("--val-target", action="append", default=[], help="held-out amp file(s)")
    src.add_argument("--channel", type=int, help="channel of multi-channel files, 1-based (default 1)")
    src.add_argument("--resample", action="store_true", help="resample targets whose rate differs from the input's")
    src.add_argument("--no-align", action="store_true", help="keep the measured latency instead of compensating it")
    t = p.add_argument_group("training")
    t.add_argument("--preset", default="stateful", choices=sorted(PRESETS), help="model preset (default: stateful)")
    t.add_argument("--steps", type=int, help="stop after this many steps")
    t.add_argument("--minutes", type=float, help="stop after this many minutes (default 3 if no --steps)")
    t.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data: same model)")
    t.add_argument("--resume", action="store_true", help="continue from OUT_BUNDLE.checkpoint")
    t.add_argument("--batch-size", type=int, help="override the preset's batch size")
    t.add_argument("--learning-rate", type=float, help="override the preset's learning rate")
    t.add_argument("--xla", action="store_true", help="jit-compile the train step (measured slower on CPU)")
    t.add_argument("--loss", choices=["esr_pre", "esr", "esr+esr_pre"],
                   help="stateful recipe loss (default esr_pre: ESR after pre-emphasis), plus the DC term")
    t.add_argument("--no-export", action="store_true", help="do not export OpenVINO IR (no held-out metrics then)")
    t.add_argument("--strategy", choices=["mirrored", "multi_worker"],
                   help="tf.distribute data parallelism: mirrored = all GPUs of this machine (or --cpu-replicas "
                        "logical CPUs); multi_worker = several machines, each with TF_CONFIG set (see README)")
    t.add_argument("--cpu-replicas", type=int,
                   help="split the CPU into N logical devices for --strategy mirrored (testing without GPUs)")


def pairs_in_dir(directory: str):
    from .pipeline import PairSpec

    d = Path(directory)
    inputs = sorted(d.glob("*_input.wav"))
    if not inputs:
        raise InputError(f"{d}: no NAME_input.wav files (pairs are NAME_input.wav + NAME.wav)")
    specs = []
    for inp in inputs:
        target = inp.with_name(inp.name.replace("_input.wav", ".wav"))
        if not target.is_file():
            raise InputError(f"{inp}: its target {target.name} is missing")
        specs.append(PairSpec(str(inp), str(target)))
    return specs


def _natural(path: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def run(args: argparse.Namespace) -> int:
    from .pipeline import DataOptions, PairSpec, train_to_bundle
    from .presets import get_preset

    if args.cpu_replicas:
        if args.strategy != "mirrored":
            raise ConfigError("--cpu-replicas only makes sense with --strategy mirrored")
        from .fit import configure_cpu_replicas

        configure_cpu_replicas(args.cpu_replicas)

    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("learning_rate", args.learning_rate),
                                   ("xla", args.xla or None), ("loss", args.loss)) if v is not None}
    config = get_preset(args.preset, **overrides)
    if len(args.input) != len(args.target):
        raise ConfigError(f"{len(args.input)} --input but {len(args.target)} --target: give them in pairs")
    if len(args.val_input) != len(args.val_target):
        raise ConfigError("--val-input and --val-target must come in pairs")
    specs = [PairSpec(i, t) for i, t in zip(args.input, args.target)]
    if args.data_dir:
        specs += pairs_in_dir(args.data_dir)
    val = [PairSpec(i, t) for i, t in zip(args.val_input, args.val_target)] or None
    minutes = args.minutes if (args.minutes or args.steps) else 3.0
    options = DataOptions(args.channel, args.resample, not args.no_align)
    with tempfile.TemporaryDirectory(prefix="edgeamp-demo-") as tmp:
        if args.demo:
            if specs:
                raise ConfigError("--demo trains on the built-in data: leave out --input/--target/--data-dir")
            from .demo_data import write_demo_data

            demo = write_demo_data(tmp, seconds=args.demo_seconds)
            specs = [PairSpec(str(demo.di), str(p)) for p in demo.targets.values()]
        if not specs:
            raise ConfigError("no training data: give --input/--target pairs, --data-dir or --demo")
        bundle = train_to_bundle(config, specs, args.out, val_specs=val, options=options, steps=args.steps,
                                 minutes=minutes, seed=args.seed, resume=args.resume, export=not args.no_export,
                                 strategy=args.strategy)
    _print_summary(bundle)
    return 0


def _print_summary(bundle) -> None:
    from edgeamp.edge_runtime.metrics import esr_verdict

    m, p = bundle.manifest, bundle.manifest.provenance
    print(f"wrote {bundle.path}: preset {p['preset']}, {p['steps']} steps in {p['training_seconds']:.0f} s "
          f"({p['samples_per_second']} samples/s, {p['stopped_by']})")
    if m.metrics:
        mt = m.metrics
        print(f"held-out {mt['held_out_seconds']} s: ESR {mt['esr']:.4f} ({esr_verdict(mt['esr'])}), "
              f"pre-emphasised {mt['esr_pre_emphasis']:.4f}, MSE {mt['mse']:.3g}, DC {mt['dc_error']:.2g}, "
              f"STFT distance {mt['stft_distance']:.3f}")
    print(f"plots: {bundle.path / 'plots'}")
