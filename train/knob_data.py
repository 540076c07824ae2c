"""Recordings at several knob settings: where the knob values come from.

Three sources, all giving ``(knobs, pairs)`` (knob definitions and one PairSpec per recording):

- a JSON manifest (``demo.json`` from ``edgeamp demo-data`` is one)::

      {"knobs": [{"name": "gain", "minimum": 0, "maximum": 10, "default": 5}, ...],
       "pairs": [{"input": "di.wav", "target": "amp_g0_t2.wav", "knobs": {"gain": 0, "tone": 2}}, ...]}

- a CSV manifest with a header ``input,target,<knob>,<knob>...`` (ranges from ``--knob-range``,
  default 0-10 with the default in the middle);
- file names that carry the values, as in ``../shared/data/real-amp``:
  ``B1_M3_T7_G5_file_3_input.wav`` is bass 1, mid 3, treble 7, gain 5 (letters mapped by
  ``--knob-names``, default ``B=bass,M=mid,T=treble,G=gain``).

Relative paths are resolved against the manifest's folder. A knob that has the same value in
every training pair carries no information and is left out of the model (said in one line).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

from edgeamp.core.errors import ConfigError, InputError
from edgeamp.core.model import Knob

from .data import PairSpec

log = logging.getLogger(__name__)

DEFAULT_LETTERS = {"B": "bass", "M": "mid", "T": "treble", "G": "gain"}
_TOKEN = re.compile(r"^([A-Za-z]+)(-?\d+(?:\.\d+)?)$")


def parse_letters(text: str | None) -> dict[str, str]:
    if not text:
        return dict(DEFAULT_LETTERS)
    out = {}
    for item in text.split(","):
        letter, sep, name = item.partition("=")
        if not sep or not letter.strip() or not name.strip().isidentifier():
            raise ConfigError(f"--knob-names takes LETTER=name pairs like B=bass,G=gain; got {item!r}")
        out[letter.strip()] = name.strip()
    return out


def parse_ranges(items: list[str]) -> dict[str, tuple[float, float, float]]:
    """``NAME=MIN:MAX[:DEFAULT]`` items -> {name: (min, max, default)}."""
    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        parts = spec.split(":")
        try:
            lo, hi = float(parts[0]), float(parts[1])
            default = float(parts[2]) if len(parts) > 2 else (lo + hi) / 2
        except (IndexError, ValueError) as exc:
            raise ConfigError(f"--knob-range takes NAME=MIN:MAX[:DEFAULT], got {item!r}") from exc
        if not sep or len(parts) > 3:
            raise ConfigError(f"--knob-range takes NAME=MIN:MAX[:DEFAULT], got {item!r}")
        out[name.strip()] = (lo, hi, default)
    return out


def knob_values_from_name(path: Path | str, letters: dict[str, str]) -> dict[str, float]:
    """Knob values in a file name's ``_``-separated tokens (``B1_M3_T7_G5_file_3_input``)."""
    values = {}
    for token in Path(path).stem.split("_"):
        m = _TOKEN.match(token)
        if m and m.group(1) in letters:
            values[letters[m.group(1)]] = float(m.group(2))
    return values


def _make_knobs(names: list[str], ranges: dict[str, tuple[float, float, float]], seen: dict[str, list[float]]):
    knobs = []
    for name in names:
        lo, hi, default = ranges.get(name, (0.0, 10.0, 5.0))
        bad = [v for v in seen[name] if not lo <= v <= hi]
        if bad:
            raise InputError(f"knob {name!r}: value(s) {sorted(set(bad))} outside its range [{lo:g}, {hi:g}] "
                             f"(set it with --knob-range {name}=MIN:MAX)")
        knobs.append(Knob(name, lo, hi, default))
    return tuple(knobs)


