"""Write the built-in demo data: a synthesised DI guitar performance and the teacher amp's output.

Files: di.wav, amp_g<gain>_t<tone>.wav for each knob setting, demo.json (seed, knobs, files).
Deterministic: the same --seed gives the same files.

examples:
  edgeamp demo-data data/
  edgeamp demo-data data/ --grid 0,5,10x2,5,8     # gain values x tone values
"""

from __future__ import annotations

import argparse

from edgeamp.core.errors import ConfigError
from edgeamp.edge_runtime.cli_common import positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--demo-seconds", dest="seconds", type=positive_float, default=120.0,
                   help="length of the performance (default 120)")
    p.add_argument("--seconds", dest="seconds", type=positive_float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=2024, help="performance seed (default 2024)")
    p.add_argument("--grid", help="knob grid GAINS x TONES, e.g. 0,5,10x2,5,8 (default: 5x5)")


def parse_grid(text: str | None) -> list[tuple[float, float]]:
    if not text:
        return [(5.0, 5.0)]
    try:
        gains, tones = text.lower().split("x")
        return [(float(g), float(t)) for g in gains.split(",") for t in tones.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--grid takes GAINS x TONES like 0,5,10x2,5,8; got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    from .demo_data import require_demo, write_demo_data

    require_demo()  # checked before anything is written

    demo = write_demo_data(args.out_dir, args.seconds, args.seed, parse_grid(args.grid))
    print(f"wrote {demo.di} and {len(demo.targets)} teacher render(s) to {args.out_dir}")
    return 0
