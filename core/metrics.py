"""Quality metrics on mono audio (numpy only, so that benchmarks and the device side can use them).

- ESR = sum((y - y_hat)^2) / sum(y^2), plain and after the pre-emphasis filter 1 - 0.85 z^-1;
  scale used by the field: < 0.01 great, < 0.035 good, < 0.1 may sound acceptable.
- MSE on +-1 audio (the original experiment's figure), DC error (mean difference).
- Multi-resolution STFT distance (spectral convergence + log-magnitude L1, averaged over
  FFT sizes 256, 1024, 4096).
- Error by band (:func:`error_bands`): where the plain ESR comes from, e.g. a model that is badly
  wrong below 50 Hz (band ESR >> 1) while that band holds little of the error energy.
"""

from __future__ import annotations

import numpy as np

PRE_EMPHASIS = 0.85


def _pair(y: np.ndarray, y_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    y_hat = np.asarray(y_hat, dtype=np.float64).ravel()
    if y.shape != y_hat.shape:
        from .errors import InputError

        raise InputError(f"target and prediction differ in length: {y.shape[0]} vs {y_hat.shape[0]}")
    return y, y_hat


def pre_emphasis(x: np.ndarray, coeff: float = PRE_EMPHASIS) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    out[1:] -= coeff * x[:-1]
    return out


def esr(y: np.ndarray, y_hat: np.ndarray) -> float:
    y, y_hat = _pair(y, y_hat)
    energy = float(np.sum(y**2))
    if energy == 0.0:
        return 0.0 if np.all(y_hat == 0) else float("inf")
    return float(np.sum((y - y_hat) ** 2) / energy)


def esr_pre_emphasis(y: np.ndarray, y_hat: np.ndarray) -> float:
    y, y_hat = _pair(y, y_hat)
    return esr(pre_emphasis(y), pre_emphasis(y_hat))


def mse(y: np.ndarray, y_hat: np.ndarray) -> float:
    y, y_hat = _pair(y, y_hat)
    return float(np.mean((y - y_hat) ** 2))


def dc_error(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Squared mean difference over target energy (the DC term of Wright et al.)."""
    y, y_hat = _pair(y, y_hat)
    energy = float(np.mean(y**2)) or 1.0
    return float(np.mean(y - y_hat) ** 2 / energy)


def _stft_mag(x: np.ndarray, n_fft: int, hop: int | None = None) -> np.ndarray:
    hop = hop or n_fft // 4
    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))


def multi_resolution_stft(y: np.ndarray, y_hat: np.ndarray, sizes=(256, 1024, 4096)) -> float:
    y, y_hat = _pair(y, y_hat)
    total = 0.0
    for n_fft in sizes:
        a, b = _stft_mag(y, n_fft), _stft_mag(y_hat, n_fft)
        sc = np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12)
        log_l1 = np.mean(np.abs(np.log(a + 1e-7) - np.log(b + 1e-7)))
        total += sc + log_l1
    return float(total / len(sizes))


def long_term_spectrum_db(x: np.ndarray, n_fft: int = 8192) -> np.ndarray:
    """Mean power spectrum in dB (Hann, half-overlapping frames of ``n_fft``, the signal padded by
    one frame): the curve the comparison and error-spectrum plots draw, bins ``rfftfreq(n_fft)``."""
    x = np.asarray(x, dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, n_fft)), n_fft)[:: n_fft // 2]
    return 10 * np.log10(np.mean(np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2, axis=0) + 1e-12)


def low_band_level_db(y: np.ndarray, y_hat: np.ndarray, sample_rate: int, low_hz: float = 20.0,
                      high_hz: float = 60.0, n_fft: int = 8192) -> float:
    """The prediction's long-term spectrum against the target's between ``low_hz`` and ``high_hz``, in
    dB: the bin furthest from the target, signed (positive: the model is hot there). What a bass-heavy
    model's comparison plot shows as a gap at the left edge (bins ``sample_rate / n_fft`` apart: 5.9 Hz
    at 48 kHz)."""
    y, y_hat = _pair(y, y_hat)
    n_fft = min(n_fft, 1 << max(4, int(np.log2(max(y.shape[0], 16)))))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    if not band.any():
        return float("nan")
    diff = (long_term_spectrum_db(y_hat, n_fft) - long_term_spectrum_db(y, n_fft))[band]
    return float(diff[np.argmax(np.abs(diff))])


BAND_EDGES_HZ = (0, 50, 100, 200, 400, 800, 1600, 3200, 6400)


def error_bands(y: np.ndarray, y_hat: np.ndarray, sample_rate: int, edges=BAND_EDGES_HZ,
                n_fft: int = 8192) -> list[dict]:
    """The error's energy by frequency band (Hann-windowed spectra, half-overlapping frames of
    ``n_fft``; the last band runs to Nyquist): for each band its share of the whole error energy
    (the shares add up to 1; plain ESR times a share is that band's part of the ESR) and the band's
    own ESR (error over target energy in the band)."""
    y, y_hat = _pair(y, y_hat)
    n_fft = min(n_fft, 1 << max(4, int(np.log2(max(y.shape[0], 16)))))
    e_spec = np.sum(_stft_mag(y - y_hat, n_fft, n_fft // 2) ** 2, axis=0)
    y_spec = np.sum(_stft_mag(y, n_fft, n_fft // 2) ** 2, axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    total = float(e_spec.sum()) or 1.0
    bounds = list(edges) + [sample_rate / 2 + 1]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        band = (freqs >= lo) & (freqs < hi)
        err, tgt = float(e_spec[band].sum()), float(y_spec[band].sum())
        out.append({"low_hz": float(lo), "high_hz": float(min(hi, sample_rate / 2)), "share": err / total,
                    "band_esr": err / tgt if tgt > 0 else float("inf")})
    return out


def all_metrics(y: np.ndarray, y_hat: np.ndarray) -> dict[str, float]:
    """Every figure of a target ``y`` against a prediction. Over a digitally silent target the ESRs
    are undefined: NaN (stored as null, printed as "no figure"), never a 0 that reads as perfect."""
    silent = not np.any(np.asarray(y))
    return {
        "esr": float("nan") if silent else esr(y, y_hat),
        "esr_pre_emphasis": float("nan") if silent else esr_pre_emphasis(y, y_hat),
        "mse": mse(y, y_hat),
        "dc_error": dc_error(y, y_hat),
        "stft_distance": multi_resolution_stft(y, y_hat),
    }


def format_esr(value: float | None, digits: int = 4) -> str:
    """An ESR for people: the figure, or why there is none (a silent target)."""
    if value is None or value != value:
        return "none (the target is digital silence)"
    return f"{value:.{digits}f}"


def esr_verdict(value: float | None) -> str:
    if value is None or value != value:
        return "undefined: score on a clip with signal"
    if value < 0.01:
        return "great"
    if value < 0.035:
        return "good"
    if value < 0.1:
        return "may sound acceptable"
    return "poor"
