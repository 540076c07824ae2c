"""A local duplex sound-card stream through the service's model, on its own thread."""

from __future__ import annotations

import logging
import threading

from .metrics import Metrics
from .model import Model

log = logging.getLogger(__name__)


class LocalAudio:
    """A duplex sounddevice stream through the same model, run on its own thread."""

    def __init__(self, model: Model, metrics: Metrics, *, input_device=None, output_device=None,
                 host_api: str | None = None) -> None:
        from ..live import LiveEngine

        proc = model.factory.new(aligned=True)
        self.names = {id(proc): model.bundle.path.name}  # for the hop counters' model label
        self.engine = LiveEngine(proc, proc.hop_samples)
        self.metrics = metrics
        self.devices = (input_device, output_device, host_api)
        self.stop = threading.Event()
        self.error: str | None = None
        self.summary: dict | None = None
        self._xruns = self._hops = 0
        self._counted = proc  # the processor whose hops self._hops counts
        self.thread = threading.Thread(target=self._run, name="edgeamp-local-audio", daemon=True)

    def _tick(self) -> bool:
        stats = self.engine.stats
        if stats.xruns > self._xruns:
            self.metrics.xruns.inc(stats.xruns - self._xruns)
            self._xruns = stats.xruns
        proc = self.engine.proc
        if proc is not self._counted:  # a hot swap took effect on the audio thread
            self._counted, self._hops = proc, 0
        self._hops = self.metrics.observe_hops(proc, self._hops, "local", self.names.get(id(proc), ""))
        return not self.stop.is_set()

    def _run(self) -> None:
        from ..live import run_live

        ind, outd, api = self.devices
        try:
            self.summary = run_live(self.engine, input_device=ind, output_device=outd, host_api=api,
                                    on_tick=self._tick, tick_seconds=0.25)
        except Exception as exc:  # reported on /readyz and in the log; the network side keeps running
            self.error = f"local audio stopped: {exc}"
            log.error("%s", self.error)

    def swap(self, model: Model) -> None:
        old = self.engine.proc
        proc = model.factory.new(aligned=True)
        self.names[id(proc)] = model.bundle.path.name
        proc.prepare(old.knob_values(), bypass=old.bypass)
        self.engine.swap(proc)

    def info(self) -> dict:
        s = self.engine.summary()
        s.update(stream="local", running=self.thread.is_alive(), error=self.error,
                 knobs=self.engine.proc.knob_values(), bypass=self.engine.proc.bypass)
        return s
