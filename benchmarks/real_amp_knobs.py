"""Knob-parametric model of the real amplifier (bass, mid, treble), scored where it never listened.

Data: ../shared/data/real-amp (20 recorded settings; see its README). Held out as test data: three
whole settings (one inner point of each single-knob sweep: B4_M5_T5, B5_M6_T5, B5_M5_T8, all on the
sweep's guitar clip file_9) and one whole clip (file_5 of both full settings). Validation: file_4 of
both full settings. Everything else trains.

Rows, all at the same CPU budget (--minutes, stateful preset) and each with its command:

- the conditioned model (one model, knobs as inputs), test ESR at every held-out setting and clip;
- per held-out setting, the *upper bound*: a single-setting model trained (and validated) on that
  setting's own recording, scored on it (there is one clip per sweep setting, so this model has
  heard its test audio: the ceiling a conditioned model chases);
- per held-out setting, the *nearest seen setting*: a single-setting model of the closest recorded
  neighbour on the same sweep (what a user without knobs would do), scored on the held-out setting.

Also a plot: the conditioned model's ESR against each knob's value along its sweep, seen settings
and held-out ones apart, and the largest sample-to-sample jump across a knob change mid-stream
against the same signal without one (clicks). Run by hand (about 1 hour at 8 minutes a model):

    .venv/bin/python benchmarks/real_amp_knobs.py --minutes 8 [--conditioned out/k17.bundle] \\
        [--readme README.md]

A longer budget for the conditioned model only, against baselines an earlier run trained (their
budget is said in the table; training all seven models at 15 minutes takes 1 h 45 min)::

    .venv/bin/python benchmarks/real_amp_knobs.py --minutes 15 --out /tmp/rak15 \\
        --baselines /tmp/rak --baseline-minutes 8 --readme README.md

The table goes between ``<!-- real-amp-knobs-<minutes>min:start/end -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "real-amp"
SWEEP = DATA / "knob-sweeps"
DI = SWEEP / "file_9_input.wav"
HELD_OUT = {"B4_M5_T5": "B2_M5_T5", "B5_M6_T5": "B5_M8_T5", "B5_M5_T8": "B5_M5_T10"}  # -> nearest recorded
TEST_PATTERN = "file_5|" + "|".join(HELD_OUT)
FULL_SETTINGS = ({"bass": 1.0, "mid": 3.0, "treble": 7.0}, {"bass": 10.0, "mid": 0.0, "treble": 0.0})


def markers(minutes: float) -> tuple[str, str]:
    return f"<!-- real-amp-knobs-{minutes:g}min:start -->", f"<!-- real-amp-knobs-{minutes:g}min:end -->"


def edgeamp(*args: str) -> None:
    cmd = [sys.executable, "-m", "edgeamp", "-q", *args]
    print("$ edgeamp " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def target(setting: str) -> Path:
    return SWEEP / f"{setting}_G5_file_9.wav"


def knobs_of(setting: str) -> dict[str, float]:
    letters = {"B": "bass", "M": "mid", "T": "treble"}
    return {letters[t[0]]: float(t[1:]) for t in setting.split("_")}


def score(bundle: Path, setting: str, knobs: dict | None) -> dict:
    """ESR (plain, pre-emphasised) of ``bundle`` on the sweep clip at ``setting``, aligned as training aligns."""
    import edgeamp
    from edgeamp.core.metrics import esr, esr_pre_emphasis
    from edgeamp.train.data import load_pair

    pair = load_pair(DI, target(setting))
    amp = edgeamp.load(bundle, device="CPU", knobs=knobs or {})
    y = amp(pair.x, 44100)
    return {"esr": esr(pair.y, y), "esr_pre_emphasis": esr_pre_emphasis(pair.y, y)}


def click_test(bundle: Path) -> dict:
    """Largest sample-to-sample jump with a knob change mid-stream (bass 2 -> 8 at 1 s) against the
    same signal without one."""
    import edgeamp
    from edgeamp.train.data import load_pair

    x = load_pair(DI, target("B5_M5_T5" if (SWEEP / "B5_M5_T5_G5_file_9.wav").exists() else "B6_M5_T5")).x
    amp = edgeamp.load(bundle, device="CPU", knobs={"bass": 2.0, "mid": 5.0, "treble": 5.0})
    cut = 44100
    steady = np.concatenate([amp(x[:cut], 44100, reset=False), amp(x[cut:], 44100, reset=False)])
    amp.reset()
    first = amp(x[:cut], 44100, reset=False)
    amp.bass = 8.0
    changed = np.concatenate([first, amp(x[cut:], 44100, reset=False)])
    window = slice(cut - 2048, cut + 4096)
    jump = lambda y: float(np.max(np.abs(np.diff(y[window]))))  # noqa: E731
    return {"max_step_with_change": jump(changed), "max_step_without": jump(steady),
            "max_step_whole_clip": float(np.max(np.abs(np.diff(steady))))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "real_amp_knobs"))
    p.add_argument("--conditioned", help="an already trained conditioned bundle (same split) to reuse")
    p.add_argument("--readme", help="write the table into this README between its markers")
    p.add_argument("--baselines", help="folder of an earlier run whose single-setting models to reuse")
    p.add_argument("--baseline-minutes", type=float, help="the budget those baselines were trained with")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minutes = f"{args.minutes:g}"
    base = Path(args.baselines) if args.baselines else out
    if args.baselines and not args.baseline_minutes:
        p.error("--baselines needs --baseline-minutes (the table says their budget)")
    cond = Path(args.conditioned) if args.conditioned else out / "conditioned.bundle"
    if not args.conditioned:
        edgeamp("train", "--data-dir", str(DATA), str(cond), "--test-pattern", TEST_PATTERN, "--val-pattern",
                "file_4", "--minutes", minutes)
    rows = []
    for held, nearest in HELD_OUT.items():
        upper = base / f"own-{held}.bundle"
        if not upper.exists():
            t = str(target(held))
            edgeamp("train", "--input", str(DI), "--target", t, "--val-input", str(DI), "--val-target", t,
                    "--test-input", str(DI), "--test-target", t, str(upper), "--minutes", minutes)
        near = base / f"nearest-{nearest}.bundle"
        if not near.exists():
            n = str(target(nearest))
            edgeamp("train", "--input", str(DI), "--target", n, "--val-input", str(DI), "--val-target", n,
                    "--test-input", str(DI), "--test-target", str(target(held)), str(near), "--minutes", minutes)
        rows.append({"setting": held, "nearest_seen": nearest, "conditioned": score(cond, held, knobs_of(held)),
                     "own_recording": score(upper, held, None), "nearest_model": score(near, held, None)})
    sweep = []
    for wav in sorted(SWEEP.glob("B*_G5_file_9.wav")):
        setting = wav.name.split("_G5_")[0]
        sweep.append({"setting": setting, "held_out": setting in HELD_OUT, "knobs": knobs_of(setting),
                      **score(cond, setting, knobs_of(setting))})
    manifest = json.loads((cond / "manifest.json").read_text())
    doc = {"rows": rows, "sweep": sweep, "clicks": click_test(cond), "minutes": args.minutes,
           "baseline_minutes": args.baseline_minutes or args.minutes,
           "steps": manifest["provenance"].get("steps"), "training_seconds": manifest["provenance"].get(
               "training_seconds"), "conditioned_metrics": manifest["metrics"]}
    (out / "real_amp_knobs.json").write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(doc)
    print(table)
    plot(doc, out / "real_amp_knobs.png")
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        start, end = markers(args.minutes)
        if start not in text:
            raise SystemExit(f"{readme} has no {start} ... {end} markers: add them where the table goes")
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n" + table + end + rest.split(end, 1)[1])
    return 0


def markdown(doc: dict) -> str:
    f = lambda m: f"{m['esr']:.3f} / {m['esr_pre_emphasis']:.3f}"  # noqa: E731
    steps = f" (the conditioned model {doc['steps']} steps)" if doc.get("steps") else ""
    budget = f"{doc['minutes']:g} min per model{steps}"
    if doc.get("baseline_minutes", doc["minutes"]) != doc["minutes"]:
        budget = (f"conditioned model {doc['minutes']:g} min{steps.replace(' the conditioned model', '')}, "
                  f"single-setting baselines {doc['baseline_minutes']:g} min")
    lines = [f"Test ESR (plain / pre-emphasised) at the held-out settings, {budget}, stateful "
             "preset, clip file_9:", "",
             "| held-out setting | conditioned model | single-setting model on its own recording (upper bound) "
             "| nearest seen setting's model | conditioned within 2x of the bound | conditioned beats nearest |",
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        c, o, n = r["conditioned"]["esr"], r["own_recording"]["esr"], r["nearest_model"]["esr"]
        lines.append(f"| {r['setting']} | {f(r['conditioned'])} | {f(r['own_recording'])} "
                     f"| {f(r['nearest_model'])} ({r['nearest_seen']}) | {'yes' if c <= 2 * o else 'no'} "
                     f"| {'yes' if c < n else 'no'} |")
    per = doc["conditioned_metrics"].get("per_setting", [])
    clips = [e for e in per if e["knobs"] in FULL_SETTINGS]
    if clips:
        lines += ["", "The held-out clip (file_5) at the two full settings, conditioned model: "
                  + "; ".join(f"B{e['knobs']['bass']:g} M{e['knobs']['mid']:g} T{e['knobs']['treble']:g}: "
                              f"{e['esr']:.3f} / {e['esr_pre_emphasis']:.3f}" for e in clips) + "."]
    c = doc["clicks"]
    lines += ["", f"Knob change mid-stream (bass 2 -> 8 at 1 s): largest sample step {c['max_step_with_change']:.4f} "
              f"against {c['max_step_without']:.4f} without the change (whole clip: {c['max_step_whole_clip']:.4f})."]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), sharey=True,
                             gridspec_kw={"width_ratios": [1, 1, 1, 0.7]})
    for ax, knob in zip(axes, ("bass", "mid", "treble")):
        others = [k for k in ("bass", "mid", "treble") if k != knob]
        pts = [s for s in doc["sweep"] if all(s["knobs"][o] == 5.0 for o in others)]
        for held, style, label in ((False, "o", "seen (trained)"), (True, "*", "held out (never heard)")):
            sel = sorted((s for s in pts if s["held_out"] == held), key=lambda s: s["knobs"][knob])
            ax.plot([s["knobs"][knob] for s in sel], [s["esr"] for s in sel], style, ms=9 if held else 6,
                    label=label)
        ax.set(xlabel=f"{knob} (others 5)", title=f"{knob} sweep")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ESR (plain)")
    axes[0].legend()
    # the two full settings on their held-out clip (file_5, not file_9): plain and pre-emphasised
    per = [e for e in doc["conditioned_metrics"].get("per_setting", []) if e["knobs"] in FULL_SETTINGS]
    names = [f"B{e['knobs']['bass']:g} M{e['knobs']['mid']:g} T{e['knobs']['treble']:g}" for e in per]
    pos = np.arange(len(per))
    axes[3].bar(pos - 0.2, [e["esr"] for e in per], 0.4, label="plain")
    axes[3].bar(pos + 0.2, [e["esr_pre_emphasis"] for e in per], 0.4, label="pre-emphasised")
    axes[3].set_xticks(pos, names)
    axes[3].set(title="full settings, held-out clip file_5")
    axes[3].legend()
    axes[3].grid(alpha=0.3, axis="y")
    fig.suptitle(f"conditioned model of the real amp ({doc['minutes']:g} min): test ESR along each knob's sweep "
                 "(clip file_9) and at the full settings")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
