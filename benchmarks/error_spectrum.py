"""Where each model's error lives: long-term spectra of the target and of each model's error on one
clip (one PNG), and the error by band (a markdown table: each band's share of the error energy
and its own ESR).

Models are edgeamp bundles (rendered here, OpenVINO on the CPU) or outputs another tool wrote
(``.npy`` or audio, the same length as the target, e.g. ``benchmarks/nam_peer.py``'s
``test_out.npy`` from NAM's own package). The clip should be a test clip that nothing chose.

    .venv/bin/python benchmarks/error_spectrum.py --input x5.wav --target y5.wav \\
        --model "edgeamp cab=out/B10_M0_T0/edgeamp-cab-15min.bundle" \\
        --model "NAM WaveNet lite=out/B10_M0_T0/wavenet-lite/test_out.npy" --png docs/error_spectrum.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def model_output(spec: str, x: np.ndarray) -> np.ndarray:
    from edgeamp.core.audio_io import read_mono

    path = Path(spec)
    if path.suffix == ".npy":
        return np.load(path).astype(np.float64)
    if path.is_dir():  # a bundle
        from edgeamp.core.bundle import read_bundle
        from edgeamp.edge_runtime.render import render
        from edgeamp.edge_runtime.session import ProcessorFactory

        proc = ProcessorFactory(read_bundle(path), device="CPU").new()
        return render(proc, x.astype(np.float32))[0].astype(np.float64)
    return read_mono(path)[0].astype(np.float64)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="the DI clip (aligned with the target)")
    p.add_argument("--target", required=True, help="the amp's output for it")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a bundle directory, or a .npy/audio file of a model's output on the clip")
    p.add_argument("--png", type=Path, help="write the plot here")
    p.add_argument("--title", default="")
    args = p.parse_args()
    from edgeamp.core.audio_io import read_mono
    from edgeamp.core.metrics import error_bands, esr, esr_pre_emphasis, long_term_spectrum_db

    x, info = read_mono(args.input)
    sr = info.sample_rate
    y, _ = read_mono(args.target)
    y = y.astype(np.float64)
    outputs = {}
    for item in args.model:
        name, _, path = item.partition("=")
        y_hat = model_output(path, x)
        n = min(len(y), len(y_hat))
        outputs[name] = (y[:n], y_hat[:n])
    names = list(outputs)
    bands = {name: error_bands(*outputs[name], sr) for name in names}
    lines = ["| model | test ESR | pre-emph | " + " | ".join(
        f"{b['low_hz']:g}-{b['high_hz']:g} Hz" for b in bands[names[0]]) + " |",
             "|---|---|---|" + "---|" * len(bands[names[0]])]
    for name in names:
        yy, yh = outputs[name]
        cells = " | ".join(f"{100 * b['share']:.1f} % ({b['band_esr']:.2g})" for b in bands[name])
        lines.append(f"| {name} | {esr(yy, yh):.4f} | {esr_pre_emphasis(yy, yh):.4f} | {cells} |")
    print("error by band: share of the model's error energy (the band's own ESR)\n")
    print("\n".join(lines))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 5))
        freqs = np.fft.rfftfreq(8192, 1 / sr)
        ax.semilogx(freqs[1:], long_term_spectrum_db(y)[1:], color="k", lw=1.4, label="target (the amp)")
        for name in names:
            yy, yh = outputs[name]
            ax.semilogx(freqs[1:], long_term_spectrum_db(yy - yh)[1:], lw=1.0, alpha=0.85,
                        label=f"error: {name} (ESR {esr(yy, yh):.4f})")
        ax.set_xlim(20, sr / 2)
        ax.set_xlabel("Hz")
        ax.set_ylabel("dB")
        ax.set_title(args.title or "long-term spectra: target and each model's error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=100)
        print(f"\nwrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
