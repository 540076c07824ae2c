"""WebSocket streams: handshake, frames in slices on the pool, sends with timeouts, control messages."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from edgeamp.core.bundle import json_safe
from edgeamp.core.errors import InputError

from .model import Model
from .pool import PriorityPool
from .protocol import BAD_PAYLOAD, DRAIN_POLL_SECONDS, GOING_AWAY, POLICY, UNSUPPORTED, Handshake
from .stream import Stream

log = logging.getLogger(__name__)
# an audio frame this small, sent on a transport with nothing pending, stays under the transport's
# high-water mark (64 KiB by default), so aiohttp's write cannot wait for the client: no timeout needed
FAST_SEND_BYTES = 16384


class StreamRoutes:
    """WebSocket handling of :class:`~.app.Service` (a mixin)."""

    # ---- WebSocket streams ----------------------------------------------------------------
    async def _refuse(self, ws, code: int, reason: str, metric: str, transport=None) -> None:
        """Say why, then close; a client already gone (or not reading) costs nothing more."""
        self.metrics.refused.labels(metric).inc()
        try:
            await asyncio.wait_for(ws.send_json({"type": "error", "reason": reason}), self.limits.send_seconds)
            await asyncio.wait_for(ws.close(code=code, message=reason[:120].encode()), self.limits.send_seconds)
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            if transport is not None:
                transport.abort()

    def _admit(self, peer: str) -> str | None:
        """Why a new connection is refused before its upgrade, or None. Accepted streams count against
        --max-streams; connections still owing their handshake do not (silent upgrades cannot hold the
        stream slots), but there may be at most 4x --max-streams of them, and ``max_pending_per_peer``
        from one address."""
        if self.draining:
            return "draining"
        if len(self.streams) >= self.limits.max_streams:
            return "max_streams"
        if len(self._handshakes) >= 4 * self.limits.max_streams:
            return "pending_handshakes"
        if sum(1 for p, _ in self._handshakes.values() if p == peer) >= self.limits.max_pending_per_peer:
            return "pending_handshakes"
        return None

    async def _stream(self, request):
        from aiohttp import WSMsgType, web

        peer = request.remote or "?"
        refused = self._admit(peer)
        if refused is not None:
            self.metrics.refused.labels(refused).inc()
            return self._error(503, {
                "draining": "the service is shutting down",
                "max_streams": f"stream limit reached ({self.limits.max_streams}); try later",
                "pending_handshakes": "too many connections owing their handshake (send the JSON handshake "
                                      "as the first message); try later",
            }[refused])
        ws = web.WebSocketResponse(max_msg_size=self.limits.max_block * 4 + 4096,
                                   receive_timeout=self.limits.idle_seconds, timeout=self.limits.drain_seconds)
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):  # the client left during the upgrade
            return ws
        self._handshakes[ws] = (peer, request.transport)
        try:
            msg = await ws.receive(timeout=self.limits.handshake_seconds)
        except asyncio.TimeoutError:
            await self._refuse(ws, POLICY, f"no handshake within {self.limits.handshake_seconds:g} s", "handshake",
                               request.transport)
            return ws
        except ConnectionError:
            return ws
        finally:
            self._handshakes.pop(ws, None)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws  # gone before its handshake (or closed by the drain)
        if self.draining:
            await self._refuse(ws, GOING_AWAY, "server shutting down", "draining", request.transport)
            return ws
        if msg.type != WSMsgType.TEXT:
            await self._refuse(ws, UNSUPPORTED, "the first message must be the JSON handshake (text), e.g. "
                                                '{"sample_rate": 48000, "format": "float32", "block_size": 480}',
                               "handshake", request.transport)
            return ws
        if len(self.streams) >= self.limits.max_streams:
            await self._refuse(ws, POLICY, f"stream limit reached ({self.limits.max_streams}); try later",
                               "max_streams", request.transport)
            return ws
        model = self.model
        try:
            hs = Handshake.parse(msg.data, model, self.limits)
        except InputError as exc:
            await self._refuse(ws, UNSUPPORTED, str(exc), "handshake", request.transport)
            return ws
        n = next(self._ids)
        sid = self.worker.stream_id(n) if self.worker is not None else f"s{n}"
        stream = Stream(sid, hs, model, peer, defaults=self.default_knobs)  # knobs set for a swapped-out model drop
        stream.transport = request.transport
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
            heard = time.monotonic()
            while True:
                if self.draining:
                    # shutting down: the frame in flight is done and sent; the close goes from here, where
                    # no receive is pending (aiohttp cuts the connection at once when a close comes from
                    # another task while this one receives, and the client then loses the 1001)
                    await self._close(ws, stream, GOING_AWAY, "server shutting down", timeout=self._drain_left())
                    break
                try:
                    msg = await ws.receive(timeout=DRAIN_POLL_SECONDS)
                except asyncio.TimeoutError:
                    if time.monotonic() - heard >= self.limits.idle_seconds:
                        self.metrics.refused.labels("idle").inc()
                        await self._close(ws, stream, POLICY, f"idle for {self.limits.idle_seconds:g} s")
                        break
                    continue
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                heard = time.monotonic()
                if msg.type == WSMsgType.BINARY:
                    await self._frame(ws, stream, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self._message(ws, stream, msg.data)
                if stream.closing or ws.closed:
                    break
        except ConnectionError:  # the client went away mid-frame: its stream ends, nothing else
            log.info("stream %s: client disconnected", sid)
        else:
            if ws.exception() is not None:  # e.g. a frame over the size limit (aiohttp closed with 1009)
                self.metrics.bad_frames.labels("protocol").inc()
                log.info("stream %s: %s", sid, ws.exception())
        finally:
            if stream.close_done is not None:  # a close from outside (the drain's 1001) is under way:
                await stream.close_done.wait()  # returning first would let aiohttp close with 1000
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
                if isinstance(message, bytes):
                    transport = stream.transport
                    if (transport is not None and len(message) <= FAST_SEND_BYTES
                            and not transport.is_closing() and transport.get_write_buffer_size() == 0):
                        # the client has taken everything sent so far, and this frame cannot fill the
                        # transport to its high-water mark: the write cannot wait, so no timeout
                        # (asyncio.wait_for wraps every call in a task of its own)
                        await ws.send_bytes(message)
                        return True
                    coro = ws.send_bytes(message)
                else:
                    coro = ws.send_json(json_safe(message))
                await asyncio.wait_for(coro, self.limits.send_seconds)
                return True
            except asyncio.TimeoutError:
                self.metrics.bad_frames.labels("not_reading").inc()
                log.info("stream %s: the client took nothing for %g s; cutting it off", stream.id,
                         self.limits.send_seconds)
            except (ConnectionError, RuntimeError):  # gone already (aiohttp: RuntimeError on a closing socket)
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
                if stream.slot is not None:  # batched: the hops join ticks from this loop, no thread per stream
                    stream.slot.priority = priority
                    await stream.proc.process_async(stream._x, stream._y)
                elif priority == PriorityPool.REALTIME and self.workers == 1 and stream.inline():
                    # one compute thread gives no parallelism, only a handoff dearer than a cheap hop
                    stream.run(0, stream.hs.block_size)
                else:
                    for lo, hi in stream.slices():  # each slice its own job: other streams' hops interleave
                        await self.pool.run(priority, stream.run, lo, hi)
                out = stream.encoded()
                frame = stream.frames
                stream.frames += 1
                stream.hops_seen = self.metrics.observe_hops(stream.proc, stream.hops_seen, "network",
                                                             stream.model.bundle.path.name)
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

    async def _close(self, ws, stream: Stream, code: int, reason: str, timeout: float | None = None) -> None:
        """Close within ``timeout`` (default ``drain_seconds``; after the frame being sent); cut the
        connection otherwise."""
        async def close():
            async with stream.send_lock:
                await ws.close(code=code, message=reason[:120].encode())
        stream.closing = True
        done = stream.close_done = asyncio.Event()
        try:
            await asyncio.wait_for(close(), self.limits.drain_seconds if timeout is None else timeout)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            if stream.transport is not None:
                stream.transport.abort()
        finally:
            done.set()

    def _retire(self, model: Model) -> None:
        """Close a swapped-out model's batched engine once its last stream has left it."""
        if model is not self.model and model.batched is not None and not model.batched.in_use:
            model.close()

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
