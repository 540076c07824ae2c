"""Live audio: a duplex sounddevice stream whose callback copies in, runs the hops, copies out.

The callback does nothing else: no allocation, no logging, no locks. It counts xruns
(PortAudio's over/underflow flags) and late callbacks (compute longer than the block), and
records its compute time; a separate thread reads those for the status line.
sounddevice is imported lazily: the device side must not touch PortAudio at import time.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np

from edgeamp.core.errors import DeviceError, EdgeampError, InputError

from .processor import Processor
from .resampling import RESAMPLE_QUALITY


@dataclass
class LiveStats:
    callbacks: int = 0
    xruns: int = 0
    late_callbacks: int = 0
    input_overflows: int = 0
    output_underflows: int = 0
    first_xrun_callback: int = -1  # index of the callback that first reported one (-1: none)
    refused_controls: int = 0  # queued control changes the processor refused
    effect_errors: int = 0  # blocks an effect before/after the model failed on (passed through)


class LiveEngine:
    """The audio callback around an aligned :class:`Processor`.

    ``block_frames``: frames per callback at the device's rate. ``input_channel``: the device input
    channel that feeds the model (0-based). ``output_channels``: the device output channels that get
    the model's output (0-based; dual mono on (0, 1)), others get silence. ``device_rate``: the
    interface's rate; where it differs from the model's, audio is resampled in and out (streaming
    soxr) and :attr:`latency_samples` says the delay that adds, at the device's rate. At the model's
    own rate the block must be whole hops and the callback allocates nothing.
    """

    def __init__(self, proc: Processor, block_frames: int, *, input_channel: int = 0,
                 output_channels: tuple[int, ...] = (0,), device_rate: float | None = None,
                 timing_window: int = 8192, resample_quality: str = RESAMPLE_QUALITY, before=None, after=None):
        from .resampling import ResampledStream

        self.device_rate = float(device_rate or proc.sample_rate)
        self.resampled = self.device_rate != proc.sample_rate
        if not self.resampled and block_frames % proc.hop_samples:
            raise InputError(f"block size {block_frames} must be a multiple of the hop ({proc.hop_samples})")
        if self.resampled and not proc.aligned:
            raise InputError("a resampled live stream needs an aligned processor (whole hops)")
        if input_channel < 0 or not output_channels or min(output_channels) < 0:
            raise InputError(f"channels are counted from 1: input {input_channel + 1}, outputs "
                             f"{[c + 1 for c in output_channels]}")
        self.proc = proc
        # effects around the model at the device's rate, called as fx(block, rate, reset=False): a
        # pedalboard Plugin or Pedalboard, an edgeamp.Amp, or a function taking those arguments
        self.before, self.after = before, after
        self.block_frames = block_frames
        self.input_channel = input_channel
        self.output_channels = tuple(output_channels)
        self.resample_quality = resample_quality
        self._rs = ResampledStream([proc], self.device_rate, proc.sample_rate, resample_quality,
                                   block=block_frames) if self.resampled else None
        self.latency_samples = self._rs.latency_samples if self._rs else 0
        self.stats = LiveStats()
        self.budget_ns = int(block_frames / self.device_rate * 1e9)
        self._in = np.zeros(block_frames, np.float32)
        self._out = np.zeros(block_frames, np.float32)
        self._times_ns = np.zeros(timing_window, np.int64)
        self.reset_requested = False
        # control from other threads (a service's HTTP handlers): callables taking the current
        # processor, run at the start of the next callback on the audio thread (never mid-hop)
        self.pending: collections.deque = collections.deque()

    def swap(self, proc: Processor) -> None:
        """Run the next callbacks on ``proc`` (hot swap); it must have the same sample rate."""
        if proc.sample_rate != self.proc.sample_rate or (not self.resampled and self.block_frames % proc.hop_samples):
            raise InputError(f"cannot swap in a {proc.sample_rate} Hz model with hop {proc.hop_samples} "
                             f"into a {self.proc.sample_rate} Hz stream of {self.block_frames}-frame blocks")
        from .resampling import ResampledStream

        rs = ResampledStream([proc], self.device_rate, proc.sample_rate, self.resample_quality,
                             block=self.block_frames) if self.resampled else None

        def op(_current: Processor) -> None:
            self.proc, self._rs = proc, rs

        self.pending.append(op)

    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info, status) -> None:
        t0 = time.perf_counter_ns()
        if status:
            if self.stats.xruns == 0:
                self.stats.first_xrun_callback = self.stats.callbacks
            self.stats.xruns += 1
            if status.input_overflow:
                self.stats.input_overflows += 1
            if status.output_underflow:
                self.stats.output_underflows += 1
        while self.pending:
            try:
                self.pending.popleft()(self.proc)
            except EdgeampError:  # e.g. a knob the swapped-in model lacks: never raise into PortAudio
                self.stats.refused_controls += 1
        if self.reset_requested:
            self.proc.reset()
            self.reset_requested = False
        if frames != self.block_frames:  # PortAudio promised fixed blocks; never guess
            outdata.fill(0)
            self.stats.xruns += 1
            return
        np.copyto(self._in, indata[:, self.input_channel])
        if self.before is not None:
            self._effect(self.before, self._in)
        if self._rs is None:
            self.proc.process(self._in, self._out)
        else:  # another rate than the model's: the streaming resampler (allocates; the native path does not)
            self._out[:] = self._rs.process(self._in[None])[0]
        if self.after is not None:
            self._effect(self.after, self._out)
        if len(self.output_channels) == outdata.shape[1]:
            outdata[:] = self._out[:, None]
        else:
            outdata.fill(0)
            for ch in self.output_channels:
                outdata[:, ch] = self._out
        dt = time.perf_counter_ns() - t0
        self._times_ns[self.stats.callbacks % self._times_ns.shape[0]] = dt
        self.stats.callbacks += 1
        if dt > self.budget_ns:
            self.stats.late_callbacks += 1

    def _effect(self, fx, block: np.ndarray) -> None:
        """Run an effect in place; one that fails (or returns the wrong shape) passes the block through,
        counted: nothing raises into PortAudio's thread."""
        try:
            out = np.asarray(fx(block, self.device_rate, reset=False), np.float32).reshape(block.shape)
        except Exception:  # noqa: BLE001 - an effect's failure must not stop the audio
            self.stats.effect_errors += 1
            return
        block[:] = out

    def callback_times_ms(self) -> np.ndarray:
        n = min(self.stats.callbacks, self._times_ns.shape[0])
        return self._times_ns[:n] / 1e6

    def status_line(self) -> str:
        t = self.callback_times_ms()
        if t.size == 0:
            return "waiting for audio..."
        recent = t[-200:] if self.stats.callbacks <= t.size else t
        load = 100.0 * float(np.mean(recent)) / (self.budget_ns / 1e6)
        p99 = float(np.percentile(t, 99))
        knobs = " ".join(f"{k} {v:g}" for k, v in self.proc.knob_values().items())
        return (f"DSP load {load:5.1f}% | p99 {p99:6.3f} ms of {self.budget_ns / 1e6:.1f} ms | xruns "
                f"{self.stats.xruns} | late {self.stats.late_callbacks} | "
                f"{'BYPASS' if self.proc.bypass else 'model'}" + (f" | {knobs}" if knobs else ""))

    def summary(self) -> dict:
        t = self.callback_times_ms()
        return {
            "callbacks": self.stats.callbacks,
            "xruns": self.stats.xruns,
            "input_overflows": self.stats.input_overflows,
            "output_underflows": self.stats.output_underflows,
            "first_xrun_callback": self.stats.first_xrun_callback,
            "late_callbacks": self.stats.late_callbacks,
            "refused_controls": self.stats.refused_controls,
            "effect_errors": self.stats.effect_errors,
            "late_hops": self.proc.stats.late_hops,
            "hops": self.proc.stats.hops,
            "block_ms": self.budget_ns / 1e6,
            "block_frames": self.block_frames,
            "device_rate": self.device_rate,
            "model_rate": self.proc.sample_rate,
            "resampled": self.resampled,
            "resampler_latency_ms": 1000.0 * self.latency_samples / self.device_rate,
            "input_channel": self.input_channel + 1,
            "output_channels": [c + 1 for c in self.output_channels],
            "callback_ms_p50": float(np.percentile(t, 50)) if t.size else None,
            "callback_ms_p99": float(np.percentile(t, 99)) if t.size else None,
            "callback_ms_max": float(t.max()) if t.size else None,
            "dsp_load_percent": 100.0 * float(np.mean(t)) / (self.budget_ns / 1e6) if t.size else None,
        }


