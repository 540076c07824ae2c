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
from pathlib import Path

from .audio_io import check_output_path, read_mono, resample, write_audio
from .bundle import read_bundle
from .cli_common import add_runtime_arguments, factory_from_args, latency_summary, positive_int
from .errors import InputError
from .render import render

log = logging.getLogger(__name__)


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
    if Path(args.input).resolve() == Path(args.output).resolve():
        raise InputError("OUT must differ from IN: edgeamp never overwrites its input")
    check_output_path(args.output)
    bundle = read_bundle(args.bundle)
    sr = bundle.manifest.sample_rate
    x, info = read_mono(args.input, None if args.channel is None else args.channel - 1)
    if info.sample_rate != sr:
        if not args.resample:
            raise InputError(
                f"{args.input} is {info.sample_rate} Hz, the model runs at {sr} Hz: pass --resample "
                "(or resample the file yourself)"
            )
        x = resample(x, info.sample_rate, sr)
    factory = factory_from_args(args, bundle)
    proc = factory.new()
    y, seconds = render(proc, x, block=args.block)
    if info.sample_rate != sr:
        y = resample(y, sr, info.sample_rate)[: info.frames]
    write_audio(args.output, y, info.sample_rate, info.subtype)
    audio_seconds = x.shape[0] / sr
    where = factory.describe()
    print(f"wrote {args.output}: {info.frames / info.sample_rate:.2f} s {info.subtype} at {info.sample_rate} Hz "
          f"via {where}; {audio_seconds / seconds:.1f}x real time; {latency_summary(proc.hop_times_ms())}; "
          f"late hops {proc.stats.late_hops}")
    return 0
