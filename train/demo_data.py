"""Built-in demo data: a synthesised DI guitar performance and a teacher amplifier.

The DI is plucked-string synthesis (Karplus-Strong, computed a period at a time): strummed
chords, arpeggios, single-note riffs with bends, palm-muted chugs, dynamics and rests, about
two minutes at 48 kHz, fully determined by a seed. The teacher is a guitar-amp chain of real
DSP from spotify's pedalboard (input filtering, preamp gain and drive, a tone stack,
compression, a cabinet impulse response) with two knobs, ``gain`` and ``tone`` (0-10), so that
knob-conditioned models can be trained on a grid of settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeamp.core.audio_io import write_audio
from edgeamp.core.model import Knob

SAMPLE_RATE = 48000
OPEN_STRINGS_HZ = (82.41, 110.0, 146.83, 196.0, 246.94, 329.63)  # E2 A2 D3 G3 B3 E4
CHORDS = {  # fret per string, None = not played
    "E": (0, 2, 2, 1, 0, 0), "A": (None, 0, 2, 2, 2, 0), "D": (None, None, 0, 2, 3, 2),
    "G": (3, 2, 0, 0, 0, 3), "C": (None, 3, 2, 0, 1, 0), "Em": (0, 2, 2, 0, 0, 0), "Am": (None, 0, 2, 2, 1, 0),
    "E5": (0, 2, 2, None, None, None), "A5": (None, 0, 2, 2, None, None), "G5": (3, 5, 5, None, None, None),
}
PENTATONIC = [(0, 0), (0, 3), (1, 0), (1, 2), (2, 0), (2, 2), (3, 0), (3, 2), (4, 0), (4, 3), (5, 0), (5, 3)]
KNOBS = (Knob("gain", 0.0, 10.0, 5.0), Knob("tone", 0.0, 10.0, 5.0))


def pluck(freq_hz: float, seconds: float, velocity: float, rng: np.random.Generator, *, damping: float = 0.996,
          brightness: float = 1.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One Karplus-Strong string: y[n] = e[n] + g/2 (y[n-N] + y[n-N-1]), computed N samples at a time."""
    period = max(2, int(round(sr / freq_hz)))
    n = int(seconds * sr)
    blocks = -(-n // period) + 1
    y = np.zeros((blocks + 1) * period)
    burst = rng.uniform(-1, 1, period)
    alpha = 0.15 + 0.8 * brightness * velocity  # softer picking: darker excitation (one-pole lowpass)
    for i in range(1, period):
        burst[i] = alpha * burst[i] + (1 - alpha) * burst[i - 1]
    y[period : 2 * period] = burst * velocity
    g = damping / 2.0
    for b in range(2, blocks + 1):
        cur = slice(b * period, (b + 1) * period)
        prev = y[(b - 1) * period : b * period]
        prev_shift = y[(b - 1) * period - 1 : b * period - 1]
        y[cur] = g * (prev + prev_shift)
    out = y[period : period + n]
    fade = min(n, int(0.01 * sr))
    out[-fade:] *= np.linspace(1, 0, fade)
    return out


def bend(note: np.ndarray, semitones: float, start_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Bend a rendered note up by ``semitones`` from ``start_s`` on (time warp, 80 ms glide)."""
    n = note.shape[0]
    t = np.arange(n) / sr
    ratio = 2 ** (semitones / 12 * np.clip((t - start_s) / 0.08, 0, 1))
    phase = np.cumsum(ratio)
    phase -= phase[0]
    return np.interp(phase, np.arange(n), note, right=0.0)


def fret_hz(string: int, fret: int) -> float:
    return OPEN_STRINGS_HZ[string] * 2 ** (fret / 12)


def performance(seconds: float = 120.0, seed: int = 2024, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The DI performance: deterministic for a given seed, peak about 0.6."""
    rng = np.random.default_rng(seed)
    total = int(seconds * sr)
    out = np.zeros(total + 4 * sr)
    beat = 60.0 / 100.0
    t = 0.25
    kinds = ["strum", "arpeggio", "riff", "chug", "rest"]
    while t < seconds - 1.0:
        kind = kinds[rng.choice(5, p=[0.3, 0.15, 0.25, 0.2, 0.1])]
        bars = int(rng.integers(1, 3))
        section_end = min(seconds - 0.5, t + bars * 4 * beat)
        level = float(rng.uniform(0.25, 1.0))  # dynamics per section
        if kind == "rest":
            t += float(rng.uniform(0.5, 2.0))
            continue
        while t < section_end:
            start = int(t * sr)
            if kind == "strum":
                chord = CHORDS[list(CHORDS)[rng.integers(len(CHORDS))]]
                down = rng.random() < 0.7
                strings = [s for s in range(6) if chord[s] is not None]
                strings = strings if down else strings[::-1]
                dur = beat * float(rng.choice([1, 2]))
                for k, s in enumerate(strings):
                    vel = level * float(rng.uniform(0.7, 1.0))
                    note = pluck(fret_hz(s, chord[s]), dur + 0.3, vel, rng)
                    off = start + int(k * rng.uniform(0.006, 0.02) * sr)
                    out[off : off + note.shape[0]] += note
                t += dur
            elif kind == "arpeggio":
                chord = CHORDS[list(CHORDS)[rng.integers(7)]]
                for s in [s for s in range(6) if chord[s] is not None]:
                    note = pluck(fret_hz(s, chord[s]), 1.5, level * float(rng.uniform(0.5, 0.9)), rng)
                    off = int(t * sr)
                    out[off : off + note.shape[0]] += note
                    t += beat / 2
            elif kind == "riff":
                s, f = PENTATONIC[rng.integers(len(PENTATONIC))]
                dur = beat * float(rng.choice([0.5, 0.5, 1.0, 1.5]))
                note = pluck(fret_hz(s, f + 5), dur + 0.2, level * float(rng.uniform(0.6, 1.0)), rng,
                             brightness=1.2)
                if rng.random() < 0.25:
                    note = bend(note, float(rng.choice([1.0, 2.0])), dur * 0.3, sr)
                out[start : start + note.shape[0]] += note
                t += dur
            else:  # palm-muted chug on a power chord: heavy damping, dark, short
                chord = CHORDS[["E5", "A5", "G5"][rng.integers(3)]]
                for s in [s for s in range(6) if chord[s] is not None]:
                    note = pluck(fret_hz(s, chord[s]), 0.25, level * 0.8, rng, damping=0.94, brightness=0.4)
                    out[start : start + note.shape[0]] += note
                t += beat / 2
        t += float(rng.uniform(0.0, 0.4))
    out = out[:total]
    out += 2e-4 * rng.standard_normal(total)  # pickup hum/noise floor, like a real DI
    return (0.6 * out / np.max(np.abs(out))).astype(np.float32)


def cabinet_ir(sr: int = SAMPLE_RATE, seed: int = 7) -> np.ndarray:
    """A deterministic 4x12-like cabinet impulse response (band-limited, resonant, 30 ms)."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    n = int(0.03 * sr)
    noise = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.004 * sr))
    b, a = signal.butter(2, [90, 5000], btype="bandpass", fs=sr)
    ir = signal.lfilter(b, a, noise)
    for f0, q, g in [(110, 2.0, 2.0), (1800, 3.0, 1.5)]:  # cone and box resonances
        bb, aa = signal.iirpeak(f0, q, fs=sr)
        ir = ir + g * signal.lfilter(bb, aa, ir) * 0.3
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def teacher(gain: float = 5.0, tone: float = 5.0, sr: int = SAMPLE_RATE):
    """The teacher amp chain (a pedalboard.Pedalboard) for knob values 0-10."""
    import pedalboard as pb

    for knob, value in (("gain", gain), ("tone", tone)):
        KNOBS[0 if knob == "gain" else 1].normalise(value)  # range check with a clear error
    return pb.Pedalboard([
        pb.HighpassFilter(cutoff_frequency_hz=90),
        pb.LowpassFilter(cutoff_frequency_hz=8000),
        pb.PeakFilter(cutoff_frequency_hz=750, gain_db=4.0, q=0.7),  # mid push into the preamp
        pb.Gain(gain_db=4 + 2.6 * gain),
        pb.Distortion(drive_db=6 + 2.0 * gain),
        pb.HighpassFilter(cutoff_frequency_hz=70),
        pb.LowShelfFilter(cutoff_frequency_hz=220, gain_db=(5 - tone) * 1.0),
        pb.PeakFilter(cutoff_frequency_hz=650, gain_db=-3.0, q=0.8),
        pb.HighShelfFilter(cutoff_frequency_hz=2200, gain_db=(tone - 5) * 1.6),
        pb.Compressor(threshold_db=-16, ratio=3, attack_ms=4, release_ms=90),
        pb.Convolution(cabinet_ir(sr), sample_rate=sr),
        pb.Gain(gain_db=8.0),  # output level: peaks around -6 dBFS at the default knobs
    ])


def render_teacher(di: np.ndarray, gain: float = 5.0, tone: float = 5.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    return teacher(gain, tone, sr)(di[None, :].astype(np.float32), sr)[0].astype(np.float32)


@dataclass(frozen=True)
class DemoSet:
    di: Path
    targets: dict[tuple[float, float], Path]  # (gain, tone) -> file
    manifest: Path  # demo.json


# what the demo data needs beyond the base install (checked before anything is written)
NEEDS = (("pedalboard", "the demo teacher amp"), ("scipy", "the demo teacher's cabinet"))


def require_demo() -> None:
    """EdgeampError naming what to install when the demo data cannot be made here."""
    from edgeamp.core.errors import require

    for module, purpose in NEEDS:
        require(module, purpose)


def write_demo_data(out_dir: Path | str, seconds: float = 120.0, seed: int = 2024,
                    grid: list[tuple[float, float]] | None = None) -> DemoSet:
    """Write di.wav and one amp_g{gain}_t{tone}.wav per knob setting (default: 5/5) plus demo.json.
    Everything is rendered first: a failure leaves no half-written folder."""
    require_demo()
    out_dir = Path(out_dir)
    grid = grid or [(5.0, 5.0)]
    di = performance(seconds, seed)
    renders = {(gain, tone): render_teacher(di, gain, tone) for gain, tone in grid}
    write_audio(out_dir / "di.wav", di, SAMPLE_RATE, "FLOAT")
    targets = {}
    for (gain, tone), y in renders.items():
        path = out_dir / f"amp_g{gain:g}_t{tone:g}.wav"
        write_audio(path, y, SAMPLE_RATE, "FLOAT")
        targets[(gain, tone)] = path
    # a knob manifest (edgeamp.train.knob_data): `edgeamp train --knob-manifest OUT_DIR/demo.json`
    meta = {"seed": seed, "seconds": seconds, "sample_rate": SAMPLE_RATE,
            "knobs": [asdict(k) for k in KNOBS],
            "pairs": [{"input": "di.wav", "target": p.name, "knobs": {"gain": g, "tone": t}}
                      for (g, t), p in targets.items()]}
    (out_dir / "demo.json").write_text(json.dumps(meta, indent=2) + "\n")
    return DemoSet(out_dir / "di.wav", targets, out_dir / "demo.json")
