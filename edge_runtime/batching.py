"""Batched inference for many streams of one model: one compiled ``batched`` IR, one inference per
tick for every stream that has a hop ready. Knows nothing of HTTP or sockets.

Each stream gets a :class:`BatchSlot`, which has the engine interface a :class:`Processor` takes
(``hop_samples``, ``reset()``, ``run_hop(audio, knobs)`` and its coroutine twin ``run_hop_async``),
so hop buffering, knob ramps, NaN handling and bypass stay the processor's, unchanged. A slot's
recurrent state lives in its row of the engine's state arrays; a tick gathers the rows of the slots
with a hop ready into the batch, runs it, and scatters outputs and new state back.

Two ways in, one queue: ``run_hop`` blocks the calling thread until the tick that carries its hop
has run (a thread per stream); ``run_hop_async`` awaits it on an asyncio loop (the service: no
thread per stream, one wake-up of the loop per tick, not per hop).

Ticks run on ``lanes`` inference requests, each on a thread of its own, from one queue. Who runs a
tick (the "combining" pattern, no scheduler in the hop's path): the caller that submits a hop
dispatches a tick itself when a lane is idle and the tick is due; a lane that finishes a tick takes
the next one at once when it is due; a timer thread dispatches the ticks that fall due by waiting.

When a tick is due decides what batching buys. Real-time streams arrive at spread phases, so a
lane that runs whatever is ready as soon as it is idle (``wait_ms=0``) runs batches of 1-3 and is
busy all the time: on 2 cores that cost more CPU than one inference per stream. So the queued hops
wait for the hops that are on their way: a tick is due when the batch is full, or when no active
stream (one that submitted a hop within the last two hop durations) is expected to submit its next
hop (a hop duration after its last: streams are periodic) before the first queued hop's deadline,
else at that deadline. The deadline is the first hop's arrival plus ``wait_ms``, cut so that the
tick ends within ``DEADLINE`` hop durations given what a tick of the queued size costs (a running
fit of tick time against batch size, kept from the ticks run). A lone stream is never delayed, nor
are streams whose hops are too far apart to share a tick; a stream that stalls holds the others
back by at most ``wait_ms``. Hops of bulk streams (``priority=1``) go after real-time hops.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgeamp.core.errors import DeviceError
from edgeamp.core.model import Architecture, state_name

from .engines import compile_ir

log = logging.getLogger(__name__)
REALTIME, BULK = 0, 1
DEADLINE = 0.5  # a hop's tick should be done this many hop durations after the hop came in


class BatchSlot:
    """One stream's handle on a :class:`BatchedEngine` (the engine interface of a Processor)."""

    def __init__(self, engine: BatchedEngine, row: int) -> None:
        self.engine = engine
        self.row = row
        self.hop_samples = engine.hop_samples
        self.priority = REALTIME  # BULK: this stream's hops queue behind real-time ones
        self._out = np.zeros(engine.hop_samples, np.float32)
        self._audio = np.zeros(engine.hop_samples, np.float32)  # the hop in flight, copied in (no allocation)
        self._knobs = np.zeros((engine.hop_samples, len(engine.arch.knobs)), np.float32)
        self._done = threading.Event()  # set by the lane that ran this slot's hop (blocking callers)
        self._waiter: tuple | None = None  # (loop, future) of an awaiting caller
        self._in_flight = False  # a hop queued or in a running tick
        self._queued = False  # a hop queued, its tick not started
        self._released = False  # closed while in flight: its row is freed when the hop is done
        self.last_submit = 0.0

    def reset(self) -> None:
        self.engine.reset_row(self.row)

    def run_hop(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        return self.engine.submit(self, audio, knobs)

    async def run_hop_async(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        await self.engine.submit_async(self, audio, knobs)
        return self._out

    def close(self) -> None:
        self.engine.release(self)


class TickCost:
    """A running least-squares fit of tick time against batch size (``a + b * size``), recent ticks
    weighing most; before two sizes have run, time per hop times the size (an overestimate)."""

    def __init__(self, decay: float = 0.98) -> None:
        self.decay = decay
        self._n = self._x = self._xx = self._y = self._xy = 0.0

    def add(self, size: int, seconds: float) -> None:
        d = self.decay
        self._n = d * self._n + 1.0
        self._x = d * self._x + size
        self._xx = d * self._xx + size * size
        self._y = d * self._y + seconds
        self._xy = d * self._xy + size * seconds

    def __call__(self, size: int) -> float:
        """Expected seconds for a tick of ``size`` hops (0 before any tick has run)."""
        if self._n == 0.0:
            return 0.0
        spread = self._n * self._xx - self._x * self._x
        if spread > 1e-6 * self._n * self._xx:
            b = max(0.0, (self._n * self._xy - self._x * self._y) / spread)
            return max(0.0, (self._y - b * self._x) / self._n + b * size)
        return self._y / self._x * size


class BatchedEngine:
    """A compiled ``batched`` IR and the state rows of every stream on it.

    ``max_batch``: most hops in one inference. ``wait_ms``: longest a ready hop waits for others
    (less when the tick would then end after ``DEADLINE`` hop durations). ``lanes``: inferences
    that may run at once. ``compiled``: an already compiled model to use (tests and the service
    pass one).
    """

    def __init__(self, xml_path: Path | str, arch: Architecture, hop_samples: int, *, device: str = "CPU",
                 config: dict | None = None, compiled=None, max_batch: int = 32, wait_ms: float = 1.0,
                 lanes: int = 1, on_tick=None, initial: dict[str, np.ndarray] | None = None) -> None:
        self.arch = arch
        # per state input (``h_in0``, ``c_in0``...): the row a new or reset stream starts from
        sizes = arch.state_sizes()
        self._names = [(state_name(kind, i, "in"), state_name(kind, i, "out")) for kind, i, _ in sizes]
        units = [width for _, _, width in sizes]
        initial = initial or {}
        self._start = [np.asarray(initial.get(name_in, np.zeros(u)), np.float32)
                       for (name_in, _), u in zip(self._names, units)]
        self.hop_samples = hop_samples
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.hop_s = hop_samples / 48000.0  # replaced by the sample rate through set_rate
        self.compiled = compiled if compiled is not None else compile_ir(xml_path, device, config)
        names = {n for port in self.compiled.inputs for n in port.get_names()}
        if "h_in0" not in names or self.compiled.input("audio").get_partial_shape()[0].is_static:
            raise DeviceError(f"{Path(xml_path).name} is not a batched IR (export the bundle with --variants batched)")
        # a state input is (B, width), or (B, 1, U) where the graph's op wants that (LSTMSequence's state)
        self._middle_axis = [len(self.compiled.input(name_in).get_partial_shape()) == 3 for name_in, _ in self._names]
        self._lanes = [_Lane(self, i) for i in range(max(1, lanes))]
        capacity = 8
        self._state = [np.zeros((capacity, u), np.float32) for u in units]  # one array per state input
        self._free: list[int] = list(range(capacity))
        self._slots: set[BatchSlot] = set()
        self._queues: tuple[list[BatchSlot], list[BatchSlot]] = ([], [])  # real-time hops, bulk hops
        self._first_ready = 0.0  # when the oldest queued hop came
        self._cv = threading.Condition()
        self._closed = False
        self.cost = TickCost()
        self.batch_sizes: Counter = Counter()  # hops per inference -> count
        self.waits_s: list[float] = []  # how long the first hop of each tick waited (recent ticks)
        self.ticks = 0
        self.on_tick = on_tick  # called (batch size, seconds the first hop waited) after each tick
        self._timer = threading.Thread(target=self._time_out, name="edgeamp-batch-timer", daemon=True)
        self._timer.start()
        for lane in self._lanes:
            lane.thread.start()

    def set_rate(self, sample_rate: int) -> None:
        self.hop_s = self.hop_samples / sample_rate

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def request(self, lane: int = 0):
        """Lane ``lane``'s inference request (a benchmark times the graph through it alone)."""
        return self._lanes[lane].request

    @property
    def in_use(self) -> int:
        """Streams holding a row now."""
        with self._cv:
            return len(self._slots)

    # ---- slots ----------------------------------------------------------------------------
    def slot(self) -> BatchSlot:
        """A new stream: a free state row (at the start state), growing the state arrays when full."""
        with self._cv:
            if not self._free:
                old = self._state[0].shape[0]
                self._state = [np.concatenate([a, np.zeros_like(a)]) for a in self._state]
                self._free = list(range(old, 2 * old))
            slot = BatchSlot(self, self._free.pop(0))
            self._slots.add(slot)
        self.reset_row(slot.row)
        return slot

    def release(self, slot: BatchSlot) -> None:
        """A stream leaves. A hop of it still queued is dropped; one in a running tick keeps the
        row until the tick is done (so that no new stream's row is overwritten by it)."""
        failed = None
        with self._cv:
            if slot not in self._slots:
                return
            self._slots.discard(slot)
            for q in self._queues:
                if slot in q:
                    q.remove(slot)
                    slot._in_flight = slot._queued = False
                    failed = slot
            if slot._in_flight:
                slot._released = True
            else:
                self._free.append(slot.row)
            self._cv.notify_all()  # the batch may now be complete without it
        if failed is not None:
            self._fail([failed], "the stream left with a hop queued")

    def reset_row(self, row: int) -> None:
        with self._cv:
            for a, start in zip(self._state, self._start):
                a[row] = start

    def close(self) -> None:
        with self._cv:
            self._closed = True
            queued = self._queues[0] + self._queues[1]
            for q in self._queues:
                q.clear()
            self._cv.notify_all()
        self._fail(queued, "the batched engine closed while a hop waited")
        self._timer.join(5)
        for lane in self._lanes:
            lane.jobs.put(None)
            lane.thread.join(5)
            if not lane.thread.is_alive():
                lane.request = None
        # engine and lanes refer to each other: without this the compiled model (and the device's
        # threads it holds) would live until the next cyclic garbage collection
        if not any(lane.thread.is_alive() for lane in self._lanes):
            self.compiled = None

    # ---- submitting -----------------------------------------------------------------------
    def submit(self, slot: BatchSlot, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        """Run one hop of ``slot`` in the next tick; blocks until it has run, returns its output."""
        slot._done.clear()
        self._enqueue(slot, audio, knobs, None)
        while not slot._done.wait(1.0):
            if self._closed:
                raise DeviceError("the batched engine closed while a hop waited")
        if slot._waiter is not None:  # _fail set it to the error
            raise slot._waiter
        return slot._out

    def submit_async(self, slot: BatchSlot, audio: np.ndarray, knobs: np.ndarray) -> asyncio.Future:
        """Queue one hop of ``slot`` from a coroutine; the future is done when its tick has run
        (the output is then in ``slot._out``)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._enqueue(slot, audio, knobs, (loop, fut))
        return fut

    def _enqueue(self, slot: BatchSlot, audio, knobs, waiter) -> None:
        with self._cv:
            if self._closed:
                raise DeviceError("the batched engine is closed")
            if slot._in_flight:
                raise DeviceError("a stream submitted a hop while its previous one was still running")
            now = time.perf_counter()
            if not self.queued():
                self._first_ready = now
            slot.last_submit = now
            slot._waiter = waiter
            slot._in_flight = True
            np.copyto(slot._audio, audio)
            np.copyto(slot._knobs, knobs.reshape(slot._knobs.shape))
            self._queues[1 if slot.priority else 0].append(slot)
            slot._queued = True
            lane = self._idle_lane()
            job = self._take(lane, now) if lane is not None and self._wait_left(now) <= 0 else None
            if job is None and self.wait_s > 0:
                self._cv.notify()  # the timer thread, the only thread that waits on the condition
        if job is not None:
            job[0].jobs.put(job)

    # ---- ticks (called with the lock held) ------------------------------------------------
    def queued(self) -> int:
        return len(self._queues[0]) + len(self._queues[1])

    def _idle_lane(self) -> _Lane | None:
        return next((lane for lane in self._lanes if not lane.busy), None)

    def _wait_left(self, now: float) -> float:
        """Seconds until the queued hops' tick is due (<= 0: due now; inf: nothing queued). Due
        when no active stream's next hop is expected before the first queued hop's deadline
        (streams are periodic: the next hop comes a hop after the last), else at that deadline."""
        queued = self.queued()
        if not queued:
            return float("inf")
        if queued >= self.max_batch:
            return 0.0
        deadline = self._first_ready + min(self.wait_s, DEADLINE * self.hop_s - self.cost(queued))
        if now >= deadline:
            return 0.0
        for s in self._slots:
            if not s._queued and now - s.last_submit < 2 * self.hop_s and s.last_submit + self.hop_s <= deadline:
                return deadline - now  # a hop that would join this tick is on its way
        return 0.0

    def _take(self, lane: _Lane, now: float) -> tuple:
        """The lane's next tick: up to max_batch of the queued hops, real-time ones first, and the inputs."""
        lane.busy = True
        waited = now - self._first_ready
        realtime, bulk = self._queues
        batch = realtime[: self.max_batch]
        del realtime[: len(batch)]
        if len(batch) < self.max_batch and bulk:
            more = bulk[: self.max_batch - len(batch)]
            del bulk[: len(more)]
            batch += more
        for slot in batch:
            slot._queued = False
        if realtime or bulk:
            self._first_ready = now
        rows, inputs = self.batch_inputs(batch)
        return lane, batch, rows, inputs, waited

    def batch_inputs(self, slots: list[BatchSlot]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rows of ``slots`` and one inference's inputs for them: each slot's hop in flight (its
        audio and knob buffers) and its state rows. Called with the lock held (or before any tick)."""
        rows = np.fromiter((s.row for s in slots), np.intp, len(slots))
        inputs = {"audio": np.stack([s._audio for s in slots])}
        if self.arch.knobs:
            inputs["knobs"] = np.stack([s._knobs for s in slots])
        for (name_in, _), a, middle in zip(self._names, self._state, self._middle_axis):
            inputs[name_in] = a[rows][:, None, :] if middle else a[rows]
        return rows, inputs

    def _time_out(self) -> None:
        """Dispatch the ticks that fall due by waiting (only needed when ``wait_ms`` > 0)."""
        while True:
            with self._cv:
                job = None
                while job is None:
                    if self._closed:
                        return
                    now = time.perf_counter()
                    lane = self._idle_lane()
                    left = self._wait_left(now) if lane is not None else float("inf")
                    if left <= 0:
                        job = self._take(lane, now)
                    elif left < float("inf"):
                        self._cv.wait(max(1e-4, left))
                    else:
                        self._cv.wait()
            job[0].jobs.put(job)

    def _finish(self, lane: _Lane, batch: list[BatchSlot], rows, outputs: dict | DeviceError, waited: float,
                seconds: float):
        """Scatter a tick's outputs and state, wake its callers; returns the lane's next job (the
        hops queued meanwhile, when due) or None. ``outputs`` is the error when the inference failed
        (the rows keep their state). ``seconds``: what the inference took."""
        failed = isinstance(outputs, DeviceError)
        with self._cv:
            if not failed:
                for (_, name_out), a in zip(self._names, self._state):
                    out = outputs[name_out]
                    a[rows] = out if out.ndim == 2 else out[:, 0, :]
                self.cost.add(len(batch), seconds)
            for j, slot in enumerate(batch):
                if not failed:
                    slot._out[:] = outputs["output"][j]
                slot._in_flight = False
                if slot._released:  # the stream left during the tick: its row is free now
                    self._free.append(slot.row)
            self.ticks += 1
            self.batch_sizes[len(batch)] += 1
            self.waits_s.append(waited)
            if len(self.waits_s) > 4096:
                del self.waits_s[:2048]
            now = time.perf_counter()
            job = self._take(lane, now) if not self._closed and self._wait_left(now) <= 0 else None
            if job is None:
                lane.busy = False
                if self.wait_s > 0 and self.queued():
                    self._cv.notify()  # the timer: queued hops now have an idle lane
        if failed:
            self._fail(batch, str(outputs))
            return job
        if self.on_tick is not None:
            self.on_tick(len(batch), waited)
        _wake(batch)
        return job

    def _abandon(self, lane: _Lane, batch: list[BatchSlot], exc: Exception) -> None:
        """A tick that could not be finished: its callers get a DeviceError, the lane goes idle."""
        with self._cv:
            lane.busy = False
            for slot in batch:
                slot._in_flight = False
                if slot._released:
                    self._free.append(slot.row)
            self._cv.notify()
        self._fail(batch, f"batched tick failed: {exc!r}")

    def _fail(self, slots: list[BatchSlot], reason: str) -> None:
        for slot in slots:
            if not isinstance(slot._waiter, tuple):  # a blocked thread: it raises this
                slot._waiter = DeviceError(reason)
                slot._done.set()
            else:
                loop, fut = slot._waiter
                try:
                    loop.call_soon_threadsafe(_settle, [fut], DeviceError(reason))
                except RuntimeError:  # the loop has closed: nobody awaits it any more
                    pass


def _wake(batch: list[BatchSlot]) -> None:
    """Wake each hop's caller: set the events of blocking ones, one loop wake-up per loop."""
    loops: dict = {}
    for slot in batch:
        if slot._waiter is None:
            slot._done.set()
        else:
            loop, fut = slot._waiter
            loops.setdefault(loop, []).append(fut)
    for loop, futs in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, futs, None)
        except RuntimeError:  # the loop has closed: nobody awaits these any more
            pass


def _settle(futs: list, exc: BaseException | None) -> None:
    for fut in futs:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


class _Lane:
    """One inference request of a BatchedEngine and the thread that runs its ticks."""

    def __init__(self, engine: BatchedEngine, index: int) -> None:
        self.engine = engine
        self.request = engine.compiled.create_infer_request()
        self.busy = False  # a tick is running (or handed to the thread)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=f"edgeamp-batch-lane{index}", daemon=True)

    def _run(self) -> None:
        names = ["output"] + [name_out for _, name_out in self.engine._names]
        while True:
            job = self.jobs.get()
            while job is not None:
                _, batch, rows, inputs, waited = job
                t0 = time.perf_counter()
                try:
                    self.request.infer(inputs)
                    outputs = {name: self.request.get_tensor(name).data.copy() for name in names}
                except Exception as exc:  # the device failed this tick: its callers get the error
                    outputs = DeviceError(f"batched inference failed: {exc}")
                try:
                    job = self.engine._finish(self, batch, rows, outputs, waited, time.perf_counter() - t0)
                except Exception as exc:  # a fault of ours: fail the tick's callers rather than leave them waiting
                    log.exception("batched tick failed")
                    self.engine._abandon(self, batch, exc)
                    job = None
            if self.engine._closed and self.jobs.empty():
                return
