"""NAM's trainer as a peer: the same split, the same CPU budget, scored with edgeamp's metrics.

For each real-amp setting (``../shared/data/real-amp/B1_M3_T7``, ``B10_M0_T0``): clips 1-3 train,
clip 4 validates (model selection), clip 5 is the test clip, scored once. Rows, each trained for
``--minutes`` of wall-clock time on this machine:

- ``edgeamp stateful``: ``edgeamp train --preset stateful`` (edgeamp aligns the pairs itself);
- ``edgeamp stateful + FIR``: the same with the long-memory stage (``--fir-taps``, default 256);
- ``edgeamp cab``: ``--preset cab`` (``stateful`` with a 1024-tap FIR stage, plain + pre-emphasised ESR loss);
- ``NAM WaveNet lite``: NAM's own trainer (``nam-full``) with the "lite" WaveNet of NAM's
  simplified trainer (NAM 0.7-0.12's ``Architecture.LITE``; 0.13's keys), on the pairs exactly as
  edgeamp aligned them (written to float WAVs), ``max_time`` = the budget;
- ``NAM LSTM``: the same with NAM's standard LSTM (1 x 24, burn-in 4096, truncation 512).

Every model is scored on the test clip with ``edgeamp.core.metrics`` (ESR plain and
pre-emphasised): NAM's models are run by NAM's own package (``init_from_nam``, the exported file).
The JSON accumulates across invocations (rows of another setting or budget are kept).
NAM needs torch: give a Python that has ``neural-amp-modeler`` (see
``tests/fixtures/interop/make_fixtures.py`` for the venv). Run by hand (each row costs its budget
of wall time plus scoring; ``--rows none --readme README.md`` only rewrites the README's table)::

    .venv/bin/python benchmarks/nam_peer.py --nam-python /tmp/fixenv/bin/python --minutes 8 \\
        [--setting B1_M3_T7 --setting B10_M0_T0] [--rows edgeamp,edgeamp-fir,edgeamp-cab,wavenet-lite,lstm]
        [--out DIR] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "real-amp"

WAVENET_LITE = {  # NAM's simplified trainer, Architecture.LITE (head keys as NAM 0.13 wants them)
    "layers_configs": [
        {"input_size": 1, "condition_size": 1, "channels": 12, "kernel_size": 3,
         "dilations": [1, 2, 4, 8, 16, 32, 64], "activation": "Tanh",
         "head": {"out_channels": 6, "kernel_size": 1, "bias": False}},
        {"condition_size": 1, "input_size": 12, "channels": 6, "kernel_size": 3,
         "dilations": [128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512], "activation": "Tanh",
         "head": {"out_channels": 1, "kernel_size": 1, "bias": True}},
    ],
    "head_scale": 0.02,
}
LSTM_STANDARD = {"num_layers": 1, "hidden_size": 24, "train_burn_in": 4096, "train_truncate": 512}
NAM_RUN = r"""
import json, sys, numpy as np, soundfile as sf, torch
from nam.models import init_from_nam
model = init_from_nam(json.load(open(sys.argv[1])))
model.eval()
x, _ = sf.read(sys.argv[2], dtype="float32")
with torch.no_grad():
    y = model(torch.from_numpy(x)[None], pad_start=True)[0].numpy()
np.save(sys.argv[3], y.astype(np.float32))
"""


def clip(setting: str, n: int) -> tuple[Path, Path]:
    name = f"{setting}_G5_file_{n}"
    return DATA / setting / f"{name}_input.wav", DATA / setting / f"{name}.wav"


def aligned(setting: str, out: Path) -> dict[int, tuple[Path, Path, int]]:
    """Each clip as edgeamp's trainer aligns it, written as float WAVs for NAM."""
    from edgeamp.train.data import load_pair

    paths = {}
    for n in range(1, 6):
        pair = load_pair(*clip(setting, n))
        x_path, y_path = out / f"x{n}.wav", out / f"y{n}.wav"
        sf.write(x_path, pair.x, pair.report.sample_rate, subtype="FLOAT")
        sf.write(y_path, pair.y, pair.report.sample_rate, subtype="FLOAT")
        paths[n] = (x_path, y_path, pair.report.sample_rate)
    return paths


def score(y: np.ndarray, y_hat: np.ndarray) -> dict:
    from edgeamp.core.metrics import esr, esr_pre_emphasis

    n = min(len(y), len(y_hat))
    return {"esr": esr(y[:n], y_hat[:n]), "esr_pre_emphasis": esr_pre_emphasis(y[:n], y_hat[:n])}


