"""Streaming sample-rate conversion around a model: audio at a device's or a file's rate in, the
model at its own rate in whole hops, audio at the first rate out (the same resampler one-shot and
in chunks, so chunked equals one call).

Used by :class:`edgeamp.Amp` (audio at another rate than the model's) and by live audio on an
interface that runs at another rate. The model's own rate is never resampled.

Two resamplers: ``"LL"`` (the default), edgeamp's low-latency polyphase one (:class:`PolyphaseStream`:
a Kaiser-windowed sinc, passband flat within 0.01 dB to 75 % of the lower rate's Nyquist, 16.5 kHz
at 44.1 kHz, stopband from the lower Nyquist at -80 dB; it holds back about half a millisecond each
way), and soxr's streaming resamplers by their quality names ("QQ" .. "VHQ"), which hold back about
20 ms each way at "HQ".
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

RESAMPLE_QUALITY = "LL"
SOXR_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
QUALITIES = ("LL", *SOXR_QUALITIES)
_RESAMPLE_PIECE = 256  # resampler input is fed in pieces of at most this many samples: bounds its delay


class PolyphaseStream:
    """Streaming rational resampler (``rate_in`` -> ``rate_out``), same calls as soxr's
    ``ResampleStream``: :meth:`resample_chunk` returns the output the input so far determines,
    aligned (output sample ``j`` is the signal at input time ``j * rate_in / rate_out``); it holds
    back :attr:`delay` input samples, half the kernel.

    The kernel is a sinc cut at the middle of the transition band (75 % to 100 % of the lower rate's
    Nyquist) under a Kaiser window for ``stopband_db``; its length follows from the transition width.
    """

    def __init__(self, rate_in: float, rate_out: float, stopband_db: float = 80.0) -> None:
        ratio = Fraction(rate_out / rate_in).limit_denominator(1 << 16) if not (
            float(rate_in).is_integer() and float(rate_out).is_integer()) else Fraction(int(rate_out), int(rate_in))
        self.up, self.down = ratio.numerator, ratio.denominator  # output j sits at input j * down / up
        low = min(rate_in, rate_out)
        transition = 0.25 * (low / 2) / rate_in  # width, in cycles per input sample
        self.cutoff = 0.875 * (low / 2) / rate_in
        # Kaiser's estimates: length for the attenuation over the transition width, and the window's beta
        span = math.ceil((stopband_db - 7.95) / (2.285 * 2 * math.pi * transition))
        self.taps = span + (span % 2)  # even: output j uses inputs floor(p) - taps/2 + 1 .. floor(p) + taps/2
        self.delay = self.taps // 2
        self.beta = 0.1102 * (stopband_db - 8.7)
        self._table = self._kernel(np.arange(self.up)) if self.up * self.taps <= 1 << 20 else None
        self._buf = np.zeros(self.taps, np.float64)  # the last inputs; index 0 is input number self._first
        self._first = -self.taps  # the stream starts with silence before it
        self._seen = 0  # inputs taken
        self._made = 0  # outputs given

    def _kernel(self, phases: np.ndarray) -> np.ndarray:
        """Weights ``(len(phases), taps)`` for outputs at fractional positions ``phase / up``."""
        half = self.taps // 2
        tau = (phases[:, None] / self.up) + (half - 1 - np.arange(self.taps))[None, :]  # p - n for each tap
        window = np.i0(self.beta * np.sqrt(np.clip(1.0 - (tau / (half + 0.0)) ** 2, 0.0, 1.0))) / np.i0(self.beta)
        return 2 * self.cutoff * np.sinc(2 * self.cutoff * tau) * window

    def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(x, np.float64).ravel()
        self._buf = np.concatenate([self._buf, x])
        self._seen += x.shape[0]
        total = self._seen
        if last:  # the signal ends: silence after it completes the last outputs
            self._buf = np.concatenate([self._buf, np.zeros(self.delay, np.float64)])
            want = -(-total * self.up // self.down)  # every output inside the signal
        else:  # output j needs input floor(j * down / up) + delay
            want = max(0, ((total - 1 - self.delay) * self.up) // self.down + 1) if total > self.delay else 0
        j = np.arange(self._made, max(want, self._made), dtype=np.int64)
        if j.size == 0:
            self._trim()
            return np.zeros(0, np.float32)
        pos = j * self.down
        base, phase = pos // self.up, pos % self.up
        weights = self._table[phase] if self._table is not None else self._kernel(phase)
        start = base - self.delay + 1 - self._first  # index in _buf of each output's first tap
        gathered = self._buf[start[:, None] + np.arange(self.taps)[None, :]]
        y = np.einsum("ij,ij->i", gathered, weights)
        self._made = int(j[-1]) + 1
        self._trim()
        return y.astype(np.float32)

    def _trim(self) -> None:
        """Keep the inputs the next output can still need."""
        need = (self._made * self.down) // self.up - self.delay + 1  # first input of the next output
        cut = max(0, min(need - self._first, self._buf.shape[0] - self.taps))
        if cut:
            self._buf = self._buf[cut:]
            self._first += cut


def resample_stream(rate_in: float, rate_out: float, quality: str):
    """A streaming resampler of ``quality`` ("LL" or a soxr quality)."""
    if quality == "LL":
        return PolyphaseStream(rate_in, rate_out)
    if quality not in SOXR_QUALITIES:
        from edgeamp.core.errors import ConfigError

        raise ConfigError(f"resample quality {str(quality)[:20]!r}: choose one of {', '.join(QUALITIES)}")
    import soxr

    return soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)


class ResampledChain:
    """One channel at a foreign rate: resampler in -> the model in whole hops -> resampler out.

    :meth:`push` returns what the chain has ready (a variable number of samples): the aligned
    output, without any delay added; the resamplers and the hop hold the rest back.
    """

    def __init__(self, proc, rate: float, model_rate: int, quality: str, lead: int = 0) -> None:
        self.proc = proc
        self.hop = proc.hop_samples
        self._in = resample_stream(rate, model_rate, quality)
        self._out = resample_stream(model_rate, rate, quality)
        # model-rate input waiting for a whole hop. ``lead``: samples of silence the model hears first
        # (their outputs dropped), which moves its hop grid so that a live block's audio completes a
        # hop in the same callback instead of waiting a hop for the resampler's last samples
        self._pending = np.zeros(lead, np.float32)
        self._drop = lead

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
        start = min(self._drop, keep)
        self._drop -= start
        out = [self._out.resample_chunk(y[lo : min(lo + hop, keep)]) for lo in range(start, keep, hop)]
        if last:
            out.append(self._out.resample_chunk(np.zeros(0, np.float32), last=True))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class _Identity:
    """A stand-in processor of ``hop`` samples (output = input), to measure a chain's hold-back."""

    aligned = True

    def __init__(self, hop: int) -> None:
        self.hop_samples = hop

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        out[:] = x


