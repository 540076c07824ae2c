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

from edgeamp.core.audio_io import resample as audio_resample
from edgeamp.core.audio_io import write_audio
from edgeamp.core.bundle import json_safe, read_bundle
from edgeamp.core.errors import InputError
from edgeamp.core.metrics import all_metrics, error_bands, esr_verdict, format_esr
from edgeamp.edge_runtime.cli_common import (
    add_runtime_arguments,
    factory_from_args,
    latency_summary,
    positive_int,
)
from edgeamp.edge_runtime.render import render
from edgeamp.edge_runtime.resampling import fit_length

OPENS_BUNDLE = True  # BUNDLE may be a capture file: the dispatcher (edgeamp.cli) opens it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--input", required=True, help="dry DI file")
    p.add_argument("--target", required=True, help="the amp's output for it")
    p.add_argument("--out-dir", default="eval", help="where the PNG, model output and metrics go (default: eval/)")
    p.add_argument("--channel", type=positive_int, help="channel of multi-channel files, 1-based")
    p.add_argument("--no-align", action="store_true", help="do not compensate the measured latency")
    p.add_argument("--resample", action="store_true",
                   help="files at another rate than the model's (or a target at another rate than its input) are "
                        "resampled to the model's rate (soxr VHQ) and scored there")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    add_runtime_arguments(p)


def evaluate_pair(factory, input_path, target_path, out_dir, *, channel: int | None = None, align: bool = True,
                  title: str = "", resample: bool = False) -> dict:
    """Score an opened model on a DI/amp pair: the pair checked and aligned as training data is, the
    model's output, metrics, and (matplotlib permitting) a comparison PNG written to ``out_dir``.
    Returns the metrics with the pair's latency/polarity, the runtime figures and the files written."""
    import importlib.util

    from .data import load_pair

    pair = load_pair(input_path, target_path, channel=channel, align=align, min_seconds=0.1, allow_resample=resample)
    sr = factory.bundle.manifest.sample_rate
    x, y = pair.x, pair.y
    if pair.report.sample_rate != sr:
        if not resample:
            raise InputError(f"{input_path} is {pair.report.sample_rate} Hz, the model runs at {sr} Hz: pass "
                             "--resample to score it at the model's rate")
        x, y = (fit_length(audio_resample(a, pair.report.sample_rate, sr), round(a.shape[0] * sr /
                                                                                  pair.report.sample_rate))
                for a in (pair.x, pair.y))
    proc = factory.new()
    y_hat, seconds = render(proc, x)
    metrics = all_metrics(y, y_hat)
    metrics["error_bands"] = error_bands(y, y_hat, sr)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(input_path).stem
    files = [out / f"{stem}_model.wav", out / f"{stem}_metrics.json"]
    if importlib.util.find_spec("matplotlib") is not None:  # metrics need no plotting library
        from .plots import comparison

        comparison(y, y_hat, sr, out / f"{stem}.png", title or stem)
        files.append(out / f"{stem}.png")
    write_audio(files[0], y_hat, sr, "FLOAT")
    doc = {**metrics, "latency_samples": pair.report.latency_samples,
           "latency_compensated": pair.report.latency_compensated, "polarity": pair.report.polarity,
           "seconds": x.shape[0] / sr, "real_time_factor": x.shape[0] / sr / seconds,
           "scored_at_hz": sr, "resampled_from_hz": pair.report.sample_rate if pair.report.sample_rate != sr else None,
           "runtime": factory.describe(), "latency": latency_summary(proc.hop_times_ms())}
    files[1].write_text(json.dumps(json_safe(doc), indent=2) + "\n")
    return {**doc, "files": [str(f) for f in files]}


def run(args: argparse.Namespace) -> int:
    bundle = read_bundle(args.bundle)
    doc = evaluate_pair(factory_from_args(args, bundle), args.input, args.target, args.out_dir,
                        channel=args.channel, align=not args.no_align,
                        title=f"{Path(args.bundle).name} on {Path(args.input).stem}", resample=args.resample)
    if args.json:
        print(json.dumps(json_safe(doc), indent=2))
        return 0
    how = "compensated" if doc["latency_compensated"] else "kept (the model learns it)"
    print(f"{args.input} ({doc['seconds']:.2f} s, latency {doc['latency_samples']} samples {how}, "
          f"polarity {'inverted' if doc['polarity'] < 0 else 'normal'})"
          + (f"; resampled from {doc['resampled_from_hz']} Hz to the model's {doc['scored_at_hz']} Hz"
             if doc["resampled_from_hz"] else ""))
    print(f"  ESR               {format_esr(doc['esr'])}  ({esr_verdict(doc['esr'])})")
    print(f"  ESR pre-emphasis  {format_esr(doc['esr_pre_emphasis'])}")
    print(f"  MSE               {doc['mse']:.3e}")
    print(f"  DC error          {doc['dc_error']:.3e}")
    print(f"  STFT distance     {doc['stft_distance']:.4f}")
    print("  error by band     share of the error energy, the band's own ESR")
    for b in doc["error_bands"]:
        band = f"{b['low_hz']:g}-{b['high_hz']:g} Hz"
        print(f"    {band:>16}  {100 * b['share']:5.1f} %  {b['band_esr']:.3g}")
    print(f"  runtime           {doc['runtime']}, {doc['real_time_factor']:.1f}x real time, {doc['latency']}")
    png = any(f.endswith(".png") for f in doc["files"])
    print(f"  wrote {', '.join(doc['files'])}" + ("" if png else " (no PNG: pip install matplotlib)"))
    return 0
