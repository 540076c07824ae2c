"""Offline rendering of a whole signal through a streaming processor, latency compensated."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from edgeamp.core.progress import progress

from .processor import Processor
from .session import ProcessorFactory

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_file` did: the file written, its format, where the model ran and how fast."""

    output: str
    seconds: float  # of audio
    sample_rate: int
    subtype: str
    where: str
    real_time_factor: float
    hop_times_ms: np.ndarray
    late_hops: int


def render_file(factory: ProcessorFactory, input_path, output_path, *, channel: int | None = None,
                allow_resample: bool = False, block: int = 4096) -> RenderResult:
    """Render an audio file through an opened model (``factory``): same rate, length and sample format
    out, aligned with the input. Another rate than the model's needs ``allow_resample`` (soxr VHQ in
    and out). ``channel``: 0-based input channel. Nothing is computed for an output that cannot be
    written, and the input is never overwritten."""
    from pathlib import Path

    from edgeamp.core.audio_io import check_output_path, read_mono, resample, write_audio
    from edgeamp.core.errors import InputError

    if Path(input_path).resolve() == Path(output_path).resolve():
        raise InputError("OUT must differ from IN: edgeamp never overwrites its input")
    check_output_path(output_path)
    sr = factory.bundle.manifest.sample_rate
    x, info = read_mono(input_path, channel)
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:  # a float WAV can hold them; the processor zeroes them (its state stays clean)
        log.warning("%s: %d NaN/Inf sample(s) in the input, rendered as silence", Path(input_path).name, bad)
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # before a resampler spreads them
    if info.sample_rate != sr:
        if not allow_resample:
            raise InputError(f"{input_path} is {info.sample_rate} Hz, the model runs at {sr} Hz: pass --resample "
                             "(or resample the file yourself)")
        x = resample(x, info.sample_rate, sr)
    proc = factory.new()
    y, seconds = render(proc, x, block=block)
    if info.sample_rate != sr:
        y = resample(y, sr, info.sample_rate)[: info.frames]
    written = write_audio(output_path, y, info.sample_rate, info.subtype)
    return RenderResult(str(output_path), info.frames / info.sample_rate, info.sample_rate, written,
                        factory.describe(), x.shape[0] / sr / seconds, proc.hop_times_ms(), proc.stats.late_hops)
