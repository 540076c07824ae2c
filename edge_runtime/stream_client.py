"""Client side of the streaming service: send a signal through ``edgeamp serve`` and get it back.

:func:`stream_signal` speaks the protocol described in :mod:`edgeamp.edge_runtime.service`:
handshake, fixed-size binary frames, in-order replies. In real-time mode frame ``i`` is sent
at ``i * block / rate`` seconds, as a sound card would; otherwise as fast as the service
answers, with up to ``in_flight`` frames outstanding. Round-trip time is measured per frame.
The output is latency-compensated, so it equals an offline render of the same signal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from edgeamp.core.errors import DeviceError, InputError

from .wire import FORMATS, decode_into, encode

log = logging.getLogger(__name__)

@dataclass
class StreamResult:
    output: np.ndarray
    summary: dict


def _headers(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


class StreamCut(DeviceError):
    """The service ended the stream before it was through (after retries, where asked): the audio
    received so far is in :attr:`partial` (aligned with the input, ``frames_done`` frames of it)."""

    def __init__(self, message: str, partial: np.ndarray, frames_done: int) -> None:
        super().__init__(message)
        self.partial = partial
        self.frames_done = frames_done


GOING_AWAY = 1001  # the service is draining (SIGTERM): another instance behind the balancer takes over


async def _refusal_reason(session, url: str, token: str | None) -> str | None:
    """The JSON reason the service gave for refusing an upgrade: its middlewares (token, origin,
    limits) answer a plain GET of the same URL the same way."""
    import aiohttp

    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    try:
        async with session.get(http, headers=_headers(token), timeout=aiohttp.ClientTimeout(total=5)) as r:
            body = await r.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return None
    return str(body.get("error"))[:300] if isinstance(body, dict) and body.get("error") else None


async def open_stream(session, url: str, handshake: dict, token: str | None = None):
    """Connect and negotiate; returns ``(ws, ready)`` or raises with the service's reason."""
    import aiohttp

    try:
        ws = await session.ws_connect(url, headers=_headers(token), max_msg_size=0, autoping=True)
    except aiohttp.WSServerHandshakeError as exc:
        reason = await _refusal_reason(session, url, token) or (
            "no stream endpoint at this URL (edgeamp serve's is ws://HOST:PORT/stream)" if exc.status == 404
            else exc.message)
        raise DeviceError(f"{url}: the service refused the connection (HTTP {exc.status}): {reason}") from exc
    except aiohttp.ClientError as exc:
        raise DeviceError(f"{url}: cannot connect ({exc})") from exc
    await ws.send_str(json.dumps(handshake))
    msg = await ws.receive()
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise DeviceError(f"{url}: no handshake answer (got {msg.type.name}, close code {ws.close_code})")
    ready = json.loads(msg.data)
    if ready.get("type") != "ready":
        await ws.close()
        raise InputError(f"the service refused the stream: {ready.get('reason', ready)}")
    return ws, ready