def nam_row(name: str, net: dict, paths: dict, minutes: float, nam_python: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    data = {"train": [{"x_path": str(paths[n][0]), "y_path": str(paths[n][1]), "ny": 8192} for n in (1, 2, 3)],
            "validation": {"x_path": str(paths[4][0]), "y_path": str(paths[4][1]), "ny": None},
            "common": {"delay": 0, "require_input_pre_silence": None}}
    model = {"net": net, "optimizer": {"lr": 0.004}, "lr_scheduler": {"class": "ExponentialLR",
                                                                      "kwargs": {"gamma": 0.993}}}
    hours, rest = divmod(int(round(minutes * 60)), 3600)
    learning = {"train_dataloader": {"batch_size": 16, "shuffle": True, "pin_memory": False, "drop_last": True,
                                     "num_workers": 0},
                "val_dataloader": {},
                "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 100000,
                            "max_time": f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"}}
    for key, doc in (("data", data), ("model", model), ("learning", learning)):
        (out / f"{key}.json").write_text(json.dumps(doc, indent=2))
    print(f"$ nam-full ({name}, {minutes:g} min)", flush=True)
    subprocess.run([nam_python, "-c", "from nam.cli import nam_full; nam_full()", str(out / "data.json"),
                    str(out / "model.json"), str(out / "learning.json"), str(out / "run"), "--no-show"],
                   check=True, stdout=subprocess.DEVNULL)
    exported = sorted((out / "run").rglob("*.nam"))
    if not exported:
        raise RuntimeError(f"NAM wrote no .nam file under {out / 'run'}")
    subprocess.run([nam_python, "-c", NAM_RUN, str(exported[-1]), str(paths[5][0]), str(out / "test_out.npy")],
                   check=True)
    y, _ = sf.read(paths[5][1], dtype="float32")
    return {"row": name, "minutes": minutes, "model": str(exported[-1]), **score(y, np.load(out / "test_out.npy"))}


def edgeamp_row(setting: str, minutes: float, out: Path, fir_taps: int = 0, preset: str = "stateful") -> dict:
    name = f"edgeamp-{preset}" + (f"-fir{fir_taps}" if fir_taps else "")
    bundle = out / f"{name}-{minutes:g}min.bundle"
    args = ["train", "--preset", preset, "--minutes", f"{minutes:g}", str(bundle)]
    if fir_taps:
        args += ["--fir-taps", str(fir_taps)]
    for n in (1, 2, 3):
        x, y = clip(setting, n)
        args += ["--input", str(x), "--target", str(y)]
    for flag, n in (("val", 4), ("test", 5)):
        x, y = clip(setting, n)
        args += [f"--{flag}-input", str(x), f"--{flag}-target", str(y)]
    print(f"$ edgeamp {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "edgeamp", "-q", *args], check=True)
    m = json.loads((bundle / "manifest.json").read_text())
    labels = {"stateful": "edgeamp stateful", "cab": "edgeamp cab (FIR 1024, loss esr+esr_pre)"}
    label = labels.get(preset, f"edgeamp {preset}")
    return {"row": f"{label} + FIR {fir_taps}" if fir_taps else label, "minutes": minutes, "bundle": str(bundle),
            "steps": m["provenance"]["steps"],
            "esr": m["metrics"]["esr"], "esr_pre_emphasis": m["metrics"]["esr_pre_emphasis"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nam-python", required=True, help="a Python with torch and neural-amp-modeler")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--setting", action="append", help="B1_M3_T7 and/or B10_M0_T0 (default both)")
    p.add_argument("--rows", default="edgeamp,edgeamp-fir,edgeamp-cab,wavenet-lite,lstm",
                   help="rows to train and score; 'none' trains nothing (prints the table of what is stored)")
    p.add_argument("--fir-taps", type=int, default=256, help="the FIR stage of the edgeamp-fir row")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "nam_peer"))
    p.add_argument("--readme", type=Path, help="also write the table between <!-- nam-peer:start/end --> there")
    args = p.parse_args()
    rows = args.rows.split(",")
    store = Path(args.out) / "nam_peer.json"
    results = json.loads(store.read_text()) if store.is_file() else []
    for setting in [] if rows == ["none"] else args.setting or ["B1_M3_T7", "B10_M0_T0"]:
        out = Path(args.out) / setting
        out.mkdir(parents=True, exist_ok=True)
        paths = aligned(setting, out)
        if "edgeamp" in rows:
            results.append({"setting": setting, **edgeamp_row(setting, args.minutes, out)})
        if "edgeamp-fir" in rows:
            results.append({"setting": setting, **edgeamp_row(setting, args.minutes, out, args.fir_taps)})
        if "edgeamp-cab" in rows:
            results.append({"setting": setting, **edgeamp_row(setting, args.minutes, out, preset="cab")})
        if "wavenet-lite" in rows:
            results.append({"setting": setting, **nam_row("NAM WaveNet lite", {"name": "WaveNet", "config":
                                                                               WAVENET_LITE}, paths, args.minutes,
                                                          args.nam_python, out / "wavenet-lite")})
        if "lstm" in rows:
            results.append({"setting": setting, **nam_row("NAM LSTM 1x24", {"name": "LSTM", "config": LSTM_STANDARD},
                                                          paths, args.minutes, args.nam_python, out / "lstm")})
        store.write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| setting | model | minutes | steps | test ESR | test ESR pre-emph |", "|---|---|---|---|---|---|"]
    order = sorted(results, key=lambda r: (r["setting"] != "B1_M3_T7", r["minutes"]))  # stable: run order within
    lines += [f"| {r['setting']} | {r['row']} | {r['minutes']:g} | {r.get('steps', '–')} | {r['esr']:.4f} "
              f"| {r['esr_pre_emphasis']:.4f} |" for r in order]
    print("\n".join(lines))
    if args.readme:
        from report import update_readme

        update_readme(args.readme, "\n".join(lines) + "\n", "<!-- nam-peer:start -->", "<!-- nam-peer:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
