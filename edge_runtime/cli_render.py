"""Render an audio file through a model bundle (offline, any length, same format out).

The output has the input's sample rate, length and sample format (PCM_16/PCM_24/FLOAT),
aligned with the input (the streaming latency is compensated). A file at another rate than
the model's is refused unless --resample is given (soxr, very high quality; the output is
then written at the input's rate).

examples:
  edgeamp render amp.bundle di.wav amp_out.wav
  edgeamp render amp.bundle di.wav out.wav --device CPU --knob gain=7
  edgeamp render amp.bundle di_44k.wav out.wav --resample
"""

from __future__ import annotations

import argparse
import logging

from edgeamp.core.bundle import read_bundle

from .cli_common import add_runtime_arguments, factory_from_args, latency_summary, positive_int
from .render import render_file

log = logging.getLogger(__name__)


OPENS_BUNDLE = True  # BUNDLE may be a capture file: the dispatcher (edgeamp.cli) opens it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("input", metavar="IN", help="dry (DI) audio file, WAV or FLAC")
    p.add_argument("output", metavar="OUT", help="file to write (replaced atomically)")
    p.add_argument("--channel", type=positive_int, help="input channel to use, 1-based (default: 1)")
    p.add_argument("--resample", action="store_true", help="resample when the file's rate differs from the model's")
    p.add_argument("--block-size", dest="block", type=positive_int, default=4096,
                   help="samples per block fed to the processor (default: 4096)")
    p.add_argument("--block", dest="block", type=positive_int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    bundle = read_bundle(args.bundle)
    r = render_file(factory_from_args(args, bundle), args.input, args.output,
                    channel=None if args.channel is None else args.channel - 1, allow_resample=args.resample,
                    block=args.block)
    print(f"wrote {r.output}: {r.seconds:.2f} s {r.subtype} at {r.sample_rate} Hz via {r.where}; "
          f"{r.real_time_factor:.1f}x real time; {latency_summary(r.hop_times_ms)}; late hops {r.late_hops}")
    return 0