async def stream_signal(
    url: str,
    x: np.ndarray,
    sample_rate: int,
    *,
    fmt: str = "float32",
    block: int | None = None,
    knobs: dict[str, float] | None = None,
    realtime: bool = False,
    in_flight: int = 8,
    token: str | None = None,
    on_progress=None,
    reconnect: int = 3,
) -> StreamResult:
    """Stream mono float32 ``x`` through the service; output aligned with ``x`` and a summary.

    ``reconnect``: times to connect again when the service closes with 1001 (it is draining, e.g.
    behind a balancer during a restart): the stream goes on from the first frame not answered, on
    a fresh model state (the summary's ``reconnects`` says at which frames). A stream that still
    cannot finish raises :class:`StreamCut` holding the audio received."""
    import aiohttp

    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r}: choose float32 or int16")
    if np.ndim(x) != 1 or np.shape(x)[0] == 0:
        raise InputError(f"nothing to stream: the signal has shape {np.shape(x)}; give mono audio with samples")
    handshake = {"sample_rate": int(sample_rate), "format": fmt, "knobs": knobs or {}}
    if block:
        handshake["block_size"] = int(block)
    messages: list[dict] = []
    reconnects: list[dict] = []
    async with aiohttp.ClientSession() as session:
        ws, ready = await open_stream(session, url, handshake, token)
        block = ready["block_size"]
        handshake["block_size"] = block
        lat = ready["latency_samples"]
        n = x.shape[0] + lat
        frames = -(-n // block)
        padded = np.zeros(frames * block, np.float32)
        padded[: x.shape[0]] = x
        out = np.zeros_like(padded)
        sent_at = np.zeros(frames)
        rtt = np.zeros(frames)
        t_start = time.perf_counter()
        period = block / sample_rate
        got = 0
        while True:
            try:
                got = await _run_frames(ws, padded, out, sent_at, rtt, got, frames, block, fmt, realtime, in_flight,
                                        t_start, period, messages, on_progress)
                break
            except _GoingAway as away:
                if len(reconnects) >= reconnect:
                    raise StreamCut(f"the service closed the stream at frame {away.frame} of {frames} (going away, "
                                    f"{len(reconnects)} reconnect(s) tried)", out[lat : lat + x.shape[0]],
                                    away.frame) from None
                await asyncio.sleep(0.2 * (1 + len(reconnects)))
                try:
                    ws, again = await open_stream(session, url, handshake, token)
                except (DeviceError, InputError) as exc:
                    raise StreamCut(f"the service closed the stream at frame {away.frame} of {frames} and "
                                    f"reconnecting failed: {exc}", out[lat : lat + x.shape[0]], away.frame) from None
                if again["latency_samples"] != lat:
                    await ws.close()
                    raise StreamCut(f"reconnected at frame {away.frame}, but the new service's latency is "
                                    f"{again['latency_samples']} samples, not {lat}", out[lat : lat + x.shape[0]],
                                    away.frame) from None
                reconnects.append({"frame": away.frame, "stream": again["stream"]})
                log.info("the service went away at frame %d; reconnected (stream %s), going on from there",
                         away.frame, again["stream"])
                got = away.frame
        wall = time.perf_counter() - t_start
    rtt_ms = rtt * 1000.0
    summary = {
        "stream": ready["stream"],
        "frames": frames,
        "block_size": block,
        "format": fmt,
        "latency_samples": lat,
        "realtime": realtime,
        "wall_seconds": wall,
        "realtime_factor": (x.shape[0] / sample_rate) / wall if wall > 0 else None,
        "rtt_ms_p50": float(np.percentile(rtt_ms, 50)),
        "rtt_ms_p99": float(np.percentile(rtt_ms, 99)),
        "rtt_ms_max": float(rtt_ms.max()),
        "late_frames": int(np.count_nonzero(rtt > period)) if realtime else None,
        "warnings": [m for m in messages if m.get("type") == "warning"],
        "swaps": [m for m in messages if m.get("type") == "swapped"],
        "reconnects": reconnects,
    }
    return StreamResult(out[lat : lat + x.shape[0]], summary)


class _GoingAway(Exception):
    def __init__(self, frame: int) -> None:
        self.frame = frame


async def _run_frames(ws, padded, out, sent_at, rtt, first: int, frames: int, block: int, fmt: str, realtime: bool,
                      in_flight: int, t_start: float, period: float, messages: list, on_progress) -> int:
    """Send frames ``first..frames-1`` and take their answers in order; returns ``frames``. A close
    with 1001 raises _GoingAway at the first frame not answered."""
    import aiohttp

    window = asyncio.Semaphore(1 if realtime else max(1, in_flight))

    async def sender():
        for i in range(first, frames):
            if realtime:
                delay = t_start + i * period - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await window.acquire()
            sent_at[i] = time.perf_counter()
            try:
                await ws.send_bytes(encode(padded[i * block : (i + 1) * block], fmt))
            except ConnectionResetError:  # the service closed (a drain): the receiver reads its close
                return

    send_task = asyncio.create_task(sender())
    got = first
    try:
        while got < frames:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                rtt[got] = time.perf_counter() - sent_at[got]
                decode_into(msg.data, fmt, out[got * block : (got + 1) * block])
                got += 1
                if not realtime:
                    window.release()
                if on_progress is not None:
                    on_progress(block)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                info = json.loads(msg.data)
                messages.append(info)
                if info.get("type") == "error":
                    raise InputError(f"the service stopped the stream at frame {got}: {info.get('reason')}")
                log.info("service: %s", info)
            elif ws.close_code == GOING_AWAY:
                raise _GoingAway(got)
            else:
                reason = (ws.close_code, msg.extra)
                raise DeviceError(f"the service closed the stream at frame {got} of {frames}: {reason}")
    finally:
        send_task.cancel()
        await ws.close()
    return got
