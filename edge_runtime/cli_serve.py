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
  POST /swap    {"bundle": "new.bundle"}   hot swap from --models-dir: streams move over at their next frame
  GET  /metrics                      Prometheus: active streams, hops, per-hop compute histogram,
                                     late hops, bad frames, xruns, swaps

Control requests (POST) need Content-Type: application/json. Requests from web pages are refused:
an Origin header is accepted only from --allow-origin, and on loopback the Host header must name
this machine. A client that takes no data for 5 s is cut off; a stream idle for 60 s is closed.

The service listens on 127.0.0.1 by default. Binding to any other address needs a token
(--token or EDGEAMP_TOKEN): clients send "Authorization: Bearer TOKEN" or ?token=TOKEN.
SIGTERM or Ctrl-C drains: no new streams, each finishes its current frame and is closed with
1001 "going away", then the process exits 0.

By default one service process runs per core on the one port (--processes auto; 1 with --batch or
--audio-device): control requests reach all of them, /streams lists all, /metrics sums them,
SIGTERM drains all. Stream ids then name their process (w2-s5).

examples:
  edgeamp serve amp.bundle                          # ws://127.0.0.1:8765/stream
  edgeamp serve amp.bundle --host 0.0.0.0 --token "$(openssl rand -hex 16)"
  edgeamp serve amp.bundle --audio-device 2         # also a local duplex sound-card stream
  edgeamp serve amp.bundle --processes 4 --max-streams 16   # 4 processes, 16 streams each
  curl -s localhost:8765/metrics | grep edgeamp_
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .cli_common import (
    add_runtime_arguments,
    non_negative_float,
    options_from_args,
    parse_knobs,
    port_number,
    positive_float,
    positive_int,
    )

log = logging.getLogger(__name__)
BATCH_WAIT_MS = 3.0  # measured (docs/DESIGN.md, "Batching"): 25-37 % less CPU than 0 at 8-16 streams


OPENS_BUNDLE = True  # BUNDLE may be a capture file: the dispatcher (edgeamp.cli) opens it


def capture_options(args: argparse.Namespace) -> dict:
    """A capture served with --batch needs the batched IR too."""
    return {"batched": bool(args.batch)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    g = p.add_argument_group("network")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=port_number, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    g.add_argument("--token", default=os.environ.get("EDGEAMP_TOKEN"),
                   help="shared secret clients must send (default $EDGEAMP_TOKEN; required off loopback)")
    g.add_argument("--models-dir", metavar="DIR",
                   help="POST /swap loads bundles from this folder only (default: the folder holding BUNDLE)")
    g.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin allowed to call the service, e.g. http://localhost:3000 (repeatable; "
                        "default none: requests carrying an Origin header are refused)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-streams", type=positive_int, default=32, help="concurrent streams (default 32)")
    g.add_argument("--max-block", type=positive_int, default=48000, help="largest frame in samples (default 48000)")
    g.add_argument("--max-realtime", type=positive_float, default=50.0,
                   help="throttle a stream sending faster than this many times real time (default 50)")
    g.add_argument("--send-timeout", type=positive_float, default=5.0, metavar="SECONDS",
                   help="cut off a client that takes no data for this long (default 5)")
    g.add_argument("--handshake-timeout", type=positive_float, default=5.0, metavar="SECONDS",
                   help="close a connection that sends no handshake within this long (default 5); such "
                        "connections hold no stream slot")
    g.add_argument("--max-pending-per-peer", type=positive_int, default=4, metavar="N",
                   help="connections from one address still owing their handshake (default 4; behind a balancer "
                        "every client has its address)")
    g.add_argument("--idle-timeout", type=positive_float, default=60.0, metavar="SECONDS",
                   help="close a stream that sends nothing for this long (default 60)")
    g.add_argument("--drain-timeout", type=positive_float, default=5.0, metavar="SECONDS",
                   help="on SIGTERM, how long streams get to finish their frame and take their close before they "
                        "are cut off; the process exits about a second after (default 5)")
    g.add_argument("--processes", type=processes_arg, default="auto", metavar="N",
                   help="service processes on the one port (SO_REUSEPORT), each with its own streams, model and "
                        "threads; control requests reach all, /metrics sums them, SIGTERM drains all. Default "
                        "auto: one per core for network streams (one Python process runs its Python work under one "
                        "GIL), 1 with --audio-device or --batch. --max-streams and --workers are per process")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="hops computed at the same time in a process (default: CPU count / processes); one "
                        "inference thread each")
    g = p.add_argument_group("batching")
    g.add_argument("--batch", action=argparse.BooleanOptionalAction, default=False,
                   help="streams share batched inferences (the bundle's batched IR). Saves CPU at high stream "
                        "counts (on 2 cores, the stateful preset at 16 streams: 0.96 cores against 1.25 "
                        "unbatched) but adds a few ms per hop, so VM pauses make more hops late. Default "
                        "--no-batch: one inference per stream per hop (README, performance)")
    g.add_argument("--batch-wait-ms", type=non_negative_float, default=BATCH_WAIT_MS, metavar="MS",
                   help="longest a hop waits for other streams' hops that are due to arrive (never past half "
                        "a hop duration, tick included; a lone stream never waits). 0: run what is ready as "
                        f"soon as a lane is free (default {BATCH_WAIT_MS:g})")
    g.add_argument("--max-batch", type=positive_int, default=32, help="most hops in one inference (default 32)")
    g.add_argument("--batch-lanes", type=positive_int, default=os.cpu_count() or 1,
                   help="batched inferences that may run at once, one thread each (default: CPU count; on 2 "
                        "cores, 8 seed streams at wait 3, one lane made over 10x the late hops of two)")
    g = p.add_argument_group("local audio (optional)")
    g.add_argument("--audio-device", help="also run a duplex sound-card stream: device index or part of its name")
    g.add_argument("--audio-host-api", help="PortAudio host API for --audio-device, e.g. alsa, jack")
    add_runtime_arguments(p)


