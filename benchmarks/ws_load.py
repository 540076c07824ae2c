"""A lean WebSocket load client for the service benchmark: N real-time streams in one thread.

The benchmark's clients share the 2 cores with the service. aiohttp's client costs about as much
CPU per frame as the service itself, so with it the client ran out of CPU first and the service's
figures were its own minus the client's. This one speaks just what an edgeamp stream needs (the
HTTP upgrade, one JSON handshake, masked binary frames out, unmasked frames in) on plain
non-blocking sockets and one ``selectors`` loop, so that most of the CPU is left to the server.

Each stream sends a ``block``-sample float32 frame every ``block / rate`` seconds from its own start
phase (as independent sound cards would), and records each frame's round trip (send to the answer
frame's arrival). Nothing here is a test: ``run_streams`` returns the round trips in ms.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import socket
import struct
import time
from urllib.parse import urlparse

import numpy as np


class _Stream:
    def __init__(self, host: str, port: int, path: str, handshake: dict, payload: bytes, frames: int,
                 start: float, period: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the service closed the connection during the upgrade")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")
        self.buf = bytearray(head.split(b"\r\n\r\n", 1)[1])
        self.sock.sendall(_frame(json.dumps(handshake).encode(), 0x1))
        opcode, data = self._read_blocking()
        ready = json.loads(data)
        if opcode != 0x1 or ready.get("type") != "ready":
            raise ConnectionError(f"the service refused the stream: {ready}")
        self.sock.setblocking(False)
        self.frame = _frame(payload, 0x2)
        self.frames, self.sent, self.received = frames, 0, 0
        self.start, self.period = start, period
        self.sent_at = np.zeros(frames)
        self.rtt = np.zeros(frames)

    def _read_blocking(self) -> tuple[int, bytes]:
        while True:
            got = _parse(self.buf)
            if got is not None:
                return got
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the service closed the connection")
            self.buf += chunk

    def due(self) -> float:
        return self.start + self.sent * self.period

    def send_due(self, now: float) -> None:
        while self.sent < self.frames and self.due() <= now:
            self.sent_at[self.sent] = time.perf_counter()
            self.sock.sendall(self.frame)  # 1.9 KB on loopback: the socket buffer takes it at once
            self.sent += 1

    def on_readable(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the service closed a stream")
        self.buf += chunk
        now = time.perf_counter()
        while True:
            got = _parse(self.buf)
            if got is None:
                return
            opcode, _ = got
            if opcode == 0x2:
                self.rtt[self.received] = now - self.sent_at[self.received]
                self.received += 1
            elif opcode == 0x8:
                raise ConnectionError("the service closed a stream")
            # text frames (warnings) are counted by the server's metrics; pings are not sent by it

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(_frame(struct.pack("!H", 1000), 0x8))
        except OSError:
            pass
        self.sock.close()


def _frame(payload: bytes, opcode: int) -> bytes:
    """A client frame: FIN, ``opcode``, masked (RFC 6455 requires clients to mask)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    pad = (-n) % 4
    words = np.frombuffer(payload + b"\0" * pad, np.uint32) ^ np.frombuffer(mask, np.uint32)[0]
    return head + mask + words.tobytes()[:n]


def _parse(buf: bytearray) -> tuple[int, bytes] | None:
    """One whole unmasked server frame off the front of ``buf`` (consumed), or None."""
    if len(buf) < 2:
        return None
    opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack_from("!H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack_from("!Q", buf, 2)[0], 10
    if len(buf) < at + n:
        return None
    data = bytes(buf[at : at + n])
    del buf[: at + n]
    return opcode, data


def run_streams(url: str, n: int, frames: int, block: int, rate: int) -> np.ndarray:
    """``n`` real-time streams of ``frames`` frames each; every frame's round trip in ms, ``(n * frames,)``."""
    u = urlparse(url)
    period = block / rate
    t0 = time.perf_counter() + 0.2
    streams = []
    try:
        for i in range(n):
            payload = np.random.default_rng(i).uniform(-0.5, 0.5, block).astype(np.float32).tobytes()
            streams.append(_Stream(u.hostname, u.port, u.path or "/", {"sample_rate": rate, "block_size": block},
                                   payload, frames, t0 + i * period / n, period))
        sel = selectors.DefaultSelector()
        for s in streams:
            sel.register(s.sock, selectors.EVENT_READ, s)
        pending = set(streams)
        deadline = t0 + frames * period + 10.0
        while pending:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"{sum(s.frames - s.received for s in pending)} answers still missing")
            for s in streams:
                s.send_due(now)
            due = [s.due() for s in streams if s.sent < s.frames]
            wait = max(0.0, min(due) - time.perf_counter()) if due else 0.05
            for key, _ in sel.select(timeout=wait):
                s = key.data
                s.on_readable()
                if s.received == s.frames:
                    pending.discard(s)
                    sel.unregister(s.sock)
        sel.close()
        return np.concatenate([s.rtt for s in streams]) * 1000.0
    finally:
        for s in streams:
            s.close()
