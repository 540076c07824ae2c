"""Stream an audio file through a running `edgeamp serve` and write what comes back.

Sends the file in fixed-size frames over the service's WebSocket protocol, as fast as the
service answers (default) or paced in real time (--realtime, as a sound card would), and
writes the processed audio aligned with the input: it equals `edgeamp render` of the same
file on the same bundle. Round-trip time per frame is measured and summarised.

examples:
  edgeamp stream di.wav out.wav                                # ws://127.0.0.1:8765/stream
  edgeamp stream di.wav out.wav --realtime --json              # round trips at real-time pace
  edgeamp stream di.wav out.wav --url ws://pi.local:8765/stream --token "$TOKEN" --knob gain=7
  edgeamp stream di_44k.wav out.wav --resample --format int16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from edgeamp.core.audio_io import check_output_path, read_mono, resample, write_audio
from edgeamp.core.errors import DeviceError, InputError
from edgeamp.core.progress import progress_bar

from .cli_common import non_negative_int, parse_knobs, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="dry (DI) audio file, WAV or FLAC")
    p.add_argument("output", metavar="OUT", help="file to write (replaced atomically)")
    p.add_argument("--url", default="ws://127.0.0.1:8765/stream", help="the service's stream URL")
    p.add_argument("--token", default=os.environ.get("EDGEAMP_TOKEN"), help="service token (default $EDGEAMP_TOKEN)")
    p.add_argument("--format", choices=["float32", "int16"], default="float32", help="wire format (default float32)")
    p.add_argument("--block-size", type=positive_int, help="samples per frame (default: the model's hop)")
    p.add_argument("--realtime", action="store_true", help="pace frames in real time instead of as fast as possible")
    p.add_argument("--in-flight", type=positive_int, default=8,
                   help="frames outstanding when not real time (default 8)")
    p.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE", help="knob for this stream")
    p.add_argument("--channel", type=positive_int, help="input channel to use, 1-based (default: 1)")
    p.add_argument("--resample", action="store_true", help="resample when the file's rate differs from the model's")
    p.add_argument("--reconnect", type=non_negative_int, default=3, metavar="N",
                   help="when the service closes with 1001 (draining, e.g. restarted behind a balancer), connect "
                        "again up to N times and go on from the first frame not answered, on a fresh model state "
                        "(default 3; 0: stop, writing what was received)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def model_info(url: str, token: str | None) -> dict:
    """GET /model next to a ws://host:port/stream URL."""
    import urllib.request

    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rsplit("/", 1)[0] + "/model"
    req = urllib.request.Request(http, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except OSError as exc:
        raise DeviceError(f"{http}: {exc}") from exc


def _write(y, sr: int, info, output) -> None:
    if sr != info.sample_rate:
        y = resample(y, sr, info.sample_rate)[: info.frames]
    write_audio(output, y, info.sample_rate, info.subtype)


def run(args: argparse.Namespace) -> int:
    from .stream_client import StreamCut, stream_signal

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise InputError("OUT must differ from IN: edgeamp never overwrites its input")
    x, info = read_mono(args.input, None if args.channel is None else args.channel - 1)
    sr = info.sample_rate
    if args.resample:
        sr = model_info(args.url, args.token)["sample_rate"]
        x = resample(x, info.sample_rate, sr)
    check_output_path(args.output)
    with progress_bar(x.shape[0], desc="stream", unit="sample", unit_scale=True) as bar:
        try:
            result = asyncio.run(stream_signal(
                args.url, x, sr, fmt=args.format, block=args.block_size, knobs=parse_knobs(args.knob),
                realtime=args.realtime, in_flight=args.in_flight, token=args.token, on_progress=bar.update,
                reconnect=args.reconnect))
        except StreamCut as cut:  # nothing received is lost: what came back is written, and said
            _write(cut.partial, sr, info, args.output)
            raise DeviceError(f"{cut}; wrote the audio received before it to {args.output} (the rest is "
                              "silence)") from None
    _write(result.output, sr, info, args.output)
    s = result.summary
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        late = f", late frames {s['late_frames']}" if s["realtime"] else ""
        again = f"; reconnected at frame(s) {', '.join(str(r['frame']) for r in s['reconnects'])}" if (
            s["reconnects"]) else ""
        print(f"wrote {args.output}: {s['frames']} frames of {s['block_size']} via stream {s['stream']}{again}; "
              f"{s['realtime_factor']:.1f}x real time; round trip p50 {s['rtt_ms_p50']:.2f} ms, "
              f"p99 {s['rtt_ms_p99']:.2f} ms{late}")
    return 0
