"""Convert a Keras-2 / TF1 .h5 of the original experiment (CuDNNLSTM layers) into a bundle.

The per-gate kernel transposes and the bias sum are done as cuDNN requires (see
edgeamp.interop.keras_h5). .h5 files do not record the sample rate or the hop, and most do
not record the window: pass them, answer the prompts, or --original for the original
experiment's 48000 Hz, 5280-sample window, 480-sample hop.

examples:
  edgeamp import-legacy model.h5 amp.bundle --original
  edgeamp import-legacy weights.h5 amp.bundle --sample-rate 44100 --window-samples 4851 --hop-samples 441
"""

from __future__ import annotations

import argparse
import logging
import sys

from edgeamp.core.bundle import Bundle, Manifest, write_bundle
from edgeamp.core.errors import LegacyImportError
from edgeamp.core.hashing import sha256_file
from edgeamp.core.model import Streaming
from edgeamp.edge_runtime.cli_common import positive_int

from .keras_h5 import legacy_to_weights, read_legacy_h5

log = logging.getLogger(__name__)
ORIGINAL = {"sample_rate": 48000, "window_samples": 5280, "hop_samples": 480}



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.h5", help="Keras-2 model.save() or save_weights() file")
    p.add_argument("out", metavar="OUT_BUNDLE", help="bundle directory to write (replaced atomically)")
    p.add_argument("--sample-rate", type=positive_int, help="sample rate the model was trained at, in Hz")
    p.add_argument("--window-samples", type=positive_int, help="input window per hop, in samples (original: 5280)")
    p.add_argument("--hop-samples", type=positive_int,
                   help="output samples kept per window, in samples (original: 480)")
    p.add_argument("--original", action="store_true",
                   help="use the original experiment's values for whatever is not given: 48000 Hz, 5280, 480")


def _ask(name: str, given: int | None, from_file: int | None, args: argparse.Namespace) -> int:
    if given is not None:
        value = given
    elif from_file is not None:
        log.info("%s = %d (from the file's input shape)", name, from_file)
        value = from_file
    elif args.original:
        value = ORIGINAL[name]
    elif sys.stdin.isatty():
        answer = input(f"{name.replace('_', ' ')} [{ORIGINAL[name]}]: ").strip()
        value = int(answer) if answer else ORIGINAL[name]
    else:
        raise LegacyImportError(
            f"the file does not say its {name.replace('_', ' ')}: pass --{name.replace('_', '-')} "
            f"(the original experiment used {ORIGINAL[name]}) or --original"
        )
    if value < 1:
        raise LegacyImportError(f"{name} must be positive, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    model = read_legacy_h5(args.model)
    arch, weights = legacy_to_weights(model, source=args.model)
    sample_rate = _ask("sample_rate", args.sample_rate, None, args)
    window = _ask("window_samples", args.window_samples, model.window_samples, args)
    hop = _ask("hop_samples", args.hop_samples, None, args)
    if hop > window:
        raise LegacyImportError(f"hop_samples {hop} is larger than window_samples {window}")
    manifest = Manifest(
        sample_rate=sample_rate,
        architecture=arch,
        streaming=Streaming("window", hop_samples=hop, window_samples=window),
        provenance={
            "imported_from": str(args.model),
            "imported_sha256": sha256_file(args.model),
            "keras_version": model.keras_version,
            "layers": [f"{layer.name}:{layer.class_name}" for layer in model.layers],
        },
    )
    write_bundle(args.out, Bundle(manifest, weights))
    print(f"wrote {args.out}: {arch.describe()}, "
          f"window {window} / hop {hop} samples at {sample_rate} Hz")
    return 0