def processes_arg(text: str) -> int | str:
    if text == "auto":
        return text
    return positive_int(text)


def run(args: argparse.Namespace) -> int:
    from .service import check_exposure
    from .service.workers import default_processes, supervise

    check_exposure(args.host, args.token)
    processes = default_processes(args) if args.processes == "auto" else args.processes
    if processes > 1 and (args.audio_device is not None or args.audio_host_api):
        from edgeamp.core.errors import ConfigError

        raise ConfigError("--audio-device runs in one process: use --processes 1 with it")
    if processes == 1:
        return serve(args)
    from edgeamp.core.bundle import read_bundle

    read_bundle(args.bundle)  # a bad bundle is said once, here, not by every worker

    def ready(port: int, text: str) -> None:
        print(f"edgeamp serve: listening on http://{args.host}:{port} (streams: ws://{args.host}:{port}/stream); "
              f"{text}; {processes} processes", flush=True)

    code = supervise(args, processes, ready)
    print(f"edgeamp serve: {processes} processes stopped" + (" cleanly" if code == 0 else f" ({code})"),
          file=sys.stderr)
    return code


def serve(args: argparse.Namespace, worker=None) -> int:
    """One service process: the whole service, or worker ``worker`` of a supervisor's."""
    from .service import Limits, Service, check_exposure
    from .service.workers import usable_cores

    check_exposure(args.host, args.token)
    processes = worker.count if worker is not None else 1
    workers = args.workers or max(1, usable_cores() // processes)
    options = options_from_args(args).replace(knobs={})
    options = options.replace(threads=args.threads or 1)  # one inference thread per worker, as --workers says
    audio = None
    if args.audio_device is not None or args.audio_host_api:
        audio = {"input_device": args.audio_device, "output_device": args.audio_device,
                 "host_api": args.audio_host_api}
    limits = Limits(max_streams=args.max_streams, max_block=args.max_block, max_realtime=args.max_realtime,
                    send_seconds=args.send_timeout, idle_seconds=args.idle_timeout, drain_seconds=args.drain_timeout,
                    handshake_seconds=args.handshake_timeout, max_pending_per_peer=args.max_pending_per_peer)
    batch = None if not args.batch or args.backend not in ("openvino", "auto") else {
        "max_batch": args.max_batch, "wait_ms": args.batch_wait_ms, "lanes": args.batch_lanes}
    service = Service(args.bundle, options=options, limits=limits, token=args.token, workers=workers,
                      audio=audio, models_dir=args.models_dir, allow_origins=tuple(args.allow_origin), batch=batch,
                      worker=worker)
    knobs = parse_knobs(args.knob)  # the service's default for new streams, set below
    if knobs:
        service.default_knobs.update(service.model.check_knobs(knobs))

    def ready(port: int) -> None:
        m = service.model
        text = (f"{m.bundle.path.name} at {m.sample_rate} Hz on {m.factory.device}, hop {m.factory.hop_samples}, "
                f"{workers} worker(s)"
                + (f", batched (up to {args.max_batch} hops, wait {args.batch_wait_ms:g} ms)" if m.batched else ""))
        if worker is not None:  # the supervisor prints the line once every worker listens
            (worker.folder / f"worker-{worker.index}.ready").write_text(text)
            return
        print(f"edgeamp serve: listening on http://{args.host}:{port} (streams: ws://{args.host}:{port}/stream); "
              f"{text}", flush=True)

    asyncio.run(service.run(args.host, args.port, on_ready=ready))
    print(f"edgeamp serve{f' (worker {worker.index})' if worker else ''}: stopped cleanly after "
          f"{service.accepted} stream(s)", file=sys.stderr)
    return 0
