"""Streaming processor: any block size in, the same length out, hops of ``hop_samples`` inside.

Contract (docs/DESIGN.md): mono float32 1-D blocks of any length; state kept between calls and
cleared only by :meth:`Processor.reset`; the output equals the offline result delayed by
:attr:`Processor.latency_samples` for every block size. With ``aligned=True`` the caller
promises blocks that are whole multiples of the hop (a live callback with ``blocksize=hop``)
and the hop-buffering latency is 0; otherwise it is ``hop_samples - 1`` (the smallest that
works for every block size, one sample included).

Knobs are set in knob units (``set_knob("gain", 7)``); a change ramps linearly across the
next hop so that it never clicks. Per-hop compute times, late hops and bad blocks are counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgeamp.core.errors import ConfigError, EdgeampError, InputError
from edgeamp.core.model import Architecture


@dataclass
class ProcessorStats:
    hops: int = 0
    late_hops: int = 0  # compute time longer than the hop's duration
    bad_blocks: int = 0  # blocks refused by the input contract
    nonfinite_hops: int = 0  # hops whose input held NaN/Inf (those samples were zeroed, state kept clean)


class Processor:
    def __init__(
        self,
        engine,
        arch: Architecture,
        sample_rate: int,
        *,
        aligned: bool = False,
        timing_window: int = 8192,
    ) -> None:
        self.engine = engine
        self.arch = arch
        self.sample_rate = sample_rate
        self.hop_samples = engine.hop_samples
        self.aligned = aligned
        self.latency_samples = 0 if aligned else self.hop_samples - 1
        self.hop_seconds = self.hop_samples / sample_rate
        self._hop_ns = self.hop_seconds * 1e9  # a hop computed for longer than it lasts is late
        self.bypass = False
        self.stats = ProcessorStats()
        hop = self.hop_samples
        n_knobs = len(arch.knobs)
        self._in = np.zeros(hop, np.float32)
        self._in_sum = np.zeros((), np.float32)
        self._in_fill = 0
        self._fifo = np.zeros(2 * hop, np.float32)  # ring buffer of computed output
        self._fifo_start = 0
        self._fifo_count = 0
        self._knobs = np.zeros((hop, n_knobs), np.float32)
        self._ramp = (np.arange(1, hop + 1, dtype=np.float32) / hop)[:, None]
        self._knob_values = {k.name: k.default for k in arch.knobs}
        self._knob_now = np.array([k.normalise(k.default) for k in arch.knobs], np.float32)
        self._knob_target = self._knob_now.copy()
        self._knob_delta = np.zeros(n_knobs, np.float32)
        self._knobs[:] = self._knob_now
        self._times_ns = np.zeros(timing_window, np.int64)
        self.reset()

    # ---- knobs -------------------------------------------------------------------------
    def set_knob(self, name: str, value: float) -> None:
        """Set a knob in its own units; the change ramps across the next hop."""
        for i, knob in enumerate(self.arch.knobs):
            if knob.name == name:
                value = knob.value_of(value)
                self._knob_target[i] = knob.normalise(value)
                self._knob_values[name] = value
                self._knob_changed = True
                return
        known = ", ".join(self.arch.knob_names) or "none: this model has no knobs"
        raise ConfigError(f"unknown knob {name!r}; known knobs: {known}")

    def prepare(self, knobs: dict[str, float] | None = None, *, bypass: bool | None = None) -> list[str]:
        """Get ready for a new stream, the one way every caller does it: set ``knobs`` (those this model
        lacks or cannot take are skipped and returned), then :meth:`reset`, so that they apply from
        the first hop without a ramp; ``bypass`` too where given."""
        dropped = []
        for name, value in (knobs or {}).items():
            try:
                self.set_knob(name, value)
            except EdgeampError:
                dropped.append(name)
        self.reset()
        if bypass is not None:
            self.bypass = bypass
        return dropped

    @property
    def knob_inputs(self) -> np.ndarray:
        """The knobs' model inputs now, normalised: ``(n_knobs,)`` (what the next hop starts from)."""
        return self._knob_now.copy()

    def knob_values(self) -> dict[str, float]:
        """The knob settings in their own units, as last set."""
        return dict(self._knob_values)

    # ---- streaming ---------------------------------------------------------------------
    def reset(self) -> None:
        """Clear model state and buffers (knob settings are kept and applied without a ramp)."""
        self.engine.reset()
        self._in[:] = 0.0
        self._in_fill = 0
        self._fifo[:] = 0.0
        self._fifo_start = 0
        self._fifo_count = self.latency_samples
        self._knob_now[:] = self._knob_target
        self._knobs[:] = self._knob_now
        self._knob_changed = False
        self._knob_ramping = False

    def _check(self, block) -> np.ndarray:
        if not isinstance(block, np.ndarray) or block.dtype != np.float32 or block.ndim != 1:
            self.stats.bad_blocks += 1
            got = f"{type(block).__name__} {getattr(block, 'dtype', '')} shape {getattr(block, 'shape', '')}"
            raise InputError(f"process() takes a 1-D float32 numpy array (mono), got {got.strip()}")
        if self.aligned and block.shape[0] % self.hop_samples:
            self.stats.bad_blocks += 1
            raise InputError(
                f"aligned processor needs blocks that are multiples of {self.hop_samples} samples, got {block.shape[0]}"
            )
        return block

    def _next_hop(self) -> tuple[np.ndarray, np.ndarray]:
        """The full input hop, made safe (NaN/Inf zeroed), and its knob rows (ramped after a change)."""
        if self._knob_changed:  # ramp from the old to the new values across this hop
            np.subtract(self._knob_target, self._knob_now, out=self._knob_delta)
            np.multiply(self._ramp, self._knob_delta, out=self._knobs)
            self._knobs += self._knob_now
            self._knob_now[:] = self._knob_target
            self._knob_changed = False
            self._knob_ramping = True
        elif self._knob_ramping:  # the hop after a ramp: hold the new values
            self._knobs[:] = self._knob_now
            self._knob_ramping = False
        np.add.reduce(self._in, out=self._in_sum)  # NaN/Inf anywhere makes the sum non-finite
        if not math.isfinite(self._in_sum.item()):  # one NaN would poison the LSTM state until reset()
            np.nan_to_num(self._in, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            self.stats.nonfinite_hops += 1
        return self._in, self._knobs

    def _count_hop(self, dt: int) -> None:
        """Count a hop and its compute time ``dt`` (ns)."""
        self._times_ns[self.stats.hops % self._times_ns.shape[0]] = dt
        self.stats.hops += 1
        if dt > self._hop_ns:
            self.stats.late_hops += 1

    def _hop_done(self, y: np.ndarray, dt: int) -> None:
        """Count the hop's compute time ``dt`` (ns) and queue its output (or the input, bypassed)."""
        self._count_hop(dt)
        src = self._in if self.bypass else y
        hop = self.hop_samples
        cap = self._fifo.shape[0]
        end = (self._fifo_start + self._fifo_count) % cap
        first = min(hop, cap - end)
        self._fifo[end : end + first] = src[:first]
        if first < hop:
            self._fifo[: hop - first] = src[first:]
        self._fifo_count += hop

    def _pop(self, out: np.ndarray, lo: int, n: int) -> None:
        cap = self._fifo.shape[0]
        first = min(n, cap - self._fifo_start)
        out[lo : lo + first] = self._fifo[self._fifo_start : self._fifo_start + first]
        if first < n:
            out[lo + first : lo + n] = self._fifo[: n - first]
        self._fifo_start = (self._fifo_start + n) % cap
        self._fifo_count -= n

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Process one mono float32 block; returns ``out`` (allocated when not given) of the same length."""
        block, out = self._begin(block, out)
        if block.shape[0] == self.hop_samples and self._in_fill == 0 and self._fifo_count == 0:
            # one whole hop with nothing queued (a hop-aligned stream: live callbacks, the service, bench):
            # straight through, no generator and no FIFO (Python's part of a hop 4.8 -> 2.8 us, measured
            # on an engine that does nothing)
            self._in[:] = block
            hop = self._next_hop()
            t0 = time.perf_counter_ns()
            y = self.engine.run_hop(*hop)
            self._count_hop(time.perf_counter_ns() - t0)
            out[:] = self._in if self.bypass else y
            return out
        steps = self._steps(block, out)
        try:
            hop = next(steps)
            while True:
                hop = steps.send(self.engine.run_hop(*hop))
        except StopIteration:
            return out

    async def process_async(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`process` for an engine whose hops are awaited (``engine.run_hop_async``: a batch
        slot on an asyncio loop); the caller must not start another block before this one is done."""
        block, out = self._begin(block, out)
        steps = self._steps(block, out)
        try:
            hop = next(steps)
            while True:
                hop = steps.send(await self.engine.run_hop_async(*hop))
        except StopIteration:
            return out

    def _begin(self, block, out) -> tuple[np.ndarray, np.ndarray]:
        block = self._check(block)
        if out is None:
            out = np.empty(block.shape[0], np.float32)
        elif out.shape != block.shape or out.dtype != np.float32:
            raise InputError(f"out must be float32 of shape {block.shape}, got {out.dtype} {out.shape}")
        return block, out

    def _steps(self, block: np.ndarray, out: np.ndarray):
        """The block's work as a generator: yields each full hop's (audio, knobs) and takes back the
        engine's output for it, so one body serves the blocking and the awaiting driver."""
        n = block.shape[0]
        hop = self.hop_samples
        pos_in = pos_out = 0
        while pos_in < n:
            take = min(hop - self._in_fill, n - pos_in)
            self._in[self._in_fill : self._in_fill + take] = block[pos_in : pos_in + take]
            self._in_fill += take
            pos_in += take
            if self._in_fill == hop:
                hop_in = self._next_hop()
                t0 = time.perf_counter_ns()
                y = yield hop_in
                self._hop_done(y, time.perf_counter_ns() - t0)
                self._in_fill = 0
            k = min(self._fifo_count, pos_in - pos_out)
            if k:
                self._pop(out, pos_out, k)
                pos_out += k

    # ---- measurements ------------------------------------------------------------------
    def hop_times_ms(self) -> np.ndarray:
        """Compute time of the most recent hops (up to the timing window), in ms."""
        n = min(self.stats.hops, self._times_ns.shape[0])
        return self._times_ns[:n] / 1e6

    def hop_times_since(self, hops_seen: int) -> np.ndarray:
        """Compute times (ms) of the hops after the first ``hops_seen``, oldest first (at most the
        timing window): what a metrics exporter polls after each block."""
        window = self._times_ns.shape[0]
        end = self.stats.hops
        n = min(end - hops_seen, window)
        if n <= 0:
            return np.zeros(0)
        lo = (end - n) % window
        if lo + n <= window:  # contiguous in the ring (always, for a frame of a few hops)
            return self._times_ns[lo : lo + n] / 1e6
        return np.concatenate([self._times_ns[lo:], self._times_ns[: lo + n - window]]) / 1e6

    def last_hop_ns(self) -> int:
        """Compute time of the latest hop in ns (0 before the first)."""
        return int(self._times_ns[(self.stats.hops - 1) % self._times_ns.shape[0]]) if self.stats.hops else 0
