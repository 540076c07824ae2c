"""Play through the model live: a duplex audio stream (sounddevice/PortAudio) in 10 ms blocks.

The callback copies the input in, runs the hop, copies the output out, and counts xruns and
late callbacks. A status line shows DSP load, p99 callback time, xruns and knob values; a
summary is printed on exit. Keys (on a terminal): b = bypass on/off, r = reset the model state,
1-9 = select a knob, + / - = turn it by a twentieth of its range, q = quit (Ctrl-C works too).

examples:
  edgeamp live amp.bundle                                  # default devices
  edgeamp live amp.bundle --input-device 2 --output-device 2 --knob gain=7
  edgeamp live amp.bundle --host-api jack --seconds 10 --json   # headless, e.g. under JACK
  edgeamp live --list-devices
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .bundle import read_bundle
from .cli_common import add_runtime_arguments, factory_from_args, positive_float, positive_int
from .errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", nargs="?")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--input-device", help="input device: index or part of its name")
    p.add_argument("--output-device", help="output device: index or part of its name")
    p.add_argument("--host-api", help="PortAudio host API, e.g. alsa, jack (default: PortAudio's)")
    p.add_argument("--hops-per-block", type=positive_int, default=1, help="audio block = this many hops (default 1)")
    p.add_argument("--seconds", type=positive_float, help="stop after this long (default: until q or Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print the exit summary as JSON")
    add_runtime_arguments(p)


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
    if args.list_devices:
        import sounddevice as sd

        print(sd.query_devices())
        return 0
    if not args.bundle:
        raise ConfigError("give a BUNDLE (or --list-devices)")
    from .live import KeyControl, LiveEngine, run_live

    bundle = read_bundle(args.bundle)
    factory = factory_from_args(args, bundle)
    proc = factory.new(aligned=True)
    engine = LiveEngine(proc, proc.hop_samples * args.hops_per_block)
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
            summary = run_live(engine, input_device=args.input_device, output_device=args.output_device,
                               host_api=args.host_api, seconds=args.seconds, on_tick=tick)
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
