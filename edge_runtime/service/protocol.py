"""The stream protocol: limits, the exposure rule, the JSON handshake, close codes."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgeamp.core.errors import ConfigError, InputError

from ..wire import FORMATS

if TYPE_CHECKING:
    from .model import Model

log = logging.getLogger(__name__)


HANDSHAKE_KEYS = {"sample_rate", "format", "block_size", "knobs", "bypass"}
# WebSocket close codes (RFC 6455)
GOING_AWAY, UNSUPPORTED, BAD_PAYLOAD, POLICY = 1001, 1003, 1007, 1008


@dataclass(frozen=True)
class Limits:
    max_streams: int = 32
    max_block: int = 48000  # samples per frame
    max_realtime: float = 50.0  # a stream is throttled beyond this many times real time
    handshake_seconds: float = 5.0  # a connection that never sends its handshake is closed then
    max_pending_per_peer: int = 4  # connections from one address still owing their handshake
    idle_seconds: float = 60.0  # an accepted stream that sends nothing for this long is closed
    send_seconds: float = 5.0  # a client that takes no data for this long is cut off (it does not read)
    drain_seconds: float = 5.0  # SIGTERM: streams get this long to take their close, then are cut off


# frames are computed in slices of at most this many hops, each its own job on the worker pool, so
# that a stream sending a second of audio per frame cannot hold a real-time stream's hop back
# longer than one slice (the pool's queue is first in, first out)
SLICE_HOPS = 4
# a real-time frame of at most this much compute runs on the event loop (Stream.inline);
# $EDGEAMP_SERVE_INLINE_MS changes it (tests pin the choice so that a loaded machine cannot flip it)
INLINE_MS = float(os.environ.get("EDGEAMP_SERVE_INLINE_MS", "0.3"))
INLINE_CHECK = 32  # frames between two looks at a stream's hop times
# a stream's handler looks for a drain this often while its client sends nothing
DRAIN_POLL_SECONDS = 0.1
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
        except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
            raise InputError(f"handshake is not JSON: {str(exc)[:200]}") from exc
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