def _block_latency(rate: float, model_rate: int, hop: int, quality: str, block: int, lead: int) -> int:
    """The exact hold-back of a chain fed fixed ``block``s: run on silence, the most it is behind."""
    chain = ResampledChain(_Identity(hop), rate, model_rate, quality, lead)
    zeros = np.zeros(block, np.float32)
    produced, worst = 0, 0
    blocks = int(min(2000, 50 + 4 * model_rate / block))  # seconds of blocks: every phase pattern
    for k in range(1, blocks + 1):
        produced += chain.push(zeros).shape[0]
        worst = max(worst, k * block - produced)
    return worst


def block_lead(rate: float, model_rate: int, hop: int, quality: str, block: int) -> tuple[int, int]:
    """For a stream of fixed ``block``s: the model-rate ``lead`` of :class:`ResampledChain` that
    delays it least, and that delay (samples at ``rate``). Without a lead a block's last samples
    wait in the resampler and the hop they complete runs one callback later (a whole hop late)."""
    first = resample_stream(rate, model_rate, quality).resample_chunk(np.zeros(block, np.float32)).shape[0]
    candidates = {0, (hop - first % hop) % hop}
    return min(((_block_latency(rate, model_rate, hop, quality, block, lead), lead) for lead in candidates),
               key=lambda t: (t[0], t[1]))[::-1]


def resampled_latency(rate: float, model_rate: int, hop: int, quality: str = RESAMPLE_QUALITY,
                      block: int | None = None) -> int:
    """Samples (at ``rate``) a streaming caller at ``rate`` sees its output delayed by: what the
    resamplers and the hop hold back at most. With ``block`` (a live stream's fixed callback size)
    the chain is run on silence block by block and the exact hold-back is taken; without it (calls
    of any size) a bound: each resampler's hold-back, a whole hop, and a margin."""
    if block is not None:
        return _block_latency(rate, model_rate, hop, quality, block, 0)

    def held_back(a: float, b: float, piece: int) -> float:
        s = resample_stream(a, b, quality)
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
    measured once). ``procs``: one aligned processor per channel; ``block``: the size of every
    call where it is fixed (live audio): the delay is then the exact hold-back for it, else a bound."""

    def __init__(self, procs: list, rate: float, model_rate: int, quality: str = RESAMPLE_QUALITY,
                 block: int | None = None) -> None:
        hop = procs[0].hop_samples
        if block is None:
            lead, self.latency_samples = 0, resampled_latency(rate, model_rate, hop, quality)
        else:
            lead, self.latency_samples = block_lead(rate, model_rate, hop, quality, block)
        self.chains = [ResampledChain(p, rate, model_rate, quality, lead) for p in procs]
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
