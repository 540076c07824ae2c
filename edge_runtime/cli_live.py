"""Play through the model live: a duplex audio stream (sounddevice/PortAudio) in 10 ms blocks.

The callback copies the input in, runs the hop, copies the output out, and counts xruns and
late callbacks. A status line shows DSP load, p99 callback time, xruns and knob values; a
summary is printed on exit. Keys (on a terminal): b = bypass on/off, r = reset the model state,
1-9 = select a knob, + / - = turn it by a twentieth of its range, q = quit (Ctrl-C works too).

The model hears one interface input (--input-channel, default 1) and plays on the chosen outputs
(default 1 and 2 where the interface has two: dual mono). An interface that does not run at the
model's rate (or --device-rate) is resampled in and out; the added delay is printed at start and
in the summary (resampler_latency_ms). The default resampler (--resample-quality LL) adds about
1 ms at 44.1 kHz (42 samples, both ways; flat within 0.01 dB to 16.5 kHz, aliases below -80 dB);
soxr's HQ adds about 48 ms.

examples:
  edgeamp live amp.bundle                                  # default devices
  edgeamp live amp.bundle --audio-device 2 --input-channel 2 --knob gain=7   # guitar on input 2
  edgeamp live amp.bundle --output-channels 3,4 --device-rate 44100           # resampled to 44.1 kHz
  edgeamp live amp.bundle --host-api jack --seconds 10 --json   # headless, e.g. under JACK
  edgeamp live --list-devices
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from edgeamp.core.bundle import read_bundle
from edgeamp.core.errors import ConfigError

from .cli_common import add_runtime_arguments, factory_from_args, positive_float, positive_int
from .resampling import QUALITIES, RESAMPLE_QUALITY

OPENS_BUNDLE = True  # BUNDLE may be a capture file: the dispatcher (edgeamp.cli) opens it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", nargs="?")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--audio-device", help="input and output device: index or part of its name (as serve takes)")
    p.add_argument("--input-device", help="input device: index or part of its name (default: --audio-device)")
    p.add_argument("--output-device", help="output device: index or part of its name (default: --audio-device)")
    p.add_argument("--input-channel", type=positive_int, default=1,
                   help="the interface input that feeds the model, from 1 (default 1)")
    p.add_argument("--output-channels", type=_channel_list, metavar="N[,N...]",
                   help="interface outputs that play the model, from 1 (default: 1,2 where there are two: dual "
                        "mono; others are silent)")
    p.add_argument("--device-rate", type=positive_int, metavar="HZ",
                   help="run the interface at this rate (default: the model's where the interface takes it, else "
                        "the interface's own; another rate than the model's is resampled in and out)")
    p.add_argument("--resample-quality", choices=QUALITIES, default=RESAMPLE_QUALITY,
                   help="resampler where the interface runs at another rate: LL (default) edgeamp's low-latency "
                        "polyphase one, about 1 ms in and out at 44.1 kHz; QQ..VHQ soxr's, HQ about 48 ms")
    p.add_argument("--host-api", help="PortAudio host API, e.g. alsa, jack (default: PortAudio's)")
    p.add_argument("--hops-per-block", type=positive_int, default=1, help="audio block = this many hops (default 1)")
    p.add_argument("--seconds", type=positive_float, help="stop after this long (default: until q or Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print the exit summary as JSON")
    add_runtime_arguments(p)


def _channel_list(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels are numbers from 1, e.g. 1,2; got {text!r}") from None
    if not channels or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"channels are counted from 1, got {text!r}")
    return tuple(c - 1 for c in channels)


@contextlib.contextmanager
def _cbreak():
    """Single-key input on a terminal; a no-op elsewhere."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _key() -> str | None:
    import select

    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return sys.stdin.read(1) if ready else None


def run(args: argparse.Namespace) -> int:
    from .live import describe_devices

    if args.list_devices:
        print(describe_devices())
        return 0
    if not args.bundle:
        raise ConfigError("give a BUNDLE (or --list-devices)")
    from .live import KeyControl, open_live, run_live

    bundle = read_bundle(args.bundle)
    factory = factory_from_args(args, bundle)
    proc = factory.new(aligned=True)
    engine, (ind, outd) = open_live(proc, input_device=args.input_device or args.audio_device,
                                    output_device=args.output_device or args.audio_device, host_api=args.host_api,
                                    device_rate=args.device_rate, input_channel=args.input_channel - 1,
                                    output_channels=args.output_channels, hops_per_block=args.hops_per_block,
                                    resample_quality=args.resample_quality)
    rate = engine.device_rate
    if engine.resampled:
        print(f"the interface runs at {rate:g} Hz, the model at {proc.sample_rate} Hz: resampling in and out adds "
              f"{1000 * engine.latency_samples / rate:.1f} ms", file=sys.stderr)
    control = KeyControl(engine)
    interactive = sys.stderr.isatty() and not args.json
    if interactive:
        print(f"{bundle.path.name} on {factory.describe()}, {engine.block_frames} frames per "
              f"block at {proc.sample_rate} Hz. {control.help()}", file=sys.stderr)
    with _cbreak() as keys:
        def tick():
            if keys:
                k = _key()
                if k == "q":
                    return False
                if k:
                    control.press(k)
            if interactive:
                print("\r" + engine.status_line(), end="", file=sys.stderr, flush=True)
            return True

        try:
            summary = run_live(engine, input_device=ind, output_device=outd, seconds=args.seconds, on_tick=tick)
        except KeyboardInterrupt:
            summary = engine.summary()
    if interactive:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['callbacks']} callbacks of {summary['block_ms']:.1f} ms: xruns {summary['xruns']}, "
              f"late {summary['late_callbacks']}, p99 {summary['callback_ms_p99'] or 0:.3f} ms, "
              f"DSP load {summary['dsp_load_percent'] or 0:.1f}%")
    return 0
