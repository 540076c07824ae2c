"""edgeamp as a Python library: :func:`load` gives an :class:`Amp` that processes numpy audio the
way a pedalboard plugin does.

::

    import edgeamp
    amp = edgeamp.load("amp.bundle")          # OpenVINO on the best device there is
    y = amp(x, 48000)                         # x: (n,), (channels, n) or (n, channels); float32/64
    amp.gain = 7                              # knobs of a conditioned model are attributes

Two ways to call it, as in ``pedalboard.Plugin.process``:

- ``amp(x, sr)`` (``reset=True``, the default): a whole signal. State starts from zero, the
  output is aligned with the input sample for sample (the hop's buffering latency is
  compensated by flushing), and the state is cleared again afterwards.
- ``amp(chunk, sr, reset=False)``: a stream in chunks of any sizes. State carries on from the
  previous call; every call returns as many samples as it got, delayed by
  :attr:`Amp.latency_samples` (what a streaming caller sees). The chunks' outputs, joined, equal
  one ``reset=False`` call on the joined input, and equal ``amp(x, sr)`` delayed by the latency.
  At the model's rate a stream whose first chunk is whole hops (``amp.hop_samples``, e.g. a
  pedalboard ``buffer_size`` or an audio callback of one hop) runs with no added latency, as
  ``edgeamp live`` does; a later chunk that is not whole hops is then taken as the stream's last.
  Otherwise the delay is ``hop - 1``.

Each channel has its own model state (dual mono). A ``sample_rate`` other than the model's is
resampled in and out with soxr (a streaming resampler, so chunked calls equal one call; its
delay is part of :attr:`Amp.latency_samples` at that rate); the model's own rate is never
resampled. NaN/Inf input is refused with :class:`~edgeamp.InputError` before anything is
processed (nothing is lost: the state is untouched), unlike the live runtime, which zeroes and
counts such samples because an audio callback must not raise.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeamp.core.bundle import Bundle
from edgeamp.core.errors import ConfigError, InputError

from .resampling import RESAMPLE_QUALITY, ResampledChain, ResampledStream, fit_length, resampled_latency
from .session import ProcessorFactory, RuntimeOptions


@dataclass(frozen=True)
class KnobState:
    """A knob of a conditioned model: its range and default, and the value now set (knob units)."""

    name: str
    minimum: float
    maximum: float
    default: float
    value: float


def load(
    path: str | Path | Bundle,
    *,
    device: str = "auto",
    precision: str | None = None,
    inference_precision: str = "f32",
    threads: int | None = None,
    backend: str = "auto",
    variant: str | None = None,
    hop_ms: float | None = None,
    strict: bool = False,
    knobs: dict[str, float] | None = None,
    resample_quality: str = RESAMPLE_QUALITY,
) -> Amp:
    """Open a model bundle (a directory written by ``edgeamp train``, ``import-legacy`` or
    ``export``) as a callable :class:`Amp`. Needs only the base install (no TensorFlow).

    ``device``: ``auto`` (NPU > Myriad VPU > GPU > CPU, falling back to CPU), or an OpenVINO
    device such as ``CPU``, ``NPU``, ``AUTO:NPU,CPU``; ``strict=True`` makes a missing device an
    error. ``precision``: IR weights, ``f32`` or ``f16`` (default: what the device wants).
    ``inference_precision``: CPU execution precision (``f32``; ``bf16`` where the CPU has it).
    ``backend``: ``"auto"`` (default: edgeamp's native engine when the device is the CPU and it runs
    the model as asked, else OpenVINO), ``"native"``, ``"openvino"``, or ``"numpy"`` (the float64
    reference: exact, slow). ``variant`` / ``hop_ms``: a
    specific exported IR. ``knobs``: starting knob values. ``resample_quality``: the resampler for
    audio at another rate than the model's: ``"LL"`` (default, edgeamp's low-latency polyphase one)
    or a soxr quality, ``"QQ"`` .. ``"VHQ"``.

    Raises :class:`~edgeamp.BundleError` when ``path`` is not a bundle (the message says what is
    missing) and :class:`~edgeamp.ConfigError` for a bad option or knob.
    """
    options = RuntimeOptions(backend=backend, device=device, precision=precision,
                             inference_precision=inference_precision, threads=threads, variant=variant,
                             hop_ms=hop_ms, strict=strict,
                             knobs=dict(knobs) if isinstance(knobs, dict) else (knobs or {}))
    return Amp(ProcessorFactory(path, options), resample_quality=resample_quality)


class Amp:
    """A loaded model, callable like a pedalboard plugin: ``amp(audio, sample_rate, reset=True)``.

    See the module docstring for the two calling modes. Attributes: ``sample_rate`` (the
    model's), ``hop_samples``, ``latency_samples`` (what a streaming ``reset=False`` caller at
    the most recently used rate sees; 0 means none), ``knobs`` (name -> :class:`KnobState`),
    ``info`` (a dict), ``stats`` (hops run, late hops). Knobs are attributes too:
    ``amp.gain = 7`` (range-checked; mid-stream changes ramp across one hop, as in the runtime).
    Calls from several threads are serialised (a lock): they take turns, each on the shared state.
    """

    def __init__(self, factory: ProcessorFactory, *, resample_quality: str = RESAMPLE_QUALITY) -> None:
        object.__setattr__(self, "_ready", False)
        object.__setattr__(self, "_lock", threading.RLock())
        self.factory = factory
        self.bundle = factory.bundle
        self.sample_rate = factory.bundle.manifest.sample_rate
        self.hop_samples = factory.hop_samples
        self.resample_quality = resample_quality
        self._knob_defs = {k.name: k for k in factory.bundle.manifest.architecture.knobs}
        self._knob_values = {k.name: k.default for k in self._knob_defs.values()}
        self._knob_values.update(factory.initial_knobs)
        # one processor (own state, own InferRequest) per channel, made on demand: plain ones at the
        # model's rate, hop-aligned ones behind the resamplers (which feed them whole hops)
        self._plain: list = []
        self._aligned: list = []
        self._resampled: ResampledStream | None = None
        self._live: list = []  # LiveEngines of running amp.live() streams (knob changes are queued to them)
        self._latencies: dict[float, int] = {}
        self._stream: tuple[float, int] | None = None  # (rate, channels) of a reset=False stream in progress
        # a stream at the model's rate that started with whole hops runs hop-aligned: no added latency;
        # a chunk that is not whole hops then ends it (padded to a hop: its tail is the stream's last)
        self._stream_aligned = False
        self._stream_ended = False
        self._ready = True

    # ---- knobs -------------------------------------------------------------------------
    @property
    def knobs(self) -> dict[str, KnobState]:
        """The model's knobs: name -> :class:`KnobState` (range, default, current value)."""
        return {n: KnobState(n, k.minimum, k.maximum, k.default, self._knob_values[n])
                for n, k in self._knob_defs.items()}

    def live(self, *, input_device=None, output_device=None, host_api: str | None = None,
             device_rate: float | None = None, input_channel: int = 1, output_channels: tuple[int, ...] | None = None,
             hops_per_block: int = 1, before=None, after=None):
        """The model live on a sound card, from Python: an :class:`~edgeamp.edge_runtime.live.AudioStream`
        (start it with ``with`` or ``.start()``) on the same PortAudio path as ``edgeamp live``.
        Devices by index or part of a name (``host_api``: e.g. ``"jack"``), channels from 1 (default:
        input 1, outputs 1 and 2 where there are two). ``before`` / ``after``: effects around the
        model, called as ``fx(block, sample_rate, reset=False)`` at the interface's rate: pedalboard
        plugins and boards are, and so is another Amp. Knobs set on this Amp reach the live stream at
        its next callback. A rate other than the model's is resampled (this Amp's resample quality)."""
        from .live import AudioStream, open_live

        proc = self.factory.new(aligned=True)
        proc.prepare(self._knob_values)
        outputs = None if output_channels is None else tuple(int(c) - 1 for c in output_channels)
        engine, devices = open_live(proc, input_device=input_device, output_device=output_device, host_api=host_api,
                                    device_rate=device_rate, input_channel=int(input_channel) - 1,
                                    output_channels=outputs, hops_per_block=hops_per_block,
                                    resample_quality=self.resample_quality, before=before, after=after)
        self._live.append(engine)
        return AudioStream(engine, devices, on_stop=lambda _: self._live.remove(engine) if engine in self._live
                           else None)

    def set_knob(self, name: str, value: float) -> None:
        """Set a knob in its own units (the same as ``amp.<name> = value``)."""
        if name not in self._knob_defs:
            known = ", ".join(self._knob_defs) or "none: this model has no knobs"
            raise ConfigError(f"unknown knob {name!r}; known knobs: {known}")
        value = self._knob_defs[name].value_of(value)  # raises with the range when out of it (NaN too)
        self._knob_values[name] = value
        for proc in self._plain + self._aligned:
            proc.set_knob(name, value)
        for engine in self._live:  # applied on the audio thread at the start of its next callback
            engine.pending.append(lambda p, n=name, v=value: p.set_knob(n, v))

    def __dir__(self):
        return sorted({*super().__dir__(), *self.__dict__.get("_knob_values", {})})

    def __getattr__(self, name: str):
        knobs = self.__dict__.get("_knob_values", {})
        if name in knobs:
            return knobs[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}"
                             + (f" (knobs: {', '.join(knobs)})" if knobs else ""))

    def __setattr__(self, name: str, value) -> None:
        if self.__dict__.get("_ready") and name in self._knob_defs:
            self.set_knob(name, value)
        elif self.__dict__.get("_ready") and not name.startswith("_") and name not in self.__dict__:
            known = ", ".join(self._knob_defs) or "none: this model has no knobs"
            raise ConfigError(f"unknown knob {name!r}; known knobs: {known}")
        else:
            object.__setattr__(self, name, value)

    # ---- description -------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.factory.device

    @property
    def latency_samples(self) -> int:
        """Delay of ``reset=False`` output: the stream's in progress, else what a stream of chunks of
        any size at the model's rate sees (``hop - 1``; 0 for whole hops: :meth:`latency_for`)."""
        if self._stream is None:
            return self.latency_for(self.sample_rate)
        return 0 if self._stream_aligned else self.latency_for(self._stream[0])

    def latency_for(self, sample_rate: float, block_size: int | None = None) -> int:
        """Delay, in samples at ``sample_rate``, that a ``reset=False`` stream at that rate sees; at the
        model's rate, 0 for a stream whose chunks are whole hops (``block_size`` a multiple of the hop),
        ``hop - 1`` otherwise."""
        rate = float(sample_rate)
        if rate == self.sample_rate:
            aligned = block_size is not None and block_size > 0 and block_size % self.hop_samples == 0
            return 0 if aligned else self.hop_samples - 1
        if rate not in self._latencies:
            self._latencies[rate] = resampled_latency(rate, self.sample_rate, self.hop_samples,
                                                      self.resample_quality)
        return self._latencies[rate]

    @property
    def info(self) -> dict:
        """What runs: architecture, rate, device, IR variant and precision, latency, held-out metrics."""
        m = self.bundle.manifest
        a = m.architecture
        return {
            "bundle": str(self.bundle.path) if self.bundle.path else None,
            "architecture": a.summary(),
            "sample_rate": self.sample_rate,
            "hop_samples": self.hop_samples,
            "backend": self.factory.backend,
            "device": self.factory.device,
            "variant": self.factory.variant,
            "precision": self.factory.precision,
            "inference_precision": self.factory.options.inference_precision,
            "latency_samples": self.latency_samples,
            "knobs": {n: vars(k) for n, k in self.knobs.items()},
            "metrics": {k: v for k, v in m.metrics.items() if not isinstance(v, (dict, list))},
        }

    def __repr__(self) -> str:
        a = self.bundle.manifest.architecture
        arch = a.describe()
        name = self.bundle.path.name if self.bundle.path else "bundle"
        parts = [f"{name!r}: {arch}", f"{self.sample_rate} Hz", self.factory.describe(),
                 f"hop {self.hop_samples}", f"latency {self.latency_samples} samples"]
        metrics = self.bundle.manifest.metrics
        if isinstance(metrics.get("esr"), (int, float)):
            where = "test" if metrics.get("scored_on") == "test" else "held-out"
            parts.append(f"{where} ESR {metrics['esr']:.3g}")
        if self._knob_defs:
            parts.append("knobs " + ", ".join(f"{k.name}={k.value:g} ({k.minimum:g}..{k.maximum:g})"
                                              for k in self.knobs.values()))
        return f"<edgeamp.Amp {'; '.join(parts)}>"

    @property
    def stats(self) -> dict[str, int]:
        """Hops run and late hops (compute longer than the hop), over all channels since load."""
        procs = self._plain + self._aligned
        return {"hops": sum(p.stats.hops for p in procs), "late_hops": sum(p.stats.late_hops for p in procs)}

    # ---- processing --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream: zero state in every channel (knob values are kept)."""
        with self._lock:
            for proc in self._plain + self._aligned:
                proc.reset()
            self._resampled = None
            self._stream = None
            self._stream_aligned = self._stream_ended = False

    is_effect = True  # pedalboard's Plugin attributes: audio in, audio out
    is_instrument = False

    def process(self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """Process ``input_array`` at ``sample_rate`` Hz; returns float32 of the same shape (see
        :class:`Amp`). The signature is pedalboard's ``Plugin.process``.

        ``input_array``: float32 or float64, ``(n,)``, ``(channels, n)`` or, where unambiguous,
        ``(n, channels)``. ``buffer_size``: accepted for pedalboard's signature; the output does not
        depend on it (edgeamp's chunking is exact). ``reset=True``: a whole signal, output aligned
        with the input. ``reset=False``: the next chunk of a stream, output delayed by
        :attr:`latency_samples`.
        """
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, (int, np.integer)) or buffer_size < 1:
            raise InputError(f"buffer_size must be a positive whole number of samples, got {str(buffer_size)[:20]!r}")
        if not isinstance(reset, (bool, np.bool_)):
            raise InputError(f"reset must be True or False, got {str(reset)[:20]!r}")
        with self._lock:  # one call at a time: the processors' state and buffers are shared
            return self._process(input_array, sample_rate, bool(reset))

    def _process(self, audio: np.ndarray, sample_rate: float, reset: bool) -> np.ndarray:
        rate = _check_rate(sample_rate)
        data, layout = self._channels_first(audio, reset)
        channels = data.shape[0]
        if not reset and self._stream is not None and self._stream != (rate, channels):
            raise InputError(
                f"this stream is {self._stream[1]} channel(s) at {self._stream[0]:g} Hz, the chunk is {channels} at "
                f"{rate:g} Hz: call amp.reset() (or pass reset=True) to start a new stream"
            )
        if reset:
            self._ensure(channels, aligned=rate != self.sample_rate)
            self.reset()
            out = self._whole(data, rate)
            self.reset()
        else:
            if self._stream is None:
                self.reset()
                self._stream = (rate, channels)
                self._stream_aligned = rate == self.sample_rate and self.latency_for(rate, data.shape[1]) == 0
            elif self._stream_ended:
                raise InputError(
                    f"this stream ran with no added latency on whole hops of {self.hop_samples} samples and ended "
                    "with a shorter chunk (taken as its last): call amp.reset() to start another, or start a "
                    f"stream with a chunk that is not whole hops to stream any sizes ({self.hop_samples - 1} "
                    "samples of latency)")
            self._ensure(channels, aligned=rate != self.sample_rate or self._stream_aligned)
            out = self._chunk(data, rate)
        return out.T if layout == "channels_last" else (out[0] if layout == "mono" else out)

    __call__ = process

    def _ensure(self, channels: int, aligned: bool) -> None:
        procs = self._aligned if aligned else self._plain
        while len(procs) < channels:
            proc = self.factory.new(aligned=aligned)
            proc.prepare(self._knob_values)
            procs.append(proc)

    def _whole(self, data: np.ndarray, rate: float) -> np.ndarray:
        """A whole signal from zero state, aligned: the hop's (and resamplers') delay is flushed out."""
        c, n = data.shape
        if rate == self.sample_rate:
            lat = self.hop_samples - 1
            out = np.empty((c, n + lat), np.float32)
            for ch in range(c):
                self._plain[ch].process(data[ch], out[ch, :n])
                self._plain[ch].process(np.zeros(lat, np.float32), out[ch, n:])
            return out[:, lat:]
        out = np.empty((c, n), np.float32)
        for ch in range(c):
            chain = ResampledChain(self._aligned[ch], rate, self.sample_rate, self.resample_quality)
            out[ch] = fit_length(chain.push(data[ch], last=True), n)
        return out

    def _chunk(self, data: np.ndarray, rate: float) -> np.ndarray:
        c, n = data.shape
        if rate == self.sample_rate and self._stream_aligned:
            hop = self.hop_samples
            whole = -(-n // hop) * hop
            if whole != n:  # the stream's last chunk: padded to a hop, the rest of its output dropped
                data = np.concatenate([data, np.zeros((c, whole - n), np.float32)], axis=1)
                self._stream_ended = True
            out = np.empty((c, whole), np.float32)
            for ch in range(c):
                self._aligned[ch].process(data[ch], out[ch])
            return out[:, :n]
        if rate == self.sample_rate:
            out = np.empty((c, n), np.float32)
            for ch in range(c):
                self._plain[ch].process(data[ch], out[ch])
            return out
        if self._resampled is None:
            self._resampled = ResampledStream(self._aligned[:c], rate, self.sample_rate, self.resample_quality)
        return self._resampled.process(data)

    def _channels_first(self, audio, reset: bool) -> tuple[np.ndarray, str]:
        """``(channels, n)`` float32 and the layout to give back: mono, channels_first or channels_last."""
        if not isinstance(audio, np.ndarray):
            audio = np.asarray(audio)
        if audio.dtype.kind in "iub":
            raise InputError(
                f"audio is {audio.dtype} (integer samples); edgeamp takes float audio in [-1, 1]: convert with "
                + (f"x.astype(np.float32) / {float(np.iinfo(audio.dtype).max) + 1:g}" if audio.dtype.kind != "b"
                   else "x.astype(np.float32)")
            )
        if audio.dtype not in (np.float32, np.float64):
            raise InputError(f"audio must be float32 or float64, got {audio.dtype}: convert with x.astype(np.float32)")
        if audio.size == 0:
            raise InputError(f"audio of shape {audio.shape} has no samples: nothing to process")
        if audio.ndim == 1:
            data, layout = audio[None, :], "mono"
        elif audio.ndim == 2:
            a, b = audio.shape
            streaming = None if reset or self._stream is None else self._stream[1]
            if streaming is not None and (a == streaming) != (b == streaming):
                layout = "channels_first" if a == streaming else "channels_last"
            elif a < b:
                layout = "channels_first"
            elif a > b:
                layout = "channels_last"
            else:
                raise InputError(
                    f"audio of shape {audio.shape} is ambiguous: is it (channels, n) or (n, channels)? Pass "
                    "(channels, n) with more samples than channels, or a 1-D array per channel"
                )
            data = audio if layout == "channels_first" else audio.T
        else:
            raise InputError(f"audio must be 1-D (n,) mono or 2-D (channels, n), got {audio.ndim}-D shape "
                             f"{audio.shape}; for a batch of clips, call the amp once per clip")
        if data.shape[1] == 0:
            raise InputError(f"audio of shape {audio.shape} has no samples: nothing to process")
        with np.errstate(over="ignore"):  # huge finite samples overflow the sum: told apart below
            total = float(np.sum(data, dtype=np.float64))
        if not math.isfinite(total):  # one pass; NaN/Inf make the sum so
            bad = np.argwhere(~np.isfinite(data))
            if bad.size:
                raise InputError(
                    f"audio holds {bad.shape[0]} NaN/Inf sample(s) (first: channel {bad[0][0]}, sample {bad[0][1]}); "
                    "nothing was processed. Clean it first, e.g. np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)"
                )
        if data.dtype == np.float64 and float(np.max(np.abs(data))) > F32_MAX:  # also where the sum overflowed
            raise InputError(f"audio holds samples of magnitude {float(np.max(np.abs(data))):.3g}, beyond float32's "
                             "range; audio is in [-1, 1]: nothing was processed")
        return np.ascontiguousarray(data, dtype=np.float32), layout


F32_MAX = float(np.finfo(np.float32).max)
MIN_RATE, MAX_RATE = 1000.0, 768000.0  # audio rates; the resampler's delay search grows with the rate


def _check_rate(sample_rate) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)):
        raise InputError(f"sample_rate must be a number of Hz, got {str(sample_rate)[:40]!r}")
    try:
        rate = float(sample_rate)
    except OverflowError:
        rate = math.inf
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(f"sample_rate must be a positive number of Hz, got {str(sample_rate)[:40]}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"sample_rate {rate:g} Hz is not an audio rate ({MIN_RATE:g} to {MAX_RATE:g} Hz)")
    return rate