class KeyControl:
    """Terminal keys for a live stream: b bypass, r reset, 1-9 select a knob, + / - turn it by a
    twentieth of its range (clamped). Knob changes reach the processor through the engine's
    pending queue, so they apply on the audio thread between callbacks and ramp across a hop."""

    STEPS = 20

    def __init__(self, engine: LiveEngine) -> None:
        self.engine = engine
        self.selected = 0
        self.values = engine.proc.knob_values()  # where the keys have set the knobs (applied or queued)

    def press(self, key: str) -> str | None:
        """Handle one key; returns what changed (for the status line) or None."""
        proc = self.engine.proc
        knobs = proc.arch.knobs
        if key == "b":
            proc.bypass = not proc.bypass
            return "bypass " + ("on" if proc.bypass else "off")
        if key == "r":
            self.engine.reset_requested = True
            return "reset"
        if key.isdigit() and 1 <= int(key) <= len(knobs):
            self.selected = int(key) - 1
            return f"knob {knobs[self.selected].name} selected"
        if key in "+=-_" and knobs:
            knob = knobs[self.selected]
            step = (knob.maximum - knob.minimum) / self.STEPS * (1 if key in "+=" else -1)
            value = min(knob.maximum, max(knob.minimum, self.values[knob.name] + step))
            self.values[knob.name] = value

            def op(current: Processor, name=knob.name, value=value) -> None:
                current.set_knob(name, value)

            self.engine.pending.append(op)
            return f"{knob.name} {value:g}"
        return None

    def help(self) -> str:
        knobs = self.engine.proc.arch.knobs
        names = ", ".join(f"{i + 1} {k.name}" for i, k in enumerate(knobs[:9]))
        return "keys: b bypass, r reset, q quit" + (f"; knobs: {names}, then + / -" if knobs else "")


