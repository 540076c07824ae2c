"""Score a bundle on a DI/amp pair: ESR (plain and pre-emphasised), MSE, DC error, multi-resolution
STFT distance; writes a PNG (waveform overlay, spectra, error over time) and the model's output.

The pair goes through the same checks and latency compensation as training data.

examples:
  edgeamp eval amp.bundle --input di.wav --target amp.wav
  edgeamp eval amp.bundle --input di.wav --target amp.wav --backend numpy --out-dir eval/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeamp.edge_runtime.audio_io import write_audio
from edgeamp.edge_runtime.bundle import read_bundle
from edgeamp.edge_runtime.cli_common import add_runtime_arguments, factory_from_args, latency_summary, positive_int
from edgeamp.edge_runtime.errors import InputError
from edgeamp.edge_runtime.metrics import all_metrics, esr_verdict
from edgeamp.edge_runtime.render import render


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--input", required=True, help="dry DI file")
    p.add_argument("--target", required=True, help="the amp's output for it")
    p.add_argument("--out-dir", default="eval", help="where the PNG, model output and metrics go (default: eval/)")
    p.add_argument("--channel", type=positive_int, help="channel of multi-channel files, 1-based")
    p.add_argument("--no-align", action="store_true", help="do not compensate the measured latency")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from .data import load_pair

    bundle = read_bundle(args.bundle)
    pair = load_pair(args.input, args.target, channel=args.channel, align=not args.no_align, min_seconds=0.1)
    sr = bundle.manifest.sample_rate
    if pair.report.sample_rate != sr:
        raise InputError(f"{args.input} is {pair.report.sample_rate} Hz, the model runs at {sr} Hz")
    factory = factory_from_args(args, bundle)
    proc = factory.new()
    y_hat, seconds = render(proc, pair.x)
    metrics = all_metrics(pair.y, y_hat)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.input).stem
    png = importlib.util.find_spec("matplotlib") is not None  # metrics need no plotting library
    if png:
        from .plots import comparison

        comparison(pair.y, y_hat, sr, out / f"{stem}.png", f"{Path(args.bundle).name} on {stem}")
    write_audio(out / f"{stem}_model.wav", y_hat, sr, "FLOAT")
    doc = {**metrics, "latency_samples": pair.report.latency_samples, "polarity": pair.report.polarity,
           "seconds": pair.x.shape[0] / sr, "real_time_factor": pair.x.shape[0] / sr / seconds}
    (out / f"{stem}_metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    how = "compensated" if pair.report.latency_compensated else "kept (the model learns it)"
    print(f"{args.input} ({doc['seconds']:.2f} s, latency {pair.report.latency_samples} samples {how}, "
          f"polarity {'inverted' if pair.report.polarity < 0 else 'normal'})")
    print(f"  ESR               {metrics['esr']:.4f}  ({esr_verdict(metrics['esr'])})")
    print(f"  ESR pre-emphasis  {metrics['esr_pre_emphasis']:.4f}")
    print(f"  MSE               {metrics['mse']:.3e}")
    print(f"  DC error          {metrics['dc_error']:.3e}")
    print(f"  STFT distance     {metrics['stft_distance']:.4f}")
    print(f"  runtime           {factory.describe()}, {doc['real_time_factor']:.1f}x real time, "
          f"{latency_summary(proc.hop_times_ms())}")
    print(f"  wrote {out / (stem + '_model.wav')}, {out / (stem + '_metrics.json')}"
          + (f", {out / (stem + '.png')}" if png else " (no PNG: pip install matplotlib)"))
    return 0
