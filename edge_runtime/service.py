"""The headless streaming service: audio over WebSocket, control and metrics over HTTP (aiohttp).

Protocol (one WebSocket per stream, at ``/stream``):

1. The client's first message is JSON text::

       {"sample_rate": 48000, "format": "float32", "block_size": 480, "knobs": {"gain": 7}}

   ``format`` is ``float32`` or ``int16`` (little-endian PCM), ``block_size`` the samples per
   frame (default: the model's hop), ``knobs`` and ``bypass`` optional. The service answers
   ``{"type": "ready", "stream": ID, "latency_samples": L, ...}`` or ``{"type": "error",
   "reason": ...}`` followed by a close (1003 unsupported, 1008 policy).
2. Then binary frames of exactly ``block_size`` samples in; one processed frame of the same
   size and format comes back for each, in order. The output is the model's output delayed
   by ``latency_samples`` (0 when ``block_size`` is a multiple of the hop).
3. Text messages mid-stream: ``{"type": "knobs", "knobs": {...}}``, ``{"type": "reset"}``,
   ``{"type": "bypass", "on": true}``, ``{"type": "stats"}``. The service may send text too:
   ``warning`` (a frame held NaN/Inf, zeroed), ``swapped`` (a new model took over the stream),
   ``error``.

A frame of the wrong size closes the stream with 1007 and the reason (frames are the clock:
guessing would shift everything after). Nothing a client sends touches another stream: each
has its own processor (own InferRequest and state) and its own lock.

HTTP: ``/healthz``, ``/readyz``, ``GET /model``, ``GET /streams``, ``POST /knobs``,
``POST /reset``, ``POST /bypass``, ``POST /swap`` (hot swap: streams move to the new model at
their next frame, none is dropped), ``/metrics`` (Prometheus). With a token, every path but
the health checks needs ``Authorization: Bearer TOKEN`` (or ``?token=`` for WebSocket clients
that cannot set headers).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle import json_safe, read_bundle
from .errors import ConfigError, EdgeampError, InputError
from .processor import Processor
from .session import ProcessorFactory, RuntimeOptions
from .wire import FORMATS, decode_into, encode

log = logging.getLogger(__name__)

HANDSHAKE_KEYS = {"sample_rate", "format", "block_size", "knobs", "bypass"}
HOP_BUCKETS = (0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.05)
BLOCK_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25)
# WebSocket close codes (RFC 6455)
GOING_AWAY, UNSUPPORTED, BAD_PAYLOAD, POLICY = 1001, 1003, 1007, 1008


@dataclass(frozen=True)
class Limits:
    max_streams: int = 32
    max_block: int = 48000  # samples per frame
    max_realtime: float = 50.0  # a stream is throttled beyond this many times real time
    handshake_seconds: float = 5.0  # a connection that never sends its handshake frees its slot then
    idle_seconds: float = 60.0  # an accepted stream that sends nothing for this long is closed
    send_seconds: float = 5.0  # a client that takes no data for this long is cut off (it does not read)
    drain_seconds: float = 5.0  # SIGTERM: streams get this long to take their close, then are cut off


# frames are computed in slices of at most this many hops, each its own job on the worker pool, so
# that a stream sending a second of audio per frame cannot hold a real-time stream's hop back
# longer than one slice (the pool's queue is first in, first out)
SLICE_HOPS = 4
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host} exposes the service beyond this machine: give a token (--token or EDGEAMP_TOKEN) "
            "that clients must send"
        )


class PriorityPool:
    """Worker threads that take real-time work first: jobs of priority 0 (streams at about real
    time) always run before jobs of priority 1 (streams sending in bulk, faster than real time);
    within a priority, first come first served. With frames cut into slices, a real-time hop
    waits at most for the slices already running."""

    REALTIME, BULK = 0, 1

    def __init__(self, workers: int, name: str = "edgeamp-hop") -> None:
        import queue

        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            fn, args, fut, loop = job
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, fut, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, fut, result, None)

    def run(self, priority: int, fn, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((priority, next(self._seq), (fn, args, fut, loop)))
        return fut

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put((2, next(self._seq), None))
        for t in self._threads:
            t.join()


def _settle(fut: asyncio.Future, result, exc) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.active = Gauge("edgeamp_active_streams", "Connected network streams", registry=r)
        self.streams = Counter("edgeamp_streams", "Network streams accepted", registry=r)
        self.refused = Counter("edgeamp_refused_streams", "Streams refused, by reason", ["reason"], registry=r)
        self.hops = Counter("edgeamp_hops", "Hops processed", ["source"], registry=r)
        self.hop_seconds = Histogram("edgeamp_hop_compute_seconds", "Model compute time per hop",
                                     buckets=HOP_BUCKETS, registry=r)
        self.late_hops = Counter("edgeamp_late_hops", "Hops whose compute took longer than the hop",
                                 ["source"], registry=r)
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

    def observe_batch(self, size: int, waited_s: float) -> None:
        self.batch_size.observe(size)
        self.batch_wait.observe(waited_s)

    def observe_hops(self, proc: Processor, hops_seen: int, source: str) -> int:
        times = proc.hop_times_since(hops_seen)
        for t in times:
            self.hop_seconds.observe(t / 1000.0)
        late = int(np.count_nonzero(times > proc.hop_seconds * 1000.0))
        self.hops.labels(source).inc(proc.stats.hops - hops_seen)
        if late:
            self.late_hops.labels(source).inc(late)
        return proc.stats.hops

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Model:
    """One loaded bundle: its processor factory and what clients are told about it."""

    _versions = itertools.count(1)

    def __init__(self, path: Path | str, options: RuntimeOptions, batch: dict | None = None) -> None:
        bundle = read_bundle(path)
        self.factory = ProcessorFactory(bundle, options)
        self.bundle = bundle
        self.version = next(self._versions)
        self.sample_rate = bundle.manifest.sample_rate
        self.arch = bundle.manifest.architecture
        self.batched = None  # a BatchedEngine serving every stream of this model, when batching
        if batch is not None:
            try:
                self.batched = self.factory.batched_engine(**batch)
            except EdgeampError as exc:
                log.warning("%s: streams run unbatched (%s)", bundle.path.name, exc)

    def new_processor(self, aligned: bool) -> tuple[Processor, object]:
        """A processor for one stream and its batch slot (None when unbatched)."""
        if self.batched is None:
            return self.factory.new(aligned=aligned), None
        slot = self.batched.slot()
        return self.factory.new(aligned=aligned, engine=slot), slot

    def info(self) -> dict:
        m = self.bundle.manifest
        return {
            "bundle": str(self.bundle.path),
            "version": self.version,
            "sample_rate": m.sample_rate,
            "hop_samples": self.factory.hop_samples,
            "mode": self.factory.mode,
            "device": self.factory.device,
            "architecture": {"lstm_units": list(self.arch.lstm_units), "head": self.arch.head, "skip": self.arch.skip},
            "knobs": [{"name": k.name, "minimum": k.minimum, "maximum": k.maximum, "default": k.default}
                      for k in self.arch.knobs],
            "metrics": m.metrics,
            "batching": (f"batched: up to {self.batched.max_batch} hops per inference, {len(self.batched._lanes)} "
                         f"lane(s), wait {1000 * self.batched.wait_s:g} ms" if self.batched else "unbatched"),
        }

    def check_knobs(self, knobs) -> dict[str, float]:
        """Validated knob values (names and ranges), or InputError naming the problem."""
        if not isinstance(knobs, dict):
            raise InputError(f"knobs must be an object of name: value, got {type(knobs).__name__}")
        by_name = {k.name: k for k in self.arch.knobs}
        out = {}
        for name, value in knobs.items():
            if name not in by_name:
                raise InputError(f"unknown knob {name!r}; this model has: {', '.join(by_name) or 'no knobs'}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"knob {name!r} takes a number, got {str(value)[:40]!r}")
            if isinstance(value, int) and abs(value) > 1e15:
                raise InputError(f"knob {name!r}: {str(value)[:20]}... is far outside its range")
            try:
                by_name[name].normalise(float(value))
            except ConfigError as exc:
                raise InputError(str(exc)) from exc
            out[name] = float(value)
        return out


@dataclass
class Handshake:
    sample_rate: int
    format: str
    block_size: int
    knobs: dict[str, float] = field(default_factory=dict)
    bypass: bool = False

    @classmethod
    def parse(cls, text: str, model: Model, limits: Limits) -> Handshake:
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"handshake is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise InputError("handshake is nested too deeply") from exc
        if not isinstance(msg, dict):
            raise InputError("handshake must be a JSON object")
        unknown = set(msg) - HANDSHAKE_KEYS
        if unknown:
            raise InputError(f"unknown handshake key(s) {sorted(unknown)}; known: {sorted(HANDSHAKE_KEYS)}")
        rate = msg.get("sample_rate")
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise InputError("handshake needs sample_rate (an integer, in Hz)")
        if rate != model.sample_rate:
            raise InputError(f"sample rate {rate} Hz does not match the model's {model.sample_rate} Hz; resample "
                             "on the client (edgeamp stream --resample does)")
        fmt = msg.get("format", "float32")
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise InputError(f"format {fmt!r} not supported; choose float32 or int16 (little-endian)")
        block = msg.get("block_size", model.factory.hop_samples)
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= limits.max_block:
            raise InputError(f"block_size must be an integer from 1 to {limits.max_block}, got {block!r}")
        bypass = msg.get("bypass", False)
        if not isinstance(bypass, bool):
            raise InputError(f"bypass must be true or false, got {bypass!r}")
        return cls(rate, fmt, block, model.check_knobs(msg.get("knobs", {})), bypass)


class Stream:
    """One network stream: its processor, format conversion buffers and counters."""

    def __init__(self, sid: str, hs: Handshake, model: Model, peer: str) -> None:
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
        self._x = np.zeros(hs.block_size, np.float32)
        self._y = np.zeros(hs.block_size, np.float32)
        self.bind(model, hs.knobs)
        self.proc.bypass = hs.bypass

    def bind(self, model: Model, knobs: dict[str, float]) -> list[str]:
        """Open a processor on ``model``; knobs it lacks or cannot take are dropped (returned)."""
        aligned = self.hs.block_size % model.factory.hop_samples == 0
        proc, slot = model.new_processor(aligned)
        self.release()
        self.slot = slot
        dropped = []
        for name, value in knobs.items():
            try:
                proc.set_knob(name, value)
            except EdgeampError:
                dropped.append(name)
        proc.reset()  # start at the handshake's knob values, no ramp
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
        """Compute samples ``lo:hi`` of the loaded frame (worker thread)."""
        self.proc.process(self._x[lo:hi], self._y[lo:hi])

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
        }


class LocalAudio:
    """A duplex sounddevice stream through the same model, run on its own thread."""

    def __init__(self, model: Model, metrics: Metrics, *, input_device=None, output_device=None,
                 host_api: str | None = None) -> None:
        from .live import LiveEngine

        proc = model.factory.new(aligned=True)
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
        self._hops = self.metrics.observe_hops(proc, self._hops, "local")
        return not self.stop.is_set()

    def _run(self) -> None:
        from .live import run_live

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
        for name, value in old.knob_values().items():
            try:
                proc.set_knob(name, value)
            except EdgeampError:
                pass
        proc.reset()
        proc.bypass = old.bypass
        self.engine.swap(proc)

    def info(self) -> dict:
        s = self.engine.summary()
        s.update(stream="local", running=self.thread.is_alive(), error=self.error,
                 knobs=self.engine.proc.knob_values(), bypass=self.engine.proc.bypass)
        return s


class Service:
    def __init__(self, bundle: Path | str, *, options: RuntimeOptions | None = None, limits: Limits = Limits(),
                 token: str | None = None, workers: int = 2, audio: dict | None = None,
                 models_dir: Path | str | None = None, allow_origins: tuple[str, ...] = (),
                 batch: dict | None = None) -> None:
        self.options = (options or RuntimeOptions()).replace(num_streams=workers)
        self.limits = limits
        self.token = token
        # /swap loads bundles from here only (default: the folder holding the served bundle)
        self.models_dir = Path(models_dir or Path(bundle).resolve().parent).resolve()
        self.allow_origins = {o.rstrip("/").lower() for o in allow_origins}
        self.host = "127.0.0.1"
        self.workers = workers
        # batching: one BatchedEngine per model, `workers` inference lanes; each stream's frame waits
        # on its tick in a thread of its own, so the pool has a thread per stream
        self.metrics = Metrics()
        self.batch = None if batch is None else {"lanes": 1, **batch, "on_tick": self.metrics.observe_batch}
        self.model = Model(bundle, self.options, self.batch)
        self.default_knobs: dict[str, float] = {}
        self.streams: dict[str, Stream] = {}
        self._ids = itertools.count(1)
        self.pool = PriorityPool(workers if self.model.batched is None else max(workers, limits.max_streams))
        self.draining = False
        self._sockets: dict[str, object] = {}
        self._handshaking = 0
        self.accepted = 0  # streams accepted since start
        self.local = LocalAudio(self.model, self.metrics, **audio) if audio is not None else None

    # ---- application ---------------------------------------------------------------------
    def app(self):
        from aiohttp import web

        app = web.Application(middlewares=[self._same_origin, self._auth], client_max_size=64 * 1024)
        app.add_routes([
            web.get("/healthz", self._health),
            web.get("/readyz", self._ready),
            web.get("/model", self._model_info),
            web.get("/streams", self._streams),
            web.post("/knobs", self._knobs),
            web.post("/reset", self._reset),
            web.post("/bypass", self._bypass),
            web.post("/swap", self._swap),
            web.get("/metrics", self._metrics),
            web.get("/stream", self._stream),
        ])
        return app

    def _json(self, data, status: int = 200):
        from aiohttp import web

        return web.json_response(json_safe(data), status=status)

    def _error(self, status: int, reason: str):
        return self._json({"error": reason}, status)

    @property
    def _same_origin(self):
        """Cross-site requests are refused: a web page the user opens must not reach a service on
        their machine. A browser sends ``Origin`` (refused unless in --allow-origin); a DNS-rebinding
        page reaches a loopback service under another ``Host`` (refused); a form or ``text/plain``
        POST cannot carry ``application/json`` without a CORS preflight, so control requests need it."""
        from aiohttp import web

        @web.middleware
        async def same_origin(request, handler):
            origin = request.headers.get("Origin")
            if origin is not None and origin.rstrip("/").lower() not in self.allow_origins:
                self.metrics.refused.labels("origin").inc()
                return self._error(403, f"cross-origin request from {origin[:100]!r} refused; a browser page "
                                        "may reach this service only from an origin given with --allow-origin")
            if is_loopback(self.host) and (request.url.host or "").lower() not in LOOPBACK_NAMES:
                self.metrics.refused.labels("host").inc()
                return self._error(403, "this service listens on loopback: the Host header must name this "
                                        "machine (localhost, 127.0.0.1 or ::1)")
            if request.method == "POST" and request.content_type != "application/json":
                return self._error(415, "control requests take a JSON body: send Content-Type: application/json")
            return await handler(request)

        return same_origin

    @property
    def _auth(self):
        from aiohttp import web

        @web.middleware
        async def auth(request, handler):
            if self.token and request.path not in ("/healthz", "/readyz"):
                header = request.headers.get("Authorization", "")
                given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
                if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode()):
                    self.metrics.refused.labels("auth").inc()
                    return self._error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                            "(or ?token= on the WebSocket URL)")
            return await handler(request)

        return auth

    # ---- HTTP: health, info, metrics -------------------------------------------------------
    async def _health(self, request):
        return self._json({"status": "ok"})

    async def _ready(self, request):
        problems = []
        if self.draining:
            problems.append("draining (shutting down)")
        if self.local is not None and self.local.error:
            problems.append(self.local.error)
        if problems:
            return self._json({"ready": False, "reasons": problems}, 503)
        return self._json({"ready": True, "model_version": self.model.version, "streams": len(self.streams)})

    async def _model_info(self, request):
        return self._json(self.model.info())

    async def _streams(self, request):
        streams = [s.info() for s in self.streams.values()]
        if self.local is not None:
            streams.append(self.local.info())
        return self._json({"streams": streams})

    async def _metrics(self, request):
        from aiohttp import web

        body, ctype = self.metrics.text()
        return web.Response(body=body, headers={"Content-Type": ctype})

    # ---- HTTP: control ----------------------------------------------------------------------
    async def _body(self, request) -> dict:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise InputError(f"request body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise InputError("request body is nested too deeply") from exc
        if not isinstance(body, dict):
            raise InputError("request body must be a JSON object")
        return body

    def _targets(self, body: dict) -> list:
        """The streams a control request applies to: one (``"stream": ID``, ``"local"``) or all."""
        sid = body.get("stream")
        if sid is not None and not isinstance(sid, str):
            raise InputError(f"stream must be a stream id (a string, see GET /streams), got {type(sid).__name__}")
        if sid is None:
            return [*self.streams.values(), *([self.local] if self.local else [])]
        if sid == "local" and self.local is not None:
            return [self.local]
        if sid in self.streams:
            return [self.streams[sid]]
        raise InputError(f"no stream {sid!r}; GET /streams lists them")

    async def _apply(self, targets: list, op) -> tuple[list[str], dict[str, str]]:
        """Run ``op(processor)`` on each target between frames (network) or callbacks (local);
        returns the ids done and, by id, why a target refused (a stream still on a swapped-out model)."""
        done, refused = [], {}
        for t in targets:
            if isinstance(t, LocalAudio):
                t.engine.pending.append(op)
                done.append("local")
                continue
            async with t.lock:
                try:
                    op(t.proc)
                except EdgeampError as exc:
                    refused[t.id] = str(exc)
                    continue
            done.append(t.id)
        return done, refused

    async def _control(self, request, make_op):
        try:
            body = await self._body(request)
            op, extra = make_op(body)
            targets = self._targets(body)
        except InputError as exc:
            return self._error(400, str(exc))
        done, refused = await self._apply(targets, op)
        return self._json({"applied_to": done, **({"refused": refused} if refused else {}), **extra})

    async def _knobs(self, request):
        def make(body):
            knobs = self.model.check_knobs(body.get("knobs"))
            if body.get("stream") is None:
                self.default_knobs.update(knobs)  # streams that connect later start here too

            def op(proc):
                for name, value in knobs.items():
                    proc.set_knob(name, value)
            return op, {"knobs": knobs}
        return await self._control(request, make)

    async def _reset(self, request):
        return await self._control(request, lambda body: (Processor.reset, {}))

    async def _bypass(self, request):
        def make(body):
            on = body.get("on")
            if not isinstance(on, bool):
                raise InputError('bypass needs {"on": true} or {"on": false}')

            def op(proc):
                proc.bypass = on
            return op, {"bypass": on}
        return await self._control(request, make)

    async def _swap(self, request):
        try:
            body = await self._body(request)
            name = body.get("bundle")
            if not isinstance(name, str) or not name:
                raise InputError('swap needs {"bundle": "NAME"}: a bundle inside the models directory')
            path = self._model_path(name)
        except InputError as exc:
            return self._error(400, str(exc))
        loop = asyncio.get_running_loop()
        try:  # load and compile off the event loop; streams keep running on the old model meanwhile
            new = await loop.run_in_executor(None, Model, path, self.options, self.batch)
        except EdgeampError as exc:
            return self._error(400, f"cannot load {path}: {exc}")
        if new.sample_rate != self.model.sample_rate:
            return self._error(409, f"{path} runs at {new.sample_rate} Hz; connected streams run at "
                                    f"{self.model.sample_rate} Hz (restart the service to change rate)")
        old = self.model
        self.model = new
        self.metrics.swaps.inc()
        if self.local is not None:
            self.local.swap(new)
        log.info("hot swap: %s (v%d) -> %s (v%d)", old.bundle.path, old.version, new.bundle.path, new.version)
        return self._json({"swapped": True, "from_version": old.version, "model": new.info()})

    def _model_path(self, name: str) -> Path:
        """A bundle inside ``models_dir`` (a name, or a path that resolves inside it). Anything else is
        refused with the same words whether or not it exists: /swap is no way to probe the disk."""
        candidate = Path(name) if Path(name).is_absolute() else self.models_dir / name
        resolved = candidate.resolve()
        if self.models_dir not in resolved.parents:
            raise InputError(f"/swap loads bundles from the models directory only ({self.models_dir.name}/, "
                             "set with --models-dir): give a bundle name inside it")
        return resolved

    # ---- WebSocket streams ----------------------------------------------------------------
    async def _refuse(self, ws, code: int, reason: str, metric: str) -> None:
        self.metrics.refused.labels(metric).inc()
        await ws.send_json({"type": "error", "reason": reason})
        await ws.close(code=code, message=reason[:120].encode())

    async def _stream(self, request):
        from aiohttp import WSMsgType, web

        if self.draining:
            self.metrics.refused.labels("draining").inc()
            return self._error(503, "the service is shutting down")
        if len(self.streams) + self._handshaking >= self.limits.max_streams:
            self.metrics.refused.labels("max_streams").inc()
            return self._error(503, f"stream limit reached ({self.limits.max_streams}); try later")
        ws = web.WebSocketResponse(max_msg_size=self.limits.max_block * 4 + 4096,
                                   receive_timeout=self.limits.idle_seconds, timeout=self.limits.drain_seconds)
        await ws.prepare(request)
        self._handshaking += 1
        try:
            msg = await ws.receive(timeout=self.limits.handshake_seconds)
        except asyncio.TimeoutError:
            await self._refuse(ws, POLICY, f"no handshake within {self.limits.handshake_seconds:g} s", "handshake")
            return ws
        finally:
            self._handshaking -= 1
        if msg.type != WSMsgType.TEXT:
            await self._refuse(ws, UNSUPPORTED, "the first message must be the JSON handshake (text), e.g. "
                                                '{"sample_rate": 48000, "format": "float32", "block_size": 480}',
                               "handshake")
            return ws
        model = self.model
        try:
            hs = Handshake.parse(msg.data, model, self.limits)
        except InputError as exc:
            await self._refuse(ws, UNSUPPORTED, str(exc), "handshake")
            return ws
        sid = f"s{next(self._ids)}"
        stream = Stream(sid, hs, model, request.remote or "?")
        stream.transport = request.transport
        for name, value in self.default_knobs.items():
            if name not in hs.knobs:
                try:
                    stream.proc.set_knob(name, value)
                except EdgeampError:  # set for a model swapped out since
                    pass
        stream.proc.reset()
        self.streams[sid] = stream
        self._sockets[sid] = ws
        self.accepted += 1
        self.metrics.streams.inc()
        self.metrics.active.inc()
        log.info("stream %s from %s: %s, %d-sample frames", sid, stream.peer, hs.format, hs.block_size)
        try:
            await self._send(ws, stream, {"type": "ready", "stream": sid,
                                          "latency_samples": stream.proc.latency_samples,
                                          "hop_samples": stream.proc.hop_samples, "block_size": hs.block_size,
                                          "format": hs.format, "knobs": stream.proc.knob_values(),
                                          "model": model.info()})
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._frame(ws, stream, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self._message(ws, stream, msg.data)
                if stream.closing or ws.closed:
                    break
        except ConnectionResetError:  # the client went away mid-frame: its stream ends, nothing else
            log.info("stream %s: client disconnected", sid)
        except asyncio.TimeoutError:  # receive_timeout: nothing from the client for idle_seconds
            self.metrics.refused.labels("idle").inc()
            await self._close(ws, stream, POLICY, f"idle for {self.limits.idle_seconds:g} s")
        else:
            if ws.exception() is not None:  # e.g. a frame over the size limit (aiohttp closed with 1009)
                self.metrics.bad_frames.labels("protocol").inc()
                log.info("stream %s: %s", sid, ws.exception())
        finally:
            stream.release()
            self._retire(stream.model)
            self.streams.pop(sid, None)
            self._sockets.pop(sid, None)
            self.metrics.active.dec()
            log.info("stream %s closed after %d frames", sid, stream.frames)
        return ws

    async def _throttle(self, stream: Stream, n: int) -> None:
        """Hold a stream back to ``max_realtime`` times real time (one second of burst allowed)."""
        rate = self.limits.max_realtime * stream.model.sample_rate
        ahead = (stream.samples_in + n) / rate - (time.monotonic() - stream.started) - 1.0
        if ahead > 0:
            self.metrics.throttled.inc(ahead)
            await asyncio.sleep(ahead)

    async def _send(self, ws, stream: Stream, message) -> bool:
        """Send bytes or a JSON-able dict within ``send_seconds``; a client that takes nothing for
        that long does not read: its connection is cut (counted), and nothing else waits for it."""
        async with stream.send_lock:
            if stream.closing and isinstance(message, bytes) and ws.closed:
                return False
            try:
                coro = ws.send_bytes(message) if isinstance(message, bytes) else ws.send_json(json_safe(message))
                await asyncio.wait_for(coro, self.limits.send_seconds)
                return True
            except asyncio.TimeoutError:
                self.metrics.bad_frames.labels("not_reading").inc()
                log.info("stream %s: the client took nothing for %g s; cutting it off", stream.id,
                         self.limits.send_seconds)
            except (ConnectionResetError, RuntimeError):  # gone already (aiohttp: RuntimeError on a closing socket)
                pass
            stream.closing = True
            if stream.transport is not None:
                stream.transport.abort()
            return False

    async def _frame(self, ws, stream: Stream, data: bytes) -> None:
        t0 = time.perf_counter()
        await self._throttle(stream, len(data) // stream.dtype.itemsize)
        note = error = None
        async with stream.lock:  # compute only: control requests wait at most for this frame's compute
            if stream.model is not self.model:
                note = self._rebind(stream)
            try:
                bad = stream.load(data)
            except InputError as exc:
                stream.bad_frames += 1
                stream.closing = True
                self.metrics.bad_frames.labels("size").inc()
                error = {"type": "error", "reason": str(exc), "frame": stream.frames}
            else:
                priority = PriorityPool.BULK if stream.bulk() else PriorityPool.REALTIME
                for lo, hi in stream.slices():  # each slice its own job: other streams' hops interleave
                    await self.pool.run(priority, stream.run, lo, hi)
                out = stream.encoded()
                frame = stream.frames
                stream.frames += 1
                stream.hops_seen = self.metrics.observe_hops(stream.proc, stream.hops_seen, "network")
        if note is not None and not await self._send(ws, stream, note):
            return
        if error is not None:
            if await self._send(ws, stream, error):
                await self._close(ws, stream, BAD_PAYLOAD, error["reason"])
            return
        if bad:
            stream.nonfinite_frames += 1
            self.metrics.bad_frames.labels("nonfinite").inc()
            if not await self._send(ws, stream, {"type": "warning", "frame": frame,
                                                 "reason": f"{bad} NaN/Inf sample(s) replaced by 0"}):
                return
        if await self._send(ws, stream, out):
            self.metrics.block_seconds.observe(time.perf_counter() - t0)

    async def _close(self, ws, stream: Stream, code: int, reason: str) -> None:
        """Close within ``drain_seconds`` (after the frame being sent); cut the connection otherwise."""
        async def close():
            async with stream.send_lock:
                await ws.close(code=code, message=reason[:120].encode())
        stream.closing = True
        try:
            await asyncio.wait_for(close(), self.limits.drain_seconds)
        except (asyncio.TimeoutError, ConnectionResetError, RuntimeError):
            if stream.transport is not None:
                stream.transport.abort()

    def _retire(self, model: Model) -> None:
        """Close a swapped-out model's batched engine once its last stream has left it."""
        if model is not self.model and model.batched is not None and not model.batched._slots:
            model.batched.close()
            model.batched = None

    def _rebind(self, stream: Stream) -> dict:
        old, old_model = stream.proc, stream.model
        dropped = stream.bind(self.model, old.knob_values())
        self._retire(old_model)
        return {"type": "swapped", "model_version": self.model.version, "frame": stream.frames,
                "latency_samples": stream.proc.latency_samples, "dropped_knobs": dropped}

    async def _message(self, ws, stream: Stream, text: str) -> None:
        try:
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise InputError("control messages are JSON objects with a 'type'")
            kind = msg.get("type")
            if kind == "knobs":
                knobs = self.model.check_knobs(msg.get("knobs"))
                async with stream.lock:
                    for name, value in knobs.items():
                        stream.proc.set_knob(name, value)
            elif kind == "reset":
                async with stream.lock:
                    stream.proc.reset()
            elif kind == "bypass":
                if not isinstance(msg.get("on"), bool):
                    raise InputError('bypass needs "on": true or false')
                stream.proc.bypass = msg["on"]
            elif kind == "stats":
                await self._send(ws, stream, {"type": "stats", **stream.info()})
                return
            else:
                raise InputError(f"unknown message type {str(kind)[:40]!r}; use knobs, reset, bypass or stats")
            await self._send(ws, stream, {"type": "ok", "for": kind})
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and InputError are ValueErrors
            self.metrics.bad_frames.labels("control").inc()
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:300]
            await self._send(ws, stream, {"type": "error", "reason": f"control message refused: {reason}"})

    # ---- lifecycle ---------------------------------------------------------------------------
    async def drain(self) -> None:
        """Stop taking streams, let each finish the frame it is sending, close it with 1001; a client
        that does not take its close within ``drain_seconds`` is cut off. Bounded whatever clients do."""
        self.draining = True
        closes = [self._close(ws, self.streams[sid], GOING_AWAY, "server shutting down")
                  for sid, ws in list(self._sockets.items()) if sid in self.streams]
        await asyncio.gather(*closes)

    async def run(self, host: str, port: int, *, on_ready=None) -> None:
        from aiohttp import web

        check_exposure(host, self.token)
        self.host = host
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None,
                               shutdown_timeout=self.limits.drain_seconds)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
        bound = runner.addresses[0][1]
        if self.local is not None:
            self.local.thread.start()
        if on_ready is not None:
            on_ready(bound)
        await stop.wait()
        log.info("shutting down: draining %d stream(s)", len(self.streams))
        await self.drain()
        if self.local is not None:
            self.local.stop.set()
            self.local.thread.join(5)
        await runner.cleanup()
        self.pool.shutdown()
        if self.model.batched is not None:
            self.model.batched.close()
