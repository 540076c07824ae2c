"""HTTP: health, model and stream info, metrics, and control (knobs, reset, bypass, hot swap)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edgeamp.core.errors import EdgeampError, InputError

from ..processor import Processor
from .local_audio import LocalAudio
from .model import Model
from .pool import in_daemon_thread

log = logging.getLogger(__name__)
RELAY_SECONDS = 300.0  # a relayed /swap loads and compiles a bundle


class ControlRoutes:
    """HTTP handlers of :class:`~.app.Service` (a mixin)."""

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
        if self._fans_out(request):  # every worker's streams
            for _, (status, answer) in sorted((await self._relay(request, None, self.worker.others())).items()):
                streams += answer.get("streams", []) if status == 200 else []
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
            raise InputError(f"request body is not JSON: {str(exc)[:200]}") from exc
        except LookupError as exc:  # Content-Type: application/json; charset=NO-SUCH-CODEC
            raise InputError(f"request body: unknown charset {request.charset!r}; send UTF-8 JSON") from exc
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
            owner = self._owner(request, body)
            if owner is not None:  # a stream of another worker: its worker answers
                status, answer = (await self._relay(request, body, [owner]))[owner]
                return self._json(answer, status)
            targets = self._targets(body)
        except InputError as exc:
            return self._error(400, str(exc))
        done, refused = await self._apply(targets, op)
        if self._fans_out(request) and body.get("stream") is None:  # all streams: every worker's
            for k, (status, answer) in sorted((await self._relay(request, body, self.worker.others())).items()):
                if status == 200:
                    done += answer.get("applied_to", [])
                    refused.update(answer.get("refused", {}))
                else:
                    refused[f"worker {k}"] = answer.get("error", f"HTTP {status}")
        return self._json({"applied_to": done, **({"refused": refused} if refused else {}), **extra})

    # ---- across worker processes (edgeamp serve --processes N) -------------------------------
    def _relayed(self, request) -> bool:
        """Relayed by another worker: it came on this worker's Unix socket (never from the network)."""
        return self.worker is not None and isinstance(request.transport.get_extra_info("sockname"), str)

    def _fans_out(self, request) -> bool:
        """This request must reach the other workers too (it came from a client, and there are others)."""
        return self.worker is not None and self.worker.count > 1 and not self._relayed(request)

    def _owner(self, request, body: dict) -> int | None:
        """The other worker holding the stream a client's request names, or None (this one, or all)."""
        sid = body.get("stream")
        if not isinstance(sid, str) or not self._fans_out(request):
            return None
        owner = self.worker.owner(sid)
        return owner if owner is not None and owner != self.worker.index and owner <= self.worker.count else None

    async def _relay(self, request, body: dict | None, workers: list[int]) -> dict[int, tuple[int, dict]]:
        """Send the client's request (its method, path, token, Host and body) to ``workers``' Unix
        sockets at once; by worker, the status and JSON answer (502 and why, for one that did not answer)."""
        import aiohttp

        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "host")}
        results: dict[int, tuple[int, dict]] = {}

        async def one(k: int) -> None:
            try:
                async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(self.worker.socket_path(k))),
                                                 timeout=aiohttp.ClientTimeout(total=RELAY_SECONDS)) as session:
                    async with session.request(request.method, f"http://localhost{request.path_qs}", json=body,
                                               headers=headers) as r:
                        results[k] = (r.status, await r.json())
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
                results[k] = (502, {"error": f"worker {k} did not answer: {type(exc).__name__}: {str(exc)[:200]}"})

        await asyncio.gather(*(one(k) for k in workers))
        return results

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
        task = asyncio.current_task()
        self._swaps.add(task)
        try:  # load and compile off the event loop; streams keep running on the old model meanwhile
            new = await in_daemon_thread(Model, path, self.options, self.batch, orphan=Model.close)
        except EdgeampError as exc:
            return self._error(400, f"cannot load {path}: {exc}")
        except Exception as exc:  # noqa: BLE001 - whatever a bad bundle does, the service goes on serving
            log.exception("swap to %s failed", path)
            return self._error(400, f"cannot load {path}: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            self._swaps.discard(task)
        if self.draining:
            new.close()
            return self._error(503, "the service is shutting down")
        if new.sample_rate != self.model.sample_rate:
            new.close()
            return self._error(409, f"{path} runs at {new.sample_rate} Hz; connected streams run at "
                                    f"{self.model.sample_rate} Hz (restart the service to change rate)")
        old = self.model
        self.model = new
        self.metrics.swaps.inc()
        self.metrics.set_model(new)
        if self.local is not None:
            self.local.swap(new)
        self._retire(old)  # no stream on it: its batched engine's threads stop now, not never
        log.info("hot swap: %s (v%d) -> %s (v%d)", old.bundle.path, old.version, new.bundle.path, new.version)
        answer = {"swapped": True, "from_version": old.version, "model": new.info()}
        if not self._fans_out(request):
            return self._json(answer)
        # every other worker swaps too; one that cannot is named (502: the workers now differ)
        others = await self._relay(request, body, self.worker.others())
        answer["workers"] = {str(self.worker.index): "swapped"} | {
            str(k): "swapped" if status == 200 else a.get("error", f"HTTP {status}")
            for k, (status, a) in others.items()}
        return self._json(answer, 200 if all(status == 200 for status, _ in others.values()) else 502)

    def _model_path(self, name: str) -> Path:
        """A bundle inside ``models_dir`` (a name, or a path that resolves inside it). Anything else is
        refused with the same words whether or not it exists: /swap is no way to probe the disk."""
        try:
            if "\x00" in name or len(name) > 4096:
                raise ValueError(name)
            name.encode("utf-8")  # a lone surrogate ("\ud800") names no file
            candidate = Path(name) if Path(name).is_absolute() else self.models_dir / name
            resolved = candidate.resolve()
        except (ValueError, OSError, UnicodeEncodeError):
            resolved = None
        if resolved is None or self.models_dir not in resolved.parents:
            raise InputError(f"/swap loads bundles from the models directory only ({self.models_dir.name}/, "
                             "set with --models-dir): give a bundle name inside it")
        return resolved
