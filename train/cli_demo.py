"""The whole pipeline on the built-in demo data, in about 5 minutes on a 2-core CPU.

1. synthesise a DI guitar performance and render it through the teacher amp (pedalboard);
2. train `edgeamp train`'s default recipe (the `cab` preset: LSTM 32, a learned 1024-tap FIR stage,
   plain + pre-emphasised ESR loss) on the first 70% (time budget --minutes), the next 15% validating;
3. export hand-built OpenVINO IR and verify it against the numpy reference;
4. stream the test clip (the last 15%, never used for training or selection) through the runtime
   (the native engine on a CPU) in 10 ms hops, as live audio would be;
5. print test-clip ESR, the model's bass level against the target's (below 60 Hz), real-time factor
   and per-hop latency; write WAVs and a PNG comparison.

examples:
  edgeamp demo
  edgeamp demo --out demo-out --minutes 10      # longer training, better model
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from edgeamp.edge_runtime.cli_common import non_negative_int, positive_float

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .presets import DEFAULT_PRESET

    p.add_argument("--out-dir", dest="out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--out", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # older spelling
    p.add_argument("--minutes", type=positive_float, default=2.5, help="training budget in minutes (default 2.5)")
    p.add_argument("--demo-seconds", dest="seconds", type=positive_float, default=120.0,
                   help="length of the demo performance (default 120)")
    p.add_argument("--seconds", dest="seconds", type=positive_float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"model preset (default: {DEFAULT_PRESET}, edgeamp train's default; see edgeamp train --help)")
    p.add_argument("--fir-taps", type=non_negative_int, default=None,
                   help="the long-memory stage, a learned FIR after the model (the teacher ends in a cabinet "
                        "response; default: the preset's, 1024 for cab); 0: none")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from edgeamp.core.errors import require

    from .demo_data import NEEDS

    for module, purpose in (*NEEDS, ("tensorflow", "training"), ("matplotlib", "the demo's plots")):
        require(module, purpose)  # all checked before anything is written
    from edgeamp.core.audio_io import write_audio
    from edgeamp.core.bundle import json_safe
    from edgeamp.core.metrics import all_metrics, esr_verdict, format_esr, low_band_level_db
    from edgeamp.edge_runtime.cli_common import latency_summary
    from edgeamp.edge_runtime.session import ProcessorFactory, RuntimeOptions

    from .data import PairSpec
    from .demo_data import write_demo_data
    from .pipeline import train_to_bundle
    from .plots import comparison
    from .presets import get_preset

    out = Path(args.out)
    print(f"[1/5] demo data: {args.seconds:.0f} s synthesised DI guitar + teacher amp -> {out / 'data'}")
    demo = write_demo_data(out / "data", seconds=args.seconds)
    config = get_preset(args.preset, **({} if args.fir_taps is None else {"fir_taps": args.fir_taps}))
    print(f"[2/5] training preset {config.name} ({config.architecture().describe()}) for {args.minutes:g} min "
          f"on the first {100 * (1 - 2 * config.val_fraction):.0f}% (then {100 * config.val_fraction:.0f}% validation, "
          f"{100 * config.val_fraction:.0f}% test)")
    specs = [PairSpec(str(demo.di), str(p)) for p in demo.targets.values()]
    bundle = train_to_bundle(config, specs, out / "demo.bundle", minutes=args.minutes, seed=args.seed)
    p = bundle.manifest.provenance
    print(f"      {p['steps']} steps, {p['samples_per_second']} samples/s, best validation ESR "
          f"{p['best_validation_esr']:.4f}")
    e = bundle.manifest.exports["stateful-f32"]
    print(f"[3/5] exported {len(bundle.manifest.exports)} IR variants; stateful-f32 vs numpy reference: "
          f"max abs error {e.max_abs_error:.2e}")

    factory = ProcessorFactory(bundle, RuntimeOptions(device="CPU"))
    print(f"[4/5] streaming the test clip (never used for training or selection) on {factory.describe()}, "
          "10 ms hops")
    from .data import load_pair
    from .dataset import make_segment
    from .pipeline import split_three_ways

    pair = load_pair(demo.di, next(iter(demo.targets.values())))
    _, _, (held_out,) = split_three_ways([make_segment(pair.x, pair.y, (), {}, "demo")], [pair.report],
                                          config.val_fraction)  # as training did
    x, y = held_out.x[:, 0], held_out.y
    proc = factory.new(aligned=True)
    hop = proc.hop_samples
    n = x.shape[0] // hop * hop
    x, y = x[:n], y[:n]
    y_hat = np.empty(n, np.float32)
    import time

    t0 = time.perf_counter()
    for lo in range(0, n, hop):  # one hop per call, like an audio callback
        proc.process(x[lo : lo + hop], y_hat[lo : lo + hop])
    seconds = time.perf_counter() - t0
    metrics = all_metrics(y, y_hat)
    bass_db = low_band_level_db(y, y_hat, bundle.manifest.sample_rate)  # 20-60 Hz, the worst bin
    times = proc.hop_times_ms()
    write_audio(out / "held_out_di.wav", x, bundle.manifest.sample_rate, "FLOAT")
    write_audio(out / "held_out_amp.wav", y, bundle.manifest.sample_rate, "FLOAT")
    write_audio(out / "held_out_model.wav", y_hat, bundle.manifest.sample_rate, "FLOAT")
    comparison(y, y_hat, bundle.manifest.sample_rate, out / "comparison.png", "demo test clip")
    rtf = n / bundle.manifest.sample_rate / seconds
    p50, p99 = np.percentile(times, [50, 99])
    summary = {**metrics, "real_time_factor": rtf, "hop_ms_p50": float(p50), "hop_ms_p99": float(p99),
               "late_hops": proc.stats.late_hops, "hops": proc.stats.hops, "device": factory.device,
               "held_out_seconds": n / bundle.manifest.sample_rate, "bass_level_db_20_60hz": bass_db,
               "preset": config.name, "loss": config.loss, "fir_taps": config.fir_taps}
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    print("[5/5] results")
    print(f"      test-clip ESR {format_esr(metrics['esr'])} ({esr_verdict(metrics['esr'])}), pre-emphasised "
          f"{format_esr(metrics['esr_pre_emphasis'])}, over {n / bundle.manifest.sample_rate:.1f} s")
    print(f"      below 60 Hz the model's long-term spectrum is within {abs(bass_db):.1f} dB of the target's "
          f"(20-60 Hz, worst bin, {'hot' if bass_db > 0 else 'low'})")
    print(f"      real time factor {rtf:.1f}x; {latency_summary(times)}; late hops {proc.stats.late_hops}")
    print(f"      wrote {out}/held_out_{{di,amp,model}}.wav, {out}/comparison.png, {out}/summary.json, "
          f"{bundle.path}/plots/")
    return 0
