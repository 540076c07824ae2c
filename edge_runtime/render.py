"""Offline rendering of a whole signal through a streaming processor, latency compensated."""

from __future__ import annotations

import time

import numpy as np

from .processor import Processor
from .progress import progress


def render(proc: Processor, x: np.ndarray, block: int = 4096, desc: str = "render") -> tuple[np.ndarray, float]:
    """Process mono ``x`` block by block; returns output aligned with ``x`` (same length) and seconds spent.

    The processor's latency is compensated: ``latency_samples`` zeros are fed after the
    signal and the first ``latency_samples`` outputs are dropped.
    """
    lat = proc.latency_samples
    padded = np.concatenate([x.astype(np.float32), np.zeros(lat, np.float32)])
    out = np.empty_like(padded)
    t0 = time.perf_counter()
    for lo in progress(range(0, padded.shape[0], block), desc=desc, unit="block",
                       total=-(-padded.shape[0] // block)):
        proc.process(padded[lo : lo + block], out[lo : lo + block])
    return out[lat:], time.perf_counter() - t0
