"""The ``edgeamp`` command: the dispatcher, above every stage (the only module that names them all).

Each subcommand lives in its stage's folder, in a module that defines ``add_arguments(parser)``
and ``run(args) -> int``; this file only lists them, so that the device-side install never
imports training code until a training subcommand actually runs (and that module imports
TensorFlow inside ``run``). A module that sets ``OPENS_BUNDLE = True`` takes a ``bundle``
argument that may also be a capture file (``.nam``, ``.aidax``, ``.json``): the dispatcher
replaces it by its cached bundle (``interop/capture.py``) before ``run``, so that the runtime's
commands never import ``interop``. ``capture_options(args)``, where a module defines it, says
what the cached bundle needs (``edgeamp serve --batch``: the batched IR).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from edgeamp.core import version
from edgeamp.core.errors import EdgeampError

# name -> (module, one-line help). Order is the order `edgeamp --help` shows.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("edgeamp.train.cli_demo", "the whole pipeline on the built-in demo data, in about 5 minutes"),
    "demo-data": ("edgeamp.train.cli_demo_data", "write the synthesised DI guitar + teacher amp recordings"),
    "train": ("edgeamp.train.cli_train", "train a model from DI/amp recordings (or --demo) into a bundle"),
    "eval": ("edgeamp.train.cli_eval", "score a bundle on a DI/amp pair: ESR, MSE, DC, spectra, plots"),
    "info": ("edgeamp.edge_runtime.cli_info", "show a bundle's manifest; --verify recomputes its golden data"),
    "import": ("edgeamp.interop.cli_import", "import a NAM .nam, AIDA-X/RTNeural or GuitarML .json, Keras-2 .h5"),
    "import-legacy": (
        "edgeamp.interop.cli_legacy",
        "convert a Keras-2/TF1 CuDNNLSTM .h5 (the original experiment) into a bundle",
    ),
    "export-model": ("edgeamp.interop.cli_export_model", "write a bundle as a NAM .nam or AIDA-X .aidax model file"),
    "export": ("edgeamp.export.cli_export", "build and verify OpenVINO IR variants (stateful, Myriad, window)"),
    "render": ("edgeamp.edge_runtime.cli_render", "render an audio file through a bundle (offline)"),
    "live": ("edgeamp.edge_runtime.cli_live", "play through the model live (duplex audio stream, 10 ms blocks)"),
    "bench": ("edgeamp.export.cli_bench", "per-hop latency of a bundle on a device: JSON, table, histogram"),
    "serve": ("edgeamp.edge_runtime.cli_serve", "run the headless streaming service (WebSocket audio, HTTP control)"),
    "stream": ("edgeamp.edge_runtime.cli_stream", "stream an audio file through a running `edgeamp serve`"),
    "devices": ("edgeamp.edge_runtime.cli_devices", "list OpenVINO devices and what edgeamp runs on each"),
}

EPILOG = """\
typical flow:
  edgeamp demo-data data/            # synthesised DI guitar + teacher amp (needs [train])
  edgeamp train --demo --preset stateful out/amp.bundle
  edgeamp export out/amp.bundle      # hand-built OpenVINO IR, verified against the reference
  edgeamp info out/amp.bundle --verify
  edgeamp import capture.nam out/capture.bundle     # a NAM or AIDA-X capture: exported and verified too
  edgeamp export-model out/amp.bundle amp.aidax --format aidax

Run `edgeamp COMMAND --help` for each command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeamp",
        description="Neural guitar-amp models: train an LSTM or GRU from DI/amp recordings (or import a NAM or "
        "AIDA-X capture), export it to "
        "OpenVINO, and run it in real time on edge devices.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeamp {version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    # -v/-q work after the subcommand too (`edgeamp train ... -v`); SUPPRESS keeps the top-level value
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    verbosity.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[verbosity],
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _module=module)
    return parser


def resolve_bundle(args: argparse.Namespace, **options) -> None:
    """Let ``args.bundle`` be a capture file: replaced by its cached bundle (imported once, with the
    IR the device needs; ``batched=True``: the batched IR too). A bundle directory is left as it is."""
    path = getattr(args, "bundle", None)
    if not path:
        return
    from edgeamp.interop import capture

    if capture.is_capture(path):
        args.bundle = str(capture.open_capture(path, device=getattr(args, "device", "auto"),
                                               variant=getattr(args, "variant", None),
                                               strict=getattr(args, "strict", False),
                                               batched=bool(options.get("batched", False)),
                                               cache_dir=getattr(args, "cache_dir", None)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if args.verbose:  # TensorFlow's native banners (oneDNN, CPU features) only with -v (train/fit.py)
        os.environ["EDGEAMP_VERBOSE"] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.command:
        parser.print_help()
        return 2
    try:
        module = args._module
        if getattr(module, "OPENS_BUNDLE", False):
            options = module.capture_options(args) if hasattr(module, "capture_options") else {}
            resolve_bundle(args, **options)
        return int(args._run(args) or 0)
    except EdgeampError as exc:
        print(f"edgeamp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeamp {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file that vanished, a full disk, a device: said in one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"edgeamp {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
