"""PNG plots: training curves, and target vs model comparison (waveform, spectra, error over time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict, path: Path | str, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    if history.get("step"):
        ax.semilogy(history["step"], history["loss"], lw=0.7, alpha=0.6, label="training loss")
    if history.get("val_step"):
        ax.semilogy(history["val_step"], history["val_esr"], "o-", ms=3, label="validation ESR")
    ax.set_xlabel("step")
    ax.set_title(title or "training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def comparison(target: np.ndarray, prediction: np.ndarray, sample_rate: int, path: Path | str,
               title: str = "", zoom_ms: float = 40.0) -> Path:
    """Three panels: a zoomed waveform overlay at the loudest moment, long-term spectra, error over time."""
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(10, 9))
    n = target.shape[0]
    center = int(np.argmax(np.convolve(np.abs(target), np.ones(256), "same")))
    half = int(zoom_ms / 2000 * sample_rate)
    lo, hi = max(0, center - half), min(n, center + half)
    t_ms = (np.arange(lo, hi) - lo) * 1000 / sample_rate
    axes[0].plot(t_ms, target[lo:hi], label="target (amp)", lw=1.2)
    axes[0].plot(t_ms, prediction[lo:hi], label="model", lw=1.0, alpha=0.8)
    axes[0].set_xlabel(f"ms (from {lo / sample_rate:.2f} s)")
    axes[0].set_title(f"{title} waveform at the loudest moment".strip())
    axes[0].legend(loc="upper right")
    from edgeamp.core.metrics import long_term_spectrum_db as spectrum

    n_fft = 8192
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    axes[1].semilogx(freqs[1:], spectrum(target)[1:], label="target")
    axes[1].semilogx(freqs[1:], spectrum(prediction)[1:], label="model", alpha=0.8)
    axes[1].semilogx(freqs[1:], spectrum(target - prediction)[1:], label="error", alpha=0.7)
    axes[1].set_xlim(20, sample_rate / 2)
    axes[1].set_xlabel("Hz")
    axes[1].set_ylabel("dB")
    axes[1].set_title("long-term spectra")
    axes[1].legend()
    block = max(1, int(0.05 * sample_rate))
    m = n // block
    if m:
        e = ((target[: m * block] - prediction[: m * block]) ** 2).reshape(m, block).sum(1)
        s = (target[: m * block] ** 2).reshape(m, block).sum(1)
        esr_t = e / np.maximum(s, 1e-12)
        quiet = s < 1e-6 * max(s.max(), 1e-12)
        esr_t[quiet] = np.nan
        axes[2].semilogy(np.arange(m) * block / sample_rate, esr_t, lw=0.8)
    axes[2].axhline(0.01, color="g", ls=":", label="0.01 great")
    axes[2].axhline(0.1, color="r", ls=":", label="0.1 acceptable")
    axes[2].set_xlabel("s")
    axes[2].set_ylabel("ESR per 50 ms")
    axes[2].set_title("error over time (silent blocks left out)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
