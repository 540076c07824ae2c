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

from .errors import DeviceError, EdgeampError, InputError
from .processor import Processor


@dataclass
class LiveStats:
    callbacks: int = 0
    xruns: int = 0
    late_callbacks: int = 0
    input_overflows: int = 0
    output_underflows: int = 0
    first_xrun_callback: int = -1  # index of the callback that first reported one (-1: none)
    refused_controls: int = 0  # queued control changes the processor refused


class LiveEngine:
    """The audio callback around an aligned :class:`Processor` (block size == hop)."""

    def __init__(self, proc: Processor, block_frames: int, output_channels: int = 1, timing_window: int = 8192):
        if block_frames % proc.hop_samples:
            raise InputError(f"block size {block_frames} must be a multiple of the hop ({proc.hop_samples})")
        self.proc = proc
        self.block_frames = block_frames
        self.output_channels = output_channels
        self.stats = LiveStats()
        self.budget_ns = int(block_frames / proc.sample_rate * 1e9)
        self._in = np.zeros(block_frames, np.float32)
        self._out = np.zeros(block_frames, np.float32)
        self._times_ns = np.zeros(timing_window, np.int64)
        self.reset_requested = False
        # control from other threads (a service's HTTP handlers): callables taking the current
        # processor, run at the start of the next callback on the audio thread (never mid-hop)
        self.pending: collections.deque = collections.deque()

    def swap(self, proc: Processor) -> None:
        """Run the next callbacks on ``proc`` (hot swap); it must have the same sample rate."""
        if proc.sample_rate != self.proc.sample_rate or self.block_frames % proc.hop_samples:
            raise InputError(f"cannot swap in a {proc.sample_rate} Hz model with hop {proc.hop_samples} "
                             f"into a {self.proc.sample_rate} Hz stream of {self.block_frames}-frame blocks")

        def op(_current: Processor) -> None:
            self.proc = proc

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
        np.copyto(self._in, indata[:, 0])
        self.proc.process(self._in, self._out)
        outdata[:] = self._out[:, None]
        dt = time.perf_counter_ns() - t0
        self._times_ns[self.stats.callbacks % self._times_ns.shape[0]] = dt
        self.stats.callbacks += 1
        if dt > self.budget_ns:
            self.stats.late_callbacks += 1

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
            "late_hops": self.proc.stats.late_hops,
            "hops": self.proc.stats.hops,
            "block_ms": self.budget_ns / 1e6,
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
    """A sounddevice device index from a name/number and an optional host API (e.g. 'jack')."""
    if host_api:
        apis = sd.query_hostapis()
        match = [i for i, a in enumerate(apis) if host_api.lower() in a["name"].lower()]
        if not match:
            names = ", ".join(a["name"] for a in apis)
            raise DeviceError(f"no PortAudio host API matching {host_api!r} (have: {names})")
        api = apis[match[0]]
        if spec is None:
            index = api[f"default_{kind}_device"]
            if index < 0:
                raise DeviceError(f"host API {api['name']} has no default {kind} device")
            return index
        for index in api["devices"]:
            if spec.lower() in sd.query_devices(index)["name"].lower():
                return index
        raise DeviceError(f"no {kind} device matching {spec!r} in host API {api['name']}")
    if spec is None:
        return None
    return int(spec) if spec.isdigit() else spec


def run_live(engine: LiveEngine, *, input_device=None, output_device=None, host_api: str | None = None,
             seconds: float | None = None, on_tick=None, tick_seconds: float = 0.5) -> dict:
    """Open the duplex stream and run until ``seconds`` pass or ``on_tick`` returns False."""
    import sounddevice as sd

    sr = engine.proc.sample_rate
    ind = resolve_device(sd, input_device, host_api, "input")
    outd = resolve_device(sd, output_device, host_api, "output")
    try:
        stream = sd.Stream(samplerate=sr, blocksize=engine.block_frames, device=(ind, outd), channels=(1, 1),
                           dtype="float32", latency="low", callback=engine.callback)
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot open a {sr} Hz duplex stream on {ind!r}/{outd!r}: {exc}") from exc
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
    summary["expected_callbacks"] = wall * sr / engine.block_frames
    summary["stream_latency_ms"] = [1000 * v for v in latency] if isinstance(latency, tuple) else 1000 * latency
    return summary
