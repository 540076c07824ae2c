"""Batched inference for many streams of one model: one compiled ``batched`` IR, one inference per
tick for every stream that has a hop ready. Knows nothing of HTTP or sockets.

Each stream gets a :class:`BatchSlot`, which has the engine interface a :class:`Processor` takes
(``hop_samples``, ``reset()``, ``run_hop(audio, knobs)``), so hop buffering, knob ramps, NaN
handling and bypass stay the processor's, unchanged. A slot's LSTM state lives in its row of the
engine's state arrays; a tick gathers the rows of the slots with a hop ready into the batch,
runs it, and scatters outputs and new state back. ``run_hop`` blocks the calling thread until the
tick that carries its hop has run, so many threads (one per stream) feed one tick.

A tick runs when every active slot (one that submitted a hop within the last two hop durations)
has its hop in, or the batch is full, or the first hop has waited ``wait_ms``: a lone stream is
never delayed, and a stream that stalls holds the others back by at most ``wait_ms``. Ticks run
on ``lanes`` inference requests at once (one per core, one thread each): a tick that finds every
lane busy waits, and the hops that arrive meanwhile join it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .engines import compile_ir
from .errors import DeviceError
from .model import Architecture, state_name


class BatchSlot:
    """One stream's handle on a :class:`BatchedEngine` (the engine interface of a Processor)."""

    def __init__(self, engine: BatchedEngine, row: int) -> None:
        self.engine = engine
        self.row = row
        self.hop_samples = engine.hop_samples
        self._out = np.zeros(engine.hop_samples, np.float32)
        self._audio = np.zeros(engine.hop_samples, np.float32)  # the hop in flight, copied in (no allocation)
        self._knobs = np.zeros((engine.hop_samples, len(engine.arch.knobs)), np.float32)
        self._done = threading.Event()  # set by the lane that ran this slot's hop
        self.last_submit = 0.0

    def reset(self) -> None:
        self.engine.reset_row(self.row)

    def run_hop(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        return self.engine.submit(self, audio, knobs)

    def close(self) -> None:
        self.engine.release(self)


class BatchedEngine:
    """A compiled ``batched`` IR and the state rows of every stream on it.

    ``max_batch``: most hops in one inference. ``wait_ms``: longest a ready hop waits for others.
    ``compiled``: an already compiled model to use (tests and the service pass one).
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
        self._lanes = [_Lane(self, i) for i in range(max(1, lanes))]
        self._free_lanes = list(self._lanes)
        names = {n for port in self.compiled.inputs for n in port.get_names()}
        if "h_in0" not in names or self.compiled.input("audio").get_partial_shape()[0].is_static:
            raise DeviceError(f"{Path(xml_path).name} is not a batched IR (export the bundle with --variants batched)")
        capacity = 8
        self._state = [np.zeros((capacity, u), np.float32) for u in units]  # one array per state input
        self._free: list[int] = list(range(capacity))
        self._slots: set[BatchSlot] = set()
        self._pending: list[tuple[BatchSlot, np.ndarray, np.ndarray]] = []
        self._first_ready = 0.0
        self._cv = threading.Condition()
        self._closed = False
        self.batch_sizes: Counter = Counter()  # hops per inference -> count
        self.waits_s: list[float] = []  # how long the first hop of each tick waited (recent ticks)
        self.ticks = 0
        self.on_tick = on_tick  # called (batch size, seconds the first hop waited) after each tick
        self._thread = threading.Thread(target=self._loop, name="edgeamp-batch", daemon=True)
        self._thread.start()
        for lane in self._lanes:
            lane.thread.start()

    def set_rate(self, sample_rate: int) -> None:
        self.hop_s = self.hop_samples / sample_rate

    # ---- slots ----------------------------------------------------------------------------
    def slot(self) -> BatchSlot:
        """A new stream: a free state row (at the start state), growing the state arrays when full."""
        with self._cv:
            if not self._free:
                old = self._state[0].shape[0]
                self._state = [np.concatenate([a, np.zeros_like(a)]) for a in self._state]
                self._free = list(range(old, 2 * old))
            row = self._free.pop(0)
            slot = BatchSlot(self, row)
            self._slots.add(slot)
        self.reset_row(row)
        return slot

    def release(self, slot: BatchSlot) -> None:
        with self._cv:
            if slot in self._slots:
                self._slots.discard(slot)
                self._free.append(slot.row)
                self._cv.notify_all()  # the batch may now be complete without it

    def reset_row(self, row: int) -> None:
        with self._cv:
            for a, start in zip(self._state, self._start):
                a[row] = start

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(5)
        for lane in self._lanes:
            lane.jobs.put(None)
            lane.thread.join(5)

    # ---- ticks ----------------------------------------------------------------------------
    def submit(self, slot: BatchSlot, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        with self._cv:
            if self._closed:
                raise DeviceError("the batched engine is closed")
            if not self._pending:
                self._first_ready = time.perf_counter()
            slot._done.clear()
            slot.last_submit = time.perf_counter()
            np.copyto(slot._audio, audio)
            np.copyto(slot._knobs, knobs.reshape(slot._knobs.shape))
            self._pending.append((slot, slot._audio, slot._knobs))
            self._cv.notify()  # only the scheduler waits on the condition: no thundering herd
        while not slot._done.wait(1.0):
            if self._closed:
                raise DeviceError("the batched engine closed while a hop waited")
        return slot._out

    def _expected(self, now: float) -> int:
        """Hops a tick waits for: every slot active within the last two hop durations."""
        recent = sum(1 for s in self._slots if now - s.last_submit < 2 * self.hop_s)
        return max(1, min(self.max_batch, recent))

    def _loop(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._closed:
                        return
                    now = time.perf_counter()
                    if self._pending and self._free_lanes:
                        waited = now - self._first_ready
                        if len(self._pending) >= self._expected(now) or waited >= self.wait_s:
                            break
                        self._cv.wait(self.wait_s - waited)
                    else:
                        self._cv.wait()
                waited = time.perf_counter() - self._first_ready
                self.waits_s.append(waited)
                batch = self._pending[: self.max_batch]
                self._pending = self._pending[self.max_batch :]
                if self._pending:
                    self._first_ready = time.perf_counter()
                rows = np.array([slot.row for slot, _, _ in batch])
                inputs = self._gather(batch, rows)
                lane = self._free_lanes.pop()
            lane.jobs.put((batch, rows, inputs, waited))  # inferred outside the lock: slots join, leave, reset

    def _finish(self, lane: _Lane, batch, rows, outputs: dict, waited: float) -> None:
        if self.on_tick is not None:
            self.on_tick(len(batch), waited)
        with self._cv:
            self._scatter(batch, rows, outputs)
            self.ticks += 1
            self.batch_sizes[len(batch)] += 1
            if len(self.waits_s) > 4096:
                del self.waits_s[:2048]
            self._free_lanes.append(lane)
            self._cv.notify_all()

    def _gather(self, batch, rows) -> dict:
        inputs = {"audio": np.stack([a for _, a, _ in batch]).astype(np.float32, copy=False)}
        if self.arch.knobs:
            inputs["knobs"] = np.stack([k for _, _, k in batch]).astype(np.float32, copy=False)
        for (name_in, _), a in zip(self._names, self._state):
            inputs[name_in] = a[rows] if name_in == "fir_in" else a[rows][:, None, :]
        return inputs

    def _scatter(self, batch, rows, outputs: dict) -> None:
        for (_, name_out), a in zip(self._names, self._state):
            out = outputs[name_out]
            a[rows] = out if out.ndim == 2 else out[:, 0, :]
        for j, (slot, _, _) in enumerate(batch):
            slot._out[:] = outputs["output"][j]
            slot._done.set()


class _Lane:
    """One inference request of a BatchedEngine and the thread that runs its ticks."""

    def __init__(self, engine: BatchedEngine, index: int) -> None:
        import queue

        self.engine = engine
        self.request = engine.compiled.create_infer_request()
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"edgeamp-batch-lane{index}", daemon=True)

    def _run(self) -> None:
        names = [name_out for _, name_out in self.engine._names]
        while True:
            job = self.jobs.get()
            if job is None:
                return
            batch, rows, inputs, waited = job
            self.request.infer(inputs)
            outputs = {"output": self.request.get_tensor("output").data.copy()}
            for name in names:
                outputs[name] = self.request.get_tensor(name).data.copy()
            self.engine._finish(self, batch, rows, outputs, waited)
