"""Streaming sample-rate conversion around a model: audio at a device's or a file's rate in, the
model at its own rate in whole hops, audio at the first rate out (soxr, the same resampler one-shot
and in chunks, so chunked equals one call).

Used by :class:`edgeamp.Amp` (audio at another rate than the model's) and by live audio on an
interface that runs at another rate. The model's own rate is never resampled.
"""

from __future__ import annotations

import math

import numpy as np

RESAMPLE_QUALITY = "HQ"  # soxr: 20-bit; VHQ (28-bit) adds about 15 ms of streaming delay
_RESAMPLE_PIECE = 256  # resampler input is fed in pieces of at most this many samples: bounds its delay


class ResampledChain:
    """One channel at a foreign rate: soxr in -> the model in whole hops -> soxr out.

    :meth:`push` returns what the chain has ready (a variable number of samples): the aligned
    output, without any delay added; the resamplers and the hop hold the rest back.
    """

    def __init__(self, proc, rate: float, model_rate: int, quality: str) -> None:
        import soxr

        self.proc = proc
        self.hop = proc.hop_samples
        self._in = soxr.ResampleStream(rate, model_rate, 1, dtype="float32", quality=quality)
        self._out = soxr.ResampleStream(model_rate, rate, 1, dtype="float32", quality=quality)
        self._pending = np.zeros(0, np.float32)  # model-rate input waiting for a whole hop

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        pieces = []
        for lo in range(0, max(x.shape[0], 1), _RESAMPLE_PIECE):
            piece = x[lo : lo + _RESAMPLE_PIECE]
            final = last and lo + _RESAMPLE_PIECE >= x.shape[0]
            pieces.append(self._model(self._in.resample_chunk(piece, last=final), final))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _model(self, m: np.ndarray, last: bool) -> np.ndarray:
        buf = np.concatenate([self._pending, m])
        real = buf.shape[0]
        hop = self.hop
        whole = -(-real // hop) * hop if last else real // hop * hop
        if whole > real:  # the tail of a flushed signal: pad to a whole hop, keep only real outputs
            buf = np.concatenate([buf, np.zeros(whole - real, np.float32)])
        y = np.empty(whole, np.float32)
        for lo in range(0, whole, hop):
            self.proc.process(buf[lo : lo + hop], y[lo : lo + hop])
        self._pending = buf[whole:].copy()
        keep = min(real, whole)
        out = [self._out.resample_chunk(y[lo : min(lo + hop, keep)]) for lo in range(0, keep, hop)]
        if last:
            out.append(self._out.resample_chunk(np.zeros(0, np.float32), last=True))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def resampled_latency(rate: float, model_rate: int, hop: int, quality: str = RESAMPLE_QUALITY) -> int:
    """Samples (at ``rate``) that :class:`_Resampled` may hold back at most, plus a margin: the
    delay a streaming caller at ``rate`` sees. Measured on the resamplers themselves (their
    hold-back depends on the rates, the quality and the piece size, not on the signal)."""
    import soxr

    def held_back(a: float, b: float, piece: int) -> float:
        s = soxr.ResampleStream(a, b, 1, dtype="float32", quality=quality)
        zeros = np.zeros(piece, np.float32)
        made, worst = 0, 0.0
        for i in range(1, 64 + int(8 * max(a, b) / piece / 10)):
            made += s.resample_chunk(zeros).shape[0]
            worst = max(worst, i * piece * b / a - made)
        return worst

    ratio = rate / model_rate
    total = held_back(rate, model_rate, _RESAMPLE_PIECE) * ratio + hop * ratio + held_back(model_rate, rate, hop)
    return int(math.ceil(total)) + 8


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples (a resampler's length is ``n`` within a sample)."""
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], np.float32)])


class ResampledStream:
    """A stream at a foreign rate, block in, block of the same length out: the model's aligned
    output delayed by exactly :attr:`latency_samples` (the resamplers' and the hop's hold-back,
    measured once, plus a margin). ``procs``: one aligned processor per channel."""

    def __init__(self, procs: list, rate: float, model_rate: int, quality: str = RESAMPLE_QUALITY) -> None:
        self.chains = [ResampledChain(p, rate, model_rate, quality) for p in procs]
        self.latency_samples = resampled_latency(rate, model_rate, procs[0].hop_samples, quality)
        self._fifo = np.zeros((len(procs), self.latency_samples), np.float32)
        self.underruns = 0  # never seen: the latency bound held (counted, not hidden, if it ever fails)

    def process(self, data: np.ndarray) -> np.ndarray:
        """``data`` ``(channels, n)`` float32 -> ``(channels, n)``."""
        n = data.shape[1]
        ready = np.stack([chain.push(data[ch]) for ch, chain in enumerate(self.chains)])
        fifo = np.concatenate([self._fifo, ready], axis=1)
        if fifo.shape[1] < n:
            self.underruns += 1
            fifo = np.concatenate([fifo, np.zeros((fifo.shape[0], n - fifo.shape[1]), np.float32)], axis=1)
        out, self._fifo = fifo[:, :n], fifo[:, n:]
        return out
