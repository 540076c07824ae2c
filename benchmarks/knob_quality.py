"""Knob-conditioned model on the demo data: ESR at trained and never-trained settings, whether the
knobs move the sound the way the teacher's do, and what the extra inputs cost in real time.

Trains (or takes with --bundle) a gain/tone-conditioned model on the teacher rendered at a grid
of settings, then renders the held-out tail of the DI performance (never trained on, at any
setting) through the OpenVINO runtime at

- every trained grid setting, and
- settings between the grid points that were never trained (interpolation),

and compares each with the teacher at the same setting: ESR, pre-emphasised ESR, and the level
(RMS dB) and brightness (spectral centroid) of model and teacher, so that "the knob does what
the teacher's knob does" is a number. The real-time cost of the knob inputs is the per-hop
time of the same topology with and without them (one inference thread).

usage (about 12 minutes on 2 cores with the defaults):
  .venv/bin/python benchmarks/knob_quality.py --minutes 8 --out benchmarks/results/knob_quality.json
  .venv/bin/python benchmarks/knob_quality.py --bundle out/cond.bundle     # score an existing model
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

GRID = [(g, t) for g in (0.0, 5.0, 10.0) for t in (2.0, 8.0)]
UNTRAINED = [(2.5, 5.0), (7.5, 5.0), (5.0, 5.0), (2.5, 2.0), (7.5, 8.0)]


def centroid_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.shape[0])))
    freqs = np.fft.rfftfreq(y.shape[0], 1 / sr)
    return float(np.sum(freqs * spec) / np.sum(spec))


def rms_db(y: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(y**2)) + 1e-12))


def hop_cost(rounds: int = 6, hops: int = 150) -> dict:
    """Per-hop time of the stateful preset's topology (random weights) without and with the gain and
    tone inputs, one thread. The two processors alternate in rounds, because on a shared 2-core
    machine the same configuration drifts by +-30 % from minute to minute."""
    from edgeamp.core.bundle import Bundle, Manifest, write_bundle
    from edgeamp.core.model import Streaming, random_weights
    from edgeamp.edge_runtime.session import open_processor
    from edgeamp.export.exporter import export_bundle
    from edgeamp.train.demo_data import KNOBS
    from edgeamp.train.presets import get_preset

    x = np.random.default_rng(0).uniform(-0.5, 0.5, 480).astype(np.float32)
    out = np.empty_like(x)
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for name, knobs in (("without", ()), ("with", KNOBS)):
            arch = get_preset("stateful").architecture(knobs)
            path = write_bundle(Path(tmp) / f"{name}.bundle",
                                Bundle(Manifest(48000, arch, Streaming("stateful", 480)), random_weights(arch, seed=1)))
            export_bundle(path, variants=("stateful",), precisions=("f32",), verify_seconds=0.2)
            procs[name] = open_processor(path, device="CPU", aligned=True, threads=1)[0]
        times = {name: [] for name in procs}
        for _ in range(rounds):
            for name, proc in procs.items():
                for _ in range(hops):
                    proc.process(x, out)
                times[name].extend(proc.hop_times_ms()[-hops + 10:])
    med = {name: float(np.median(t)) for name, t in times.items()}
    return {"hop_ms_without_knobs": med["without"], "hop_ms_with_gain_tone": med["with"],
            "real_time_factor_without": 10.0 / med["without"], "real_time_factor_with": 10.0 / med["with"]}


START, END = "<!-- knobs:start -->", "<!-- knobs:end -->"


def table(result: dict) -> str:
    lines = ["| gain | tone | trained | ESR | ESR pre-emph | RMS dB teacher / model | centroid Hz teacher / model |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['gain']:g} | {r['tone']:g} | {'yes' if r['trained'] else 'no'} | {r['esr']:.3f} "
                     f"| {r['esr_pre_emphasis']:.3f} | {r['rms_db_teacher']:.1f} / {r['rms_db_model']:.1f} "
                     f"| {r['centroid_hz_teacher']:.0f} / {r['centroid_hz_model']:.0f} |")
    c = result["cost"]
    lines += ["", f"Mean held-out ESR at trained settings {result['mean_esr_trained']:.3f}, at never-trained "
              f"settings {result['mean_esr_untrained']:.3f}. Across settings, model vs teacher level correlates at "
              f"r = {result['level_correlation']:.3f} and brightness at r = {result['brightness_correlation']:.3f}. "
              f"The two knob inputs cost {c['hop_ms_with_gain_tone'] - c['hop_ms_without_knobs']:+.3f} ms per "
              f"10 ms hop ({c['real_time_factor_without']:.1f}x -> {c['real_time_factor_with']:.1f}x real time, "
              "stateful preset, one thread)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", help="score this conditioned bundle instead of training one")
    p.add_argument("--minutes", type=float, default=8.0, help="training budget (default 8)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the demo performance (default 60)")
    p.add_argument("--out", default="benchmarks/results/knob_quality.json")
    p.add_argument("--keep", help="also save the trained bundle here")
    p.add_argument("--cost-only", action="store_true", help="only measure what the knob inputs cost per hop")
    p.add_argument("--from-json", help="print (and with --readme, insert) the table of a saved result")
    p.add_argument("--readme", help="replace the table between <!-- knobs:start/end --> in this file")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        print(table(result))
        if args.readme:
            from report import update_readme

            update_readme(Path(args.readme), table(result), START, END)
        return 0
    if args.cost_only:
        print(json.dumps(hop_cost(), indent=2))
        return 0

    from edgeamp.core.bundle import read_bundle
    from edgeamp.core.metrics import all_metrics
    from edgeamp.edge_runtime.render import render
    from edgeamp.edge_runtime.session import open_processor
    from edgeamp.train import demo_data, knob_data
    from edgeamp.train.pipeline import train_to_bundle
    from edgeamp.train.presets import get_preset

    config = get_preset("stateful")
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle:
            bundle = read_bundle(args.bundle)
        else:
            demo = demo_data.write_demo_data(Path(tmp) / "data", seconds=args.seconds, grid=GRID)
            knobs, specs = knob_data.pairs_from_manifest(demo.manifest)
            t0 = time.time()
            bundle = train_to_bundle(config, specs, args.keep or Path(tmp) / "cond.bundle", knobs=knobs,
                                     minutes=args.minutes)
            print(f"trained in {time.time() - t0:.0f} s")
        sr = bundle.manifest.sample_rate
        di = demo_data.performance(args.seconds)
        tail = di[int(round(di.shape[0] * (1 - config.val_fraction))):]  # the part training held out
        proc, _ = open_processor(bundle, device="CPU")
        rows = []
        for trained, settings in ((True, GRID), (False, UNTRAINED)):
            for gain, tone in settings:
                # the teacher runs on the whole DI, as in training, and is cut to the same tail
                teacher = demo_data.render_teacher(di, gain, tone)[-tail.shape[0]:]
                proc.set_knob("gain", gain)
                proc.set_knob("tone", tone)
                proc.reset()
                y_hat, _ = render(proc, tail, desc=f"g{gain:g} t{tone:g}")
                m = all_metrics(teacher, y_hat)
                rows.append({"gain": gain, "tone": tone, "trained": trained, "esr": m["esr"],
                             "esr_pre_emphasis": m["esr_pre_emphasis"],
                             "rms_db_teacher": rms_db(teacher), "rms_db_model": rms_db(y_hat),
                             "centroid_hz_teacher": centroid_hz(teacher, sr),
                             "centroid_hz_model": centroid_hz(y_hat, sr)})
        if not args.bundle:
            bundle_info = {"training": bundle.manifest.provenance.get("training_seconds"),
                           "steps": bundle.manifest.provenance.get("steps")}
        else:
            bundle_info = {"bundle": args.bundle}
    level_r = float(np.corrcoef([r["rms_db_teacher"] for r in rows], [r["rms_db_model"] for r in rows])[0, 1])
    bright_r = float(np.corrcoef([r["centroid_hz_teacher"] for r in rows],
                                 [r["centroid_hz_model"] for r in rows])[0, 1])
    cost = hop_cost()
    result = {"grid": GRID, "untrained": UNTRAINED, "model": bundle_info, "rows": rows,
              "mean_esr_trained": float(np.mean([r["esr"] for r in rows if r["trained"]])),
              "mean_esr_untrained": float(np.mean([r["esr"] for r in rows if not r["trained"]])),
              "level_correlation": level_r, "brightness_correlation": bright_r, "cost": cost}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    if args.readme:
        from report import update_readme

        update_readme(Path(args.readme), table(result), START, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
