"""One network stream: its processor (or batch slot), format buffers and counters."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from edgeamp.core.errors import InputError

from ..wire import FORMATS, decode_into, encode
from .model import Model
from .protocol import INLINE_CHECK, INLINE_MS, SLICE_HOPS, Handshake

log = logging.getLogger(__name__)


class Stream:
    """One network stream: its processor, format conversion buffers and counters."""

    def __init__(self, sid: str, hs: Handshake, model: Model, peer: str, defaults: dict | None = None) -> None:
        self.id = sid
        self.peer = peer
        self.hs = hs
        self.dtype = FORMATS[hs.format]
        self.frame_bytes = hs.block_size * self.dtype.itemsize
        self.lock = asyncio.Lock()  # the processor: held for compute, never across network I/O
        self.send_lock = asyncio.Lock()  # the socket: a close (drain) waits for the frame being sent
        self.transport = None  # set by the service: cut off when the client stops reading
        self.frames = 0
        self.bad_frames = 0
        self.nonfinite_frames = 0
        self.started = time.monotonic()
        self.samples_in = 0
        self.closing = False
        self.close_done = None  # set while a close with its own code (1001 drain, 1007...) is under way
        self._inline = False  # see inline(): decided from the stream's own hop times
        self._x = np.zeros(hs.block_size, np.float32)
        self._y = np.zeros(hs.block_size, np.float32)
        self.bind(model, {**(defaults or {}), **hs.knobs})  # the service's default knobs, the handshake's over them
        self.proc.bypass = hs.bypass

    def bind(self, model: Model, knobs: dict[str, float]) -> list[str]:
        """Open a processor on ``model``; knobs it lacks or cannot take are dropped (returned)."""
        aligned = self.hs.block_size % model.factory.hop_samples == 0
        proc, slot = model.new_processor(aligned)
        self.release()
        self.slot = slot
        dropped = proc.prepare(knobs)  # start at the handshake's knob values, no ramp
        bypass = self.proc.bypass if getattr(self, "proc", None) else False
        self.model, self.proc, self.hops_seen = model, proc, 0
        self.proc.bypass = bypass
        return dropped

    def release(self) -> None:
        """Give the stream's batch row back (when it ends or moves to another model)."""
        if getattr(self, "slot", None) is not None:
            self.slot.close()
            self.slot = None

    def load(self, data: bytes) -> int:
        """Decode one frame into the input buffer; returns its count of non-finite samples (the
        processor zeroes them). A frame of the wrong size raises InputError."""
        if len(data) != self.frame_bytes:
            raise InputError(f"frame of {len(data)} bytes; this stream takes {self.frame_bytes} "
                             f"({self.hs.block_size} {self.hs.format} samples)")
        decode_into(data, self.hs.format, self._x)
        self.samples_in += self._x.shape[0]
        if not np.isfinite(np.add.reduce(self._x)):  # only float32 frames can hold NaN/Inf
            return int(np.count_nonzero(~np.isfinite(self._x)))
        return 0

    def bulk(self) -> bool:
        """Sending faster than twice real time (with half a second of slack): its compute queues
        behind real-time streams'."""
        elapsed = time.monotonic() - self.started
        return self.samples_in > (elapsed + 0.5) * 2 * self.model.sample_rate

    def slices(self) -> list[tuple[int, int]]:
        """The frame's compute jobs: ranges of at most SLICE_HOPS hops (whole hops where aligned)."""
        step = SLICE_HOPS * self.proc.hop_samples
        n = self.hs.block_size
        return [(lo, min(lo + step, n)) for lo in range(0, n, step)]

    def run(self, lo: int, hi: int) -> None:
        """Compute samples ``lo:hi`` of the loaded frame (worker thread, or the loop: :meth:`inline`)."""
        self.proc.process(self._x[lo:hi], self._y[lo:hi])

    def inline(self) -> bool:
        """Whether this frame's compute is cheap enough to run on the event loop itself: a frame of
        at most INLINE_MS of compute by its recent hops (checked every INLINE_CHECK frames). Handing
        a cheap hop to a worker thread and back costs more than the hop: on 2 cores the `stateful`
        preset on the native engine (0.07 ms a hop) cost the service 0.35 ms of CPU per stream-hop
        through the pool. Only where the process has one compute thread (``--workers 1``, the
        default under ``--processes``: one process per core); dearer models keep the pool (the loop
        stays free for I/O)."""
        if self.frames % INLINE_CHECK == 0:
            recent = self.proc.hop_times_since(max(0, self.proc.stats.hops - 16))
            hops = max(1, self.hs.block_size // self.proc.hop_samples)
            self._inline = recent.shape[0] >= 4 and float(np.median(recent)) * hops <= INLINE_MS
        return self._inline

    def encoded(self) -> bytes:
        return encode(self._y, self.hs.format)

    def info(self) -> dict:
        return {
            "stream": self.id,
            "peer": self.peer,
            "format": self.hs.format,
            "block_size": self.hs.block_size,
            "latency_samples": self.proc.latency_samples,
            "model_version": self.model.version,
            "knobs": self.proc.knob_values(),
            "bypass": self.proc.bypass,
            "frames": self.frames,
            "hops": self.proc.stats.hops,
            "late_hops": self.proc.stats.late_hops,
            "bad_frames": self.bad_frames,
            "nonfinite_frames": self.nonfinite_frames,
            "seconds": round(time.monotonic() - self.started, 3),
            "compute": "event loop" if self._inline else "worker pool",  # see inline()
        }
