"""The service: state, the aiohttp application, and its lifecycle (start, SIGTERM drain)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
from pathlib import Path

from edgeamp.core.bundle import json_safe
from edgeamp.core.errors import ConfigError

from ..session import RuntimeOptions
from .control import ControlRoutes
from .local_audio import LocalAudio
from .metrics import Metrics
from .model import Model
from .pool import PriorityPool
from .protocol import GOING_AWAY, Limits, check_exposure
from .security import Security
from .stream import Stream
from .streams import StreamRoutes

log = logging.getLogger(__name__)


class Service(Security, ControlRoutes, StreamRoutes):
    def __init__(self, bundle: Path | str, *, options: RuntimeOptions | None = None, limits: Limits | None = None,
                 token: str | None = None, workers: int = 2, audio: dict | None = None,
                 models_dir: Path | str | None = None, allow_origins: tuple[str, ...] = (),
                 batch: dict | None = None, worker=None) -> None:
        self.worker = worker  # a WorkerInfo when this is one of `edgeamp serve --processes N`'s workers
        self.options = (options or RuntimeOptions()).replace(num_streams=workers)
        limits = self.limits = limits or Limits()
        self.token = token
        # /swap loads bundles from here only (default: the folder holding the served bundle)
        self.models_dir = Path(models_dir or Path(bundle).resolve().parent).resolve()
        self.allow_origins = {o.rstrip("/").lower() for o in allow_origins}
        self.host = "127.0.0.1"
        self.workers = workers
        # batching: one BatchedEngine per model; a stream's frame awaits its ticks on the event loop.
        # The pool runs unbatched streams (--no-batch, or a model without a batched IR)
        self.metrics = Metrics(worker.folder if worker is not None else None)
        self.batch = None if batch is None else {"lanes": 1, **batch, "on_tick": self.metrics.observe_batch}
        self.model = Model(bundle, self.options, self.batch)
        self.metrics.set_model(self.model)
        self.default_knobs: dict[str, float] = {}
        self.streams: dict[str, Stream] = {}
        self._ids = itertools.count(1)
        self.pool = PriorityPool(workers)
        self.draining = False
        self._sockets: dict[str, object] = {}
        self._handshakes: dict = {}  # WebSocket still owing its handshake -> (peer address, transport)
        self._swaps: set[asyncio.Task] = set()  # /swap requests loading a bundle
        self._drain_deadline: float | None = None
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

    # ---- lifecycle ---------------------------------------------------------------------------
    def _drain_left(self) -> float:
        """Seconds left until the drain's deadline (a little at least)."""
        return max(0.05, (self._drain_deadline or 0.0) - asyncio.get_running_loop().time())

    async def drain(self) -> None:
        """Stop taking streams; each stream finishes the frame it is computing or sending and closes
        itself with 1001 (its handler looks for the drain between frames, at least every
        DRAIN_POLL_SECONDS); connections still owing their handshake are closed at once. All within
        ``drain_seconds`` whatever clients do: what is still open then is cut off."""
        loop = asyncio.get_running_loop()
        self._drain_deadline = loop.time() + self.limits.drain_seconds
        self.draining = True

        async def close_pending(ws, transport):  # no frame to finish: a second to take the close at most
            try:
                await asyncio.wait_for(ws.close(code=GOING_AWAY, message=b"server shutting down"),
                                       min(1.0, self._drain_left()))
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                if transport is not None:
                    transport.abort()

        await asyncio.gather(*(close_pending(ws, transport) for ws, (_, transport) in list(self._handshakes.items())))
        while self._sockets and loop.time() < self._drain_deadline:
            await asyncio.sleep(0.02)
        for sid in list(self._sockets):  # a client that does not take its close (or blocks a send): cut off
            stream = self.streams.get(sid)
            if stream is not None and stream.transport is not None:
                stream.transport.abort()
        for task in list(self._swaps):  # a bundle still loading is not waited for: exit stays bounded
            task.cancel()

    async def run(self, host: str, port: int, *, on_ready=None) -> None:
        from aiohttp import web

        check_exposure(host, self.token)
        self.host = host
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # after the drain every stream is closed: handlers left get a second to end before they are cancelled
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        # a worker shares the port with its siblings (the kernel spreads connections) and takes the
        # requests they relay on a Unix socket of its own
        site = web.TCPSite(runner, host, port, reuse_port=self.worker is not None)
        try:
            await site.start()
            if self.worker is not None:
                await web.UnixSite(runner, str(self.worker.socket_path(self.worker.index))).start()
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
