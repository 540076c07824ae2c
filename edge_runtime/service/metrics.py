"""The service's Prometheus metrics."""

from __future__ import annotations

import logging

import numpy as np

from ..processor import Processor

log = logging.getLogger(__name__)


HOP_BUCKETS = (0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.05)
BLOCK_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25)


# every label value a series can take, created at start: a ratio over a counter that has not
# counted yet shows 0, not "No data"
REFUSED_REASONS = ("max_streams", "pending_handshakes", "draining", "handshake", "origin", "host", "auth", "idle")
BAD_FRAME_REASONS = ("size", "nonfinite", "control", "protocol", "not_reading")
SOURCES = ("network", "local")


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (with the process and Python
    collectors: CPU, memory, file descriptors, GC). No ``*_created`` series."""

    def __init__(self, multiprocess_folder=None) -> None:
        """``multiprocess_folder``: a supervisor's folder (``edgeamp serve --processes N``): the values
        live in prometheus-client's multiprocess files (its ``metrics/``, PROMETHEUS_MULTIPROC_DIR),
        and the registry collects every worker's (counters summed, live gauges summed or the
        largest), with each live worker's process series labelled ``worker``."""
        import prometheus_client
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            PlatformCollector,
            ProcessCollector,
        )

        from edgeamp.core import version

        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_folder is not None
        if self.multiprocess:
            from prometheus_client import multiprocess

            from .workers import WorkerProcessCollector

            multiprocess.MultiProcessCollector(self.registry)
            self.registry.register(WorkerProcessCollector(multiprocess_folder))
            r = None  # the values go to this process's files; the registry reads everyone's
        else:
            r = self.registry
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.build = Gauge("edgeamp_build_info", "edgeamp's version (the value is 1)", ["version"], registry=r,
                           multiprocess_mode="livemax")
        self.build.labels(version()).set(1)
        self.model = Gauge("edgeamp_model_info", "The model new streams get (1; 0 for a model swapped out, with "
                           "--processes)", ["model", "model_version", "architecture", "device"], registry=r,
                           multiprocess_mode="livemax")
        self._model_labels: tuple | None = None
        self._children: dict[tuple[str, str], tuple] = {}  # (source, model) -> its labelled series
        self.active = Gauge("edgeamp_active_streams", "Connected network streams", registry=r,
                            multiprocess_mode="livesum")
        self.streams = Counter("edgeamp_streams", "Network streams accepted", registry=r)
        self.refused = Counter("edgeamp_refused_streams", "Streams refused, by reason", ["reason"], registry=r)
        self.hops = Counter("edgeamp_hops", "Hops processed, by source and model", ["source", "model"], registry=r)
        self.hop_seconds = Histogram("edgeamp_hop_compute_seconds", "Model compute time per hop", ["source"],
                                     buckets=HOP_BUCKETS, registry=r)
        self.late_hops = Counter("edgeamp_late_hops", "Hops whose compute took longer than the hop",
                                 ["source", "model"], registry=r)
        self.block_seconds = Histogram("edgeamp_block_seconds",
                                       "Service time per network frame, from received to sent (queueing included)",
                                       buckets=BLOCK_BUCKETS, registry=r)
        self.bad_frames = Counter("edgeamp_bad_frames", "Frames or messages refused or repaired, by reason",
                                  ["reason"], registry=r)
        self.xruns = Counter("edgeamp_xruns", "Local audio over/underruns", registry=r)
        self.swaps = Counter("edgeamp_model_swaps", "Hot swaps of the bundle", registry=r)
        self.throttled = Counter("edgeamp_throttled_seconds", "Time streams were held back by the rate limit",
                                 registry=r)
        self.batch_size = Histogram("edgeamp_batch_size", "Hops per batched inference", registry=r,
                                    buckets=(1, 2, 4, 8, 12, 16, 24, 32, 64))
        self.batch_wait = Histogram("edgeamp_batch_wait_seconds", "How long the first hop of a batch waited for "
                                    "the others", buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01),
                                    registry=r)
        for reason in REFUSED_REASONS:
            self.refused.labels(reason)
        for reason in BAD_FRAME_REASONS:
            self.bad_frames.labels(reason)
        for source in SOURCES:
            self.hop_seconds.labels(source)

    def set_model(self, model) -> None:
        """The model new streams get (at start and after each /swap): its info series, and zeroed
        hop counters under its name."""
        labels = (model.bundle.path.name, str(model.version), model.arch.describe()[:120], model.factory.device)
        if self._model_labels is not None and self._model_labels != labels:
            if self.multiprocess:  # a multiprocess file keeps every series it wrote: the old one reads 0
                self.model.labels(*self._model_labels).set(0)
            else:
                self.model.remove(*self._model_labels)
        self.model.labels(*labels).set(1)
        self._model_labels = labels
        for source in SOURCES:
            self.hops.labels(source, labels[0])
            self.late_hops.labels(source, labels[0])

    def observe_batch(self, size: int, waited_s: float) -> None:
        self.batch_size.observe(size)
        self.batch_wait.observe(waited_s)

    def observe_hops(self, proc: Processor, hops_seen: int, source: str, model: str = "") -> int:
        """Count the hops ``proc`` ran since ``hops_seen``; returns the new count. Called once per
        network frame: the labelled children are looked up once (a labels() call costs more than
        the observation), and a frame of one hop reads its one time without numpy."""
        children = self._children.get((source, model))
        if children is None:
            children = self._children[(source, model)] = (
                self.hop_seconds.labels(source), self.hops.labels(source, model), self.late_hops.labels(source, model))
        histogram, hops, late_hops = children
        n = proc.stats.hops - hops_seen
        if n == 1:
            t = proc.last_hop_ns() / 1e9
            histogram.observe(t)
            late = int(t > proc.hop_seconds)
        else:
            times = proc.hop_times_since(hops_seen)
            for t in times:
                histogram.observe(t / 1000.0)
            late = int(np.count_nonzero(times > proc.hop_seconds * 1000.0))
        if n > 0:
            hops.inc(n)
        if late:
            late_hops.inc(late)
        return proc.stats.hops

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
