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
The JSON accumulates across invocations (rows of another setting, budget, fold or seed are kept).

``--folds 1,2,3,4,5``: leave-one-clip-out instead of the fixed split (issue: quality on playing the
model never heard). Fold k tests on clip k (a whole performance nothing in training or selection
heard), validates on the clip after it (k mod 5 + 1) and trains on the other three; ``--seeds``
repeats each fold with other seeds. The fold table gives, per setting and row, the mean and the worst
fold (plain and pre-emphasised ESR, each over its folds and seeds) and where the worst fold's error
lives (error_bands' shares: below 200 Hz, 200 Hz-1.6 kHz, above 1.6 kHz).
NAM needs torch: give a Python that has ``neural-amp-modeler`` (see
``tests/fixtures/interop/make_fixtures.py`` for the venv). Run by hand (each row costs its budget
of wall time plus scoring; ``--rows none --readme README.md`` only rewrites the README's table)::

    .venv/bin/python benchmarks/nam_peer.py --nam-python /tmp/fixenv/bin/python --minutes 8 \\
        [--setting B1_M3_T7 --setting B10_M0_T0] [--rows edgeamp,edgeamp-fir,edgeamp-cab,wavenet-lite,lstm]
        [--out DIR] [--readme README.md] [--folds 1,2,3,4,5 --seeds 0,1,2]
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


FIXED_SPLIT = ((1, 2, 3), 4, 5)  # train clips, validation clip, test clip


def fold_split(k: int) -> tuple[tuple[int, ...], int, int]:
    """Leave-one-clip-out fold k (1-5): test clip k, validation the clip after it, training the rest."""
    val = k % 5 + 1
    return tuple(n for n in range(1, 6) if n not in (k, val)), val, k


def nam_row(name: str, net: dict, paths: dict, minutes: float, nam_python: str, out: Path,
            split=FIXED_SPLIT) -> dict:
    train, val, test = split
    out.mkdir(parents=True, exist_ok=True)
    data = {"train": [{"x_path": str(paths[n][0]), "y_path": str(paths[n][1]), "ny": 8192} for n in train],
            "validation": {"x_path": str(paths[val][0]), "y_path": str(paths[val][1]), "ny": None},
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
    subprocess.run([nam_python, "-c", NAM_RUN, str(exported[-1]), str(paths[test][0]), str(out / "test_out.npy")],
                   check=True)
    y, _ = sf.read(paths[test][1], dtype="float32")
    y_hat = np.load(out / "test_out.npy")
    return {"row": name, "minutes": minutes, "model": str(exported[-1]), **score(y, y_hat),
            "bands": bands(y, y_hat, paths[test][2])}


def bands(y: np.ndarray, y_hat: np.ndarray, rate: int) -> dict:
    """Where the test clip's error lives: shares of the error energy below 200 Hz, 200 Hz-1.6 kHz, above."""
    from edgeamp.core.metrics import error_bands

    n = min(len(y), len(y_hat))
    got = error_bands(y[:n], y_hat[:n], rate, edges=(0, 200, 1600))
    return {"below_200": got[0]["share"], "200_1600": got[1]["share"], "above_1600": got[2]["share"]}


def edgeamp_row(setting: str, minutes: float, out: Path, paths: dict, fir_taps: int = 0, preset: str = "stateful",
                split=FIXED_SPLIT, seed: int = 0) -> dict:
    train, val, test = split
    name = f"edgeamp-{preset}" + (f"-fir{fir_taps}" if fir_taps else "")
    tag = "" if split == FIXED_SPLIT and seed == 0 else f"-test{test}-seed{seed}"
    bundle = out / f"{name}-{minutes:g}min{tag}.bundle"
    args = ["train", "--preset", preset, "--minutes", f"{minutes:g}", "--seed", str(seed), str(bundle)]
    if fir_taps:
        args += ["--fir-taps", str(fir_taps)]
    for n in train:
        x, y = clip(setting, n)
        args += ["--input", str(x), "--target", str(y)]
    for flag, n in (("val", val), ("test", test)):
        x, y = clip(setting, n)
        args += [f"--{flag}-input", str(x), f"--{flag}-target", str(y)]
    print(f"$ edgeamp {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "edgeamp", "-q", *args], check=True)
    m = json.loads((bundle / "manifest.json").read_text())
    labels = {"stateful": "edgeamp stateful", "cab": "edgeamp cab (FIR 1024, loss esr+esr_pre)"}
    label = labels.get(preset, f"edgeamp {preset}")
    import edgeamp

    x_path, y_path, rate = paths[test]  # the test clip as aligned for NAM, through the bundle: the bands
    y_hat = edgeamp.load(bundle)(sf.read(x_path, dtype="float32")[0], rate)
    return {"row": f"{label} + FIR {fir_taps}" if fir_taps else label, "minutes": minutes, "bundle": str(bundle),
            "steps": m["provenance"]["steps"], "seed": seed,
            "esr": m["metrics"]["esr"], "esr_pre_emphasis": m["metrics"]["esr_pre_emphasis"],
            "bands": bands(sf.read(y_path, dtype="float32")[0], y_hat, rate)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nam-python", help="a Python with torch and neural-amp-modeler (for the NAM rows)")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--setting", action="append", help="B1_M3_T7 and/or B10_M0_T0 (default both)")
    p.add_argument("--rows", default="edgeamp,edgeamp-fir,edgeamp-cab,wavenet-lite,lstm",
                   help="rows to train and score; 'none' trains nothing (prints the table of what is stored)")
    p.add_argument("--fir-taps", type=int, default=256, help="the FIR stage of the edgeamp-fir row")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "nam_peer"))
    p.add_argument("--readme", type=Path, help="also write the table between <!-- nam-peer:start/end --> there "
                                                  "(with --folds: <!-- nam-folds:start/end -->)")
    p.add_argument("--folds", help="leave-one-clip-out folds to run, e.g. 1,2,3,4,5 (the test clip of each)")
    p.add_argument("--seeds", default="0", help="training seeds for each fold (edgeamp rows), e.g. 0,1,2")
    args = p.parse_args()
    rows = args.rows.split(",")
    if {"wavenet-lite", "lstm"} & set(rows) and not args.nam_python:
        p.error("the NAM rows (wavenet-lite, lstm) need --nam-python")
    store = Path(args.out) / ("nam_folds.json" if args.folds else "nam_peer.json")
    results = json.loads(store.read_text()) if store.is_file() else []
    splits = [(k, fold_split(int(k))) for k in args.folds.split(",")] if args.folds else [(None, FIXED_SPLIT)]
    seeds = [int(s) for s in args.seeds.split(",")]
    for setting in [] if rows == ["none"] else args.setting or ["B1_M3_T7", "B10_M0_T0"]:
        out = Path(args.out) / setting
        out.mkdir(parents=True, exist_ok=True)
        paths = aligned(setting, out)
        for fold, split in splits:
            for seed in seeds:
                base = {"setting": setting, **({"fold": int(fold), "split": split} if fold else {})}
                if "edgeamp" in rows:
                    results.append({**base, **edgeamp_row(setting, args.minutes, out, paths, split=split, seed=seed)})
                if "edgeamp-fir" in rows:
                    results.append({**base, **edgeamp_row(setting, args.minutes, out, paths, args.fir_taps, split=split,
                                                          seed=seed)})
                if "edgeamp-cab" in rows:
                    results.append({**base, **edgeamp_row(setting, args.minutes, out, paths, preset="cab", split=split,
                                                          seed=seed)})
                store.write_text(json.dumps(results, indent=2) + "\n")
            tag = f"-test{split[2]}" if fold else ""
            if "wavenet-lite" in rows:
                results.append({**base, **nam_row("NAM WaveNet lite", {"name": "WaveNet", "config": WAVENET_LITE},
                                                  paths, args.minutes, args.nam_python, out / f"wavenet-lite{tag}",
                                                  split)})
            if "lstm" in rows:
                results.append({**base, **nam_row("NAM LSTM 1x24", {"name": "LSTM", "config": LSTM_STANDARD}, paths,
                                                  args.minutes, args.nam_python, out / f"lstm{tag}", split)})
            store.write_text(json.dumps(results, indent=2) + "\n")
    lines = fold_table(results) if args.folds else fixed_table(results)
    print("\n".join(lines))
    if args.readme:
        from report import update_readme

        marker = "nam-folds" if args.folds else "nam-peer"
        update_readme(args.readme, "\n".join(lines) + "\n", f"<!-- {marker}:start -->", f"<!-- {marker}:end -->")
    return 0


def fixed_table(results: list[dict]) -> list[str]:
    lines = ["| setting | model | minutes | steps | test ESR | test ESR pre-emph |", "|---|---|---|---|---|---|"]
    order = sorted(results, key=lambda r: (r["setting"] != "B1_M3_T7", r["minutes"]))  # stable: run order within
    lines += [f"| {r['setting']} | {r['row']} | {r['minutes']:g} | {r.get('steps', '–')} | {r['esr']:.4f} "
              f"| {r['esr_pre_emphasis']:.4f} |" for r in order]
    return lines


def fold_table(results: list[dict]) -> list[str]:
    """Per setting, row and budget: folds and seeds run, mean and worst fold of each ESR, and where the
    worst fold's error lives."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["setting"], r["row"], r["minutes"]), []).append(r)
    lines = ["| setting | model | minutes | folds x seeds | ESR mean | ESR worst (fold) | pre-emph mean "
             "| pre-emph worst (fold) | worst fold's error <200 Hz / 200-1600 / >1600 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (setting, row, minutes), rs in sorted(groups.items(), key=lambda g: (g[0][0] != "B1_M3_T7", g[0][2])):
        esr, pre = [r["esr"] for r in rs], [r["esr_pre_emphasis"] for r in rs]
        w, wp = max(rs, key=lambda r: r["esr"]), max(rs, key=lambda r: r["esr_pre_emphasis"])
        b = wp.get("bands") or {}
        shares = " / ".join(f"{100 * b[k]:.0f} %" for k in ("below_200", "200_1600", "above_1600")) if b else "–"
        folds, seeds = len({r["fold"] for r in rs}), len({r.get("seed", 0) for r in rs})
        lines.append(f"| {setting} | {row} | {minutes:g} | {folds} x {seeds} | {np.mean(esr):.4f} "
                     f"| {w['esr']:.4f} ({w['fold']}) | {np.mean(pre):.4f} | {wp['esr_pre_emphasis']:.4f} "
                     f"({wp['fold']}) | {shares} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