def pairs_from_names(directory: Path | str, letters: dict[str, str], ranges=None) -> tuple[tuple[Knob, ...], list]:
    """Every pair under ``directory`` (recursively), knob values from the file names.

    Two conventions, mixed freely: ``NAME_input.wav`` + ``NAME.wav`` (one DI per target), and a
    shared DI ``CLIP_input.wav`` for every ``..._CLIP.wav`` beside it that has no DI of its own
    (one guitar clip played through many settings: ``file_9_input.wav`` with
    ``B0_M5_T5_G5_file_9.wav``, ``B2_M5_T5_G5_file_9.wav``, ...; the values come from the target's
    name). A WAV that is neither a DI nor a target of one is an error naming it."""
    d = Path(directory)
    inputs = sorted(d.rglob("*_input.wav"), key=lambda p: _natural(str(p)))
    if not inputs:
        raise InputError(f"{d}: no NAME_input.wav files (pairs are NAME_input.wav + NAME.wav, or a shared "
                         "CLIP_input.wav + SETTING_CLIP.wav)")
    pairs, seen = [], {}

    def add(inp: Path, target: Path, named: Path) -> None:
        values = knob_values_from_name(named, letters)
        for name, value in values.items():
            seen.setdefault(name, []).append(value)
        pairs.append((inp, target, values, named))

    targets = set()
    for inp in inputs:
        target = inp.with_name(inp.name.replace("_input.wav", ".wav"))
        if target.is_file():
            add(inp, target, inp)
            targets.add(target)
    di_names = {p.name for p in inputs}
    for wav in sorted(d.rglob("*.wav"), key=lambda p: _natural(str(p))):
        if wav in targets or wav.name.endswith("_input.wav"):
            continue
        parts = wav.stem.split("_")
        shared = next((wav.with_name("_".join(parts[i:]) + "_input.wav") for i in range(1, len(parts))
                       if "_".join(parts[i:]) + "_input.wav" in di_names
                       and wav.with_name("_".join(parts[i:]) + "_input.wav").is_file()), None)
        if shared is None:
            raise InputError(f"{wav}: no DI for it: expected {wav.stem}_input.wav, or a shared CLIP_input.wav "
                             f"whose CLIP ends its name (e.g. {'_'.join(parts[-2:])}_input.wav)")
        add(shared, wav, wav)
    unused = [p for p in inputs if not any(p == inp for inp, _, _, _ in pairs)]
    if unused:
        raise InputError(f"{unused[0]}: a DI without any target ({unused[0].name.replace('_input.wav', '.wav')} "
                         "or SETTING_..._" + unused[0].name.replace("_input.wav", ".wav") + ")")
    names = sorted(seen)
    for _, _, values, named in pairs:
        missing = [n for n in names if n not in values]
        if missing:
            raise InputError(f"{named.name}: no value for knob(s) {missing} in the name (others have them)")
    knobs = _make_knobs(names, ranges or {}, seen)
    specs = [PairSpec(str(i), str(t), tuple(sorted(v.items()))) for i, t, v, _ in pairs]
    return knobs, specs


def pairs_from_manifest(path: Path | str, ranges=None) -> tuple[tuple[Knob, ...], list]:
    """A JSON or CSV knob manifest (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such knob manifest")
    base = path.parent
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_text())
            knob_defs = doc.get("knobs", [])
            rows = doc["pairs"]
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise InputError(f"{path}: not a knob manifest ({exc}); expected {{\"knobs\": [...], \"pairs\": "
                             "[{\"input\", \"target\", \"knobs\": {...}}]}}") from exc
        ranges = {**{k["name"]: (float(k["minimum"]), float(k["maximum"]), float(k.get("default",
                  (k["minimum"] + k["maximum"]) / 2))) for k in knob_defs}, **(ranges or {})}
        entries = [(r["input"], r["target"], {n: float(v) for n, v in r.get("knobs", {}).items()}) for r in rows]
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            if cols[:2] != ["input", "target"]:
                raise InputError(f"{path}: the CSV header must start with input,target (then knob names); got {cols}")
            try:
                entries = [(r["input"], r["target"], {n: float(r[n]) for n in cols[2:]}) for r in reader]
            except (TypeError, ValueError) as exc:
                raise InputError(f"{path}: knob values must be numbers ({exc})") from exc
    else:
        raise InputError(f"{path}: knob manifests are .json or .csv")
    if not entries:
        raise InputError(f"{path}: no pairs listed")
    seen: dict[str, list[float]] = {}
    for _, _, values in entries:
        for name, value in values.items():
            seen.setdefault(name, []).append(value)
    names = sorted(seen)
    for inp, _, values in entries:
        if sorted(values) != names:
            raise InputError(f"{path}: {inp} has knobs {sorted(values)}, others have {names}")
    knobs = _make_knobs(names, ranges or {}, seen)
    specs = [PairSpec(str(base / i), str(base / t), tuple(sorted(v.items()))) for i, t, v in entries]
    return knobs, specs


def varying_knobs(knobs: tuple[Knob, ...], specs: list) -> tuple[Knob, ...]:
    """The knobs whose value changes across ``specs``; the others are said and left out."""
    keep = []
    for k in knobs:
        values = {dict(s.knobs)[k.name] for s in specs}
        if len(values) > 1:
            keep.append(k)
        else:
            log.info("knob %s is %g in every training pair: not a model input", k.name, values.pop())
    return tuple(keep)


def restrict(specs: list, knobs: tuple[Knob, ...]) -> list:
    """``specs`` with only the values of ``knobs``."""
    names = {k.name for k in knobs}
    return [PairSpec(s.input, s.target, tuple((n, v) for n, v in s.knobs if n in names)) for s in specs]


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