def resolve_device(sd, spec: str | None, host_api: str | None, kind: str):
    """A sounddevice device index from a name/number and an optional host API (e.g. 'jack').
    A missing device raises DeviceError naming what exists and what to run. An int is an index
    resolved already (it is checked to exist)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        count = len(sd.query_devices())
        if not 0 <= spec < count:
            raise DeviceError(f"no audio device {spec}: PortAudio sees {count} (see `edgeamp live --list-devices`)")
        return spec
    if host_api:
        apis = sd.query_hostapis()
        match = [i for i, a in enumerate(apis) if host_api.lower() in a["name"].lower()]
        if not match:
            names = ", ".join(a["name"] for a in apis) or "none"
            raise DeviceError(f"no PortAudio host API matching {host_api!r} (have: {names})")
        api = apis[match[0]]
        if spec is None:
            index = api[f"default_{kind}_device"]
            if index < 0:
                raise DeviceError(f"host API {api['name']} has no default {kind} device (is its server running? "
                                  "see `edgeamp live --list-devices`)")
            return index
        for index in api["devices"]:
            if spec.lower() in sd.query_devices(index)["name"].lower():
                return index
        raise DeviceError(f"no {kind} device matching {spec!r} in host API {api['name']} "
                          "(see `edgeamp live --list-devices`)")
    devices = sd.query_devices()
    if spec is None:
        try:
            return sd.query_devices(kind=kind)["index"]
        except (sd.PortAudioError, ValueError, KeyError) as exc:
            raise DeviceError(
                f"no default audio {kind} device: PortAudio sees {len(devices)} device(s). Run "
                f"`edgeamp live --list-devices` and pass --{kind}-device (or --host-api jack for JACK)") from exc
    if spec.isdigit():
        if int(spec) >= len(devices):
            raise DeviceError(f"no audio device {spec}: PortAudio sees {len(devices)} "
                              "(see `edgeamp live --list-devices`)")
        return int(spec)
    names = [d["name"] for d in devices]
    for i, name in enumerate(names):
        if spec.lower() in name.lower() and devices[i][f"max_{kind}_channels"] > 0:
            return i
    raise DeviceError(f"no {kind} device matching {spec!r} (see `edgeamp live --list-devices`)")


def describe_devices() -> str:
    """What `edgeamp live --list-devices` prints: every device with its channels and default rate."""
    import sounddevice as sd

    apis = sd.query_hostapis()
    devices = sd.query_devices()
    if not len(devices):
        return ("PortAudio sees no audio devices. Is the interface connected and not held by another program? "
                "For JACK, start jackd first and use --host-api jack. Host APIs: "
                + (", ".join(a["name"] for a in apis) or "none"))
    lines = ["index  in  out  rate    host API / name"]
    for i, d in enumerate(devices):
        lines.append(f"{i:5d}  {d['max_input_channels']:2d}  {d['max_output_channels']:3d}  "
                     f"{int(d['default_samplerate']):6d}  {apis[d['hostapi']]['name']}: {d['name']}")
    return "\n".join(lines)


def open_settings(sd, ind, outd, model_rate: int, device_rate: float | None, input_channel: int,
                  output_channels: tuple[int, ...] | None) -> tuple[float, tuple[int, ...]]:
    """The rate to open the devices at (the model's where they take it, else the output device's
    default: resampled) and the output channels (dual mono on the first two where there are two)."""
    info_in, info_out = sd.query_devices(ind), sd.query_devices(outd)
    if input_channel >= info_in["max_input_channels"]:
        raise DeviceError(f"input channel {input_channel + 1} asked for; {info_in['name']} has "
                          f"{info_in['max_input_channels']}")
    if output_channels is None:
        output_channels = (0, 1) if info_out["max_output_channels"] >= 2 else (0,)
    if max(output_channels) >= info_out["max_output_channels"]:
        raise DeviceError(f"output channel {max(output_channels) + 1} asked for; {info_out['name']} has "
                          f"{info_out['max_output_channels']}")
    if device_rate is None:
        try:
            sd.check_input_settings(ind, channels=input_channel + 1, dtype="float32", samplerate=model_rate)
            sd.check_output_settings(outd, channels=max(output_channels) + 1, dtype="float32",
                                     samplerate=model_rate)
            device_rate = model_rate
        except sd.PortAudioError:
            device_rate = float(info_out["default_samplerate"])
    return float(device_rate), tuple(output_channels)


def open_live(proc: Processor, *, input_device=None, output_device=None, host_api: str | None = None,
              device_rate: float | None = None, input_channel: int = 0, output_channels: tuple[int, ...] | None = None,
              hops_per_block: int = 1, resample_quality: str = RESAMPLE_QUALITY, before=None, after=None):
    """The engine and devices of a live stream, as `edgeamp live` opens them: the devices by name or
    index (default: PortAudio's), the model's rate where they take it (else theirs, resampled),
    blocks of ``hops_per_block`` hops. Returns ``(engine, (input_device, output_device))``."""
    import sounddevice as sd

    ind = resolve_device(sd, input_device, host_api, "input")
    outd = resolve_device(sd, output_device, host_api, "output")
    rate, outputs = open_settings(sd, ind, outd, proc.sample_rate, device_rate, input_channel, output_channels)
    block = proc.hop_samples * hops_per_block
    if rate != proc.sample_rate:
        block = round(block * rate / proc.sample_rate)
    engine = LiveEngine(proc, block, input_channel=input_channel, output_channels=outputs, device_rate=rate,
                        resample_quality=resample_quality, before=before, after=after)
    return engine, (ind, outd)


class AudioStream:
    """The model live from Python (``amp.live(...)``), on the same PortAudio path as ``edgeamp live``,
    with optional effects before and after it (pedalboard plugins)::

        import edgeamp, pedalboard
        amp = edgeamp.load("amp.bundle")
        with amp.live(before=pedalboard.NoiseGate(-60), after=pedalboard.Reverb()) as stream:
            amp.gain = 7          # knobs turn live (applied at the next callback)
            stream.wait(30)       # or do other work; the stream runs on its own thread

    ``stats`` (a dict) is live; ``stop()`` ends the stream and returns the summary `edgeamp live --json`
    prints. Errors opening the devices are raised by ``start()`` (and so by ``with``)."""

    def __init__(self, engine: LiveEngine, devices: tuple, on_stop=None) -> None:
        import threading

        self.engine = engine
        self._devices = devices
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_stop = on_stop
        self.summary: dict | None = None
        self.error: BaseException | None = None

    def start(self) -> AudioStream:
        import threading

        def run() -> None:
            try:
                self.summary = run_live(self.engine, input_device=self._devices[0], output_device=self._devices[1],
                                        on_tick=self._tick, tick_seconds=0.05)
            except BaseException as exc:  # handed to start() or stop()
                self.error = exc
            finally:
                self._started.set()

        self._thread = threading.Thread(target=run, name="edgeamp-audio-stream", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self.error is not None:
            raise self.error
        return self

    def _tick(self) -> bool:
        self._started.set()
        return not self._stop.is_set()

    @property
    def stats(self) -> dict:
        return self.engine.summary()

    def wait(self, seconds: float) -> None:
        """Let the stream run for ``seconds`` (it stops early only if its device fails)."""
        if self._thread is not None:
            self._thread.join(seconds)

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._on_stop is not None:
            self._on_stop(self)
        if self.error is not None:
            raise self.error
        return self.summary or self.engine.summary()

    def __enter__(self) -> AudioStream:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_live(engine: LiveEngine, *, input_device=None, output_device=None, host_api: str | None = None,
             seconds: float | None = None, on_tick=None, tick_seconds: float = 0.5) -> dict:
    """Open the duplex stream and run until ``seconds`` pass or ``on_tick`` returns False. The devices
    are resolved by the caller's names (or defaults); the engine says rate and channels."""
    import sounddevice as sd

    ind = resolve_device(sd, input_device, host_api, "input")
    outd = resolve_device(sd, output_device, host_api, "output")
    rate = engine.device_rate
    channels = (engine.input_channel + 1, max(engine.output_channels) + 1)
    try:
        stream = sd.Stream(samplerate=rate, blocksize=engine.block_frames, device=(ind, outd), channels=channels,
                           dtype="float32", latency="low", callback=engine.callback)
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot open a {rate:g} Hz duplex stream ({channels[0]} in, {channels[1]} out) on "
                          f"devices {ind!r}/{outd!r}: {exc}; see `edgeamp live --list-devices`") from exc
    t_start = time.monotonic()
    with stream:
        while True:
            time.sleep(tick_seconds)
            if on_tick is not None and on_tick() is False:
                break
            if seconds is not None and time.monotonic() - t_start >= seconds:
                break
        wall = time.monotonic() - t_start
        latency = stream.latency
    summary = engine.summary()
    summary["wall_seconds"] = wall
    summary["expected_callbacks"] = wall * rate / engine.block_frames
    summary["stream_latency_ms"] = [1000 * v for v in latency] if isinstance(latency, tuple) else 1000 * latency
    return summary
