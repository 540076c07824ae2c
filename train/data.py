"""Paired DI/amp audio: loading, checks, latency and polarity detection, leading-silence trim.

Nothing the user gave is modified on disk: every fix (resampling, trimming, alignment)
happens on arrays in memory and is reported in :class:`PairReport` (and the manifest).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeamp.core.audio_io import read_mono, resample
from edgeamp.core.errors import InputError

log = logging.getLogger(__name__)

MIN_SECONDS = 2.0
LENGTH_TOLERANCE_SECONDS = 0.05
SILENT_RMS = 1e-5
CLIP_LEVEL = 0.999
CLIP_FRACTION = 1e-3
ONSET_FRACTION = 0.7  # the onset is the earliest lag whose whitened correlation reaches this share of the peak
# whitened-correlation peak over its RMS below this: unrelated (real pairs here score 10-20, a mismatched pair 3.6)
UNRELATED_SCORE = 6.0
# Lags shorter than this are the device's own phase response (a cabinet IR peaks a few samples in), not a
# recording-chain delay: compensating them would ask a causal model to predict the future. They are
# measured and reported, and the model learns them.
MIN_COMPENSATION_MS = 1.0


@dataclass(frozen=True)
class PairSpec:
    """One training recording: DI ``input`` and amp ``target`` files, and the knob settings it was
    recorded at (name, value)."""

    input: str
    target: str
    knobs: tuple[tuple[str, float], ...] = ()


@dataclass
class PairReport:
    input_path: str
    target_path: str
    sample_rate: int
    seconds: float
    latency_samples: int = 0
    latency_compensated: bool = False
    polarity: int = 1
    correlation_score: float = 0.0
    leading_silence_samples: int = 0
    input_offset: int = 0  # samples of the input file cut from the front (leading silence, latency)
    resampled_from: int | None = None
    channel: int = 1
    warnings: list[str] = field(default_factory=list)


@dataclass
class Pair:
    x: np.ndarray  # (T,) float32 dry input
    y: np.ndarray  # (T,) float32 amp output, aligned with x
    report: PairReport


def whitened_correlation(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """GCC-PHAT of ``y`` against ``x``: ``(lags, r)`` with ``lags`` from -max_lag to max_lag.

    Whitening removes the amp's magnitude response so that its phase response (which moves a
    plain correlation peak by tens of samples) does not hide the onset.
    """
    n = 1 << int(np.ceil(np.log2(x.shape[0] + y.shape[0])))
    cross = np.fft.rfft(y.astype(np.float64), n) * np.conj(np.fft.rfft(x.astype(np.float64), n))
    mag = np.abs(cross)
    r = np.fft.irfft(cross / (mag + 1e-9 * (mag.max() or 1.0)), n)
    lags = np.arange(-max_lag, max_lag + 1)
    return lags, r[lags % n]


def estimate_latency(x: np.ndarray, y: np.ndarray, max_lag: int = 2000) -> tuple[int, int, float]:
    """``(latency_samples, polarity, score)``: onset of the whitened correlation, its sign, peak/RMS."""
    lags, r = whitened_correlation(x, y, max_lag)
    a = np.abs(r)
    peak = a.max()
    onset = int(np.argmax(a >= ONSET_FRACTION * peak))
    score = float(peak / (np.sqrt(np.mean(r**2)) + 1e-30))
    return int(lags[onset]), int(np.sign(r[onset]) or 1), score


def leading_silence(y: np.ndarray, x: np.ndarray, min_samples: int = 64) -> int:
    """Digital silence at the start of the target that the input does not have (0 if none)."""
    nonzero = np.flatnonzero(y != 0.0)
    lead = int(nonzero[0]) if nonzero.size else y.shape[0]
    if lead < min_samples:
        return 0
    if np.sqrt(np.mean(x[:lead].astype(np.float64) ** 2)) < SILENT_RMS:
        return 0  # the input is silent there too: nothing is missing
    return lead


def check_finite(a: np.ndarray, path: str) -> None:
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise InputError(f"{path}: {bad} NaN/Inf sample(s); the file is corrupt")


def load_pair(
    input_path: str | Path,
    target_path: str | Path,
    *,
    channel: int | None = None,
    allow_resample: bool = False,
    align: bool = True,
    min_seconds: float = MIN_SECONDS,
    max_lag_ms: float = 50.0,
) -> Pair:
    """Load, check and align one DI/amp pair; every problem raises InputError naming file and values."""
    ch = None if channel is None else channel - 1
    x, xi = read_mono(input_path, ch)
    y, yi = read_mono(target_path, ch)
    check_finite(x, str(input_path))
    check_finite(y, str(target_path))
    report = PairReport(str(input_path), str(target_path), xi.sample_rate, 0.0, channel=(ch or 0) + 1)
    if yi.sample_rate != xi.sample_rate:
        if not allow_resample:
            raise InputError(
                f"sample rates differ: {input_path} is {xi.sample_rate} Hz, {target_path} is {yi.sample_rate} Hz; "
                "pass --resample to resample the target to the input's rate"
            )
        y = resample(y, yi.sample_rate, xi.sample_rate)
        report.resampled_from = yi.sample_rate
    sr = xi.sample_rate
    diff = abs(x.shape[0] - y.shape[0])
    if diff > LENGTH_TOLERANCE_SECONDS * sr:
        raise InputError(
            f"lengths differ by {diff} samples ({diff / sr:.3f} s): {input_path} has {x.shape[0]}, "
            f"{target_path} has {y.shape[0]}; a pair must be the same take (allowed: {LENGTH_TOLERANCE_SECONDS} s)"
        )
    n = min(x.shape[0], y.shape[0])
    x, y = x[:n], y[:n]
    if n < min_seconds * sr:
        raise InputError(f"{input_path}: only {n / sr:.2f} s of audio; at least {min_seconds:g} s are needed")
    if np.sqrt(np.mean(y.astype(np.float64) ** 2)) < SILENT_RMS:
        raise InputError(f"{target_path}: the target is silent (RMS below {SILENT_RMS:g})")
    if np.sqrt(np.mean(x.astype(np.float64) ** 2)) < SILENT_RMS:
        raise InputError(f"{input_path}: the input is silent (RMS below {SILENT_RMS:g})")
    clipped = float(np.mean(np.abs(y) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        msg = f"{target_path}: {100 * clipped:.2f}% of samples at full scale: the target looks clipped"
        log.warning(msg)
        report.warnings.append(msg)

    lead = leading_silence(y, x)
    if lead:
        log.info("%s: starts with %d samples of digital silence the input does not have: trimmed from both",
                 Path(target_path).name, lead)
        x, y = x[lead:], y[lead:]
        report.leading_silence_samples = lead
    lag, polarity, score = estimate_latency(x, y, int(max_lag_ms * sr / 1000))
    report.correlation_score = score
    report.polarity = polarity
    if score < UNRELATED_SCORE:
        raise InputError(
            f"{input_path} and {target_path} look unrelated (whitened correlation peak {score:.1f}x its RMS, "
            f"needs {UNRELATED_SCORE:g}x): is the target really this input through the amp?"
        )
    report.latency_samples = lag
    report.latency_compensated = align and abs(lag) >= MIN_COMPENSATION_MS * sr / 1000
    if report.latency_compensated:
        if lag > 0:
            x, y = x[:-lag], y[lag:]
        else:
            x, y = x[-lag:], y[:lag]
        how = "compensated"
    elif align and lag:
        how = f"kept: under {MIN_COMPENSATION_MS:g} ms it is the device's own response, which the model learns"
    else:
        how = "kept" if lag else "none"
    log.info("%s: latency %d samples (%s), polarity %s%s", Path(target_path).name, lag, how,
             "inverted" if polarity < 0 else "normal",
             " (the model learns it; data not flipped)" if polarity < 0 else "")
    report.input_offset = lead + (-lag if report.latency_compensated and lag < 0 else 0)
    report.seconds = x.shape[0] / sr
    return Pair(np.ascontiguousarray(x), np.ascontiguousarray(y), report)
