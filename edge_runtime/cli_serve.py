"""Run the headless streaming service: audio streams over WebSocket, control and metrics over HTTP.

Each WebSocket connection at /stream is one stream with its own processor (own InferRequest
and model state). A client sends a JSON handshake, e.g.
  {"sample_rate": 48000, "format": "float32", "block_size": 480, "knobs": {"gain": 7}}
then binary frames of block_size little-endian samples; each comes back processed, in order.
`edgeamp stream` is such a client.

HTTP endpoints:
  GET  /healthz  /readyz           liveness; readiness (503 while draining or local audio failed)
  GET  /model  /streams            model info; connected streams with their counters
  POST /knobs   {"knobs": {"gain": 7}, "stream": "s1"}   (no "stream": all, and new streams too)
  POST /reset   {"stream": "s1"}     POST /bypass {"on": true}
  POST /swap    {"bundle": "/path/new.bundle"}   hot swap: streams move over at their next frame
  GET  /metrics                      Prometheus: active streams, hops, per-hop compute histogram,
                                     late hops, bad frames, xruns, swaps

The service listens on 127.0.0.1 by default. Binding to any other address needs a token
(--token or EDGEAMP_TOKEN): clients send "Authorization: Bearer TOKEN" or ?token=TOKEN.
SIGTERM or Ctrl-C drains: no new streams, each finishes its current frame and is closed with
1001 "going away", then the process exits 0.

examples:
  edgeamp serve amp.bundle                          # ws://127.0.0.1:8765/stream
  edgeamp serve amp.bundle --host 0.0.0.0 --token "$(openssl rand -hex 16)"
  edgeamp serve amp.bundle --audio-device 2         # also a local duplex sound-card stream
  curl -s localhost:8765/metrics | grep edgeamp_
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .bundle import read_manifest
from .cli_common import add_runtime_arguments, hop_from_args, parse_knobs

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    g = p.add_argument_group("network")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    g.add_argument("--token", default=os.environ.get("EDGEAMP_TOKEN"),
                   help="shared secret clients must send (default $EDGEAMP_TOKEN; required off loopback)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-streams", type=int, default=32, help="concurrent streams (default 32)")
    g.add_argument("--max-block", type=int, default=48000, help="largest frame in samples (default 48000)")
    g.add_argument("--max-realtime", type=float, default=50.0,
                   help="throttle a stream sending faster than this many times real time (default 50)")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="hops computed at the same time (default: CPU count); one inference thread each")
    g = p.add_argument_group("local audio (optional)")
    g.add_argument("--audio-device", help="also run a duplex sound-card stream: device index or part of its name")
    g.add_argument("--audio-host-api", help="PortAudio host API for --audio-device, e.g. alsa, jack")
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    from .service import Limits, Service, check_exposure

    check_exposure(args.host, args.token)
    options = {
        "backend": args.backend, "device": args.device, "mode": args.mode, "strict": args.strict,
        "threads": args.threads or args.workers, "variant": args.variant, "precision": args.precision,
    }
    if args.hop_samples or args.hop_ms:
        options["hop_samples"] = hop_from_args(args, read_manifest(args.bundle).sample_rate)
    audio = None
    if args.audio_device is not None or args.audio_host_api:
        audio = {"input_device": args.audio_device, "output_device": args.audio_device,
                 "host_api": args.audio_host_api}
    limits = Limits(max_streams=args.max_streams, max_block=args.max_block, max_realtime=args.max_realtime)
    service = Service(args.bundle, options=options, limits=limits, token=args.token, workers=args.workers,
                      audio=audio)
    knobs = parse_knobs(args.knob)
    if knobs:
        service.default_knobs.update(service.model.check_knobs(knobs))

    def ready(port: int) -> None:
        m = service.model
        print(f"edgeamp serve: listening on http://{args.host}:{port} (streams: ws://{args.host}:{port}/stream); "
              f"{m.bundle.path.name} at {m.sample_rate} Hz on {m.factory.device}, hop {m.factory.hop_samples}, "
              f"{args.workers} worker(s)", flush=True)

    asyncio.run(service.run(args.host, args.port, on_ready=ready))
    print(f"edgeamp serve: stopped cleanly after {service.accepted} stream(s)", file=sys.stderr)
    return 0
