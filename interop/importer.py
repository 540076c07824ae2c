"""Import another tool's model file as a bundle; write a bundle as another tool's model file.

Every format goes through the one table in :mod:`formats`; the Keras-2 ``.h5`` through
``interop/keras_h5.py``. An import is staged in a sibling folder and swapped in only once it is
written, exported and verified: a bundle already at ``out`` stays as it was when the import
fails or is interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeamp.core import reference
from edgeamp.core.atomic import atomic_write_bytes, check_writable
from edgeamp.core.audio_io import write_audio
from edgeamp.core.bundle import (
    IR_DIR,
    Bundle,
    Manifest,
    announce_replacement,
    check_bundle_target,
    read_bundle,
    write_bundle,
)
from edgeamp.core.errors import ModelFormatError
from edgeamp.core.hashing import sha256_file
from edgeamp.core.model import Streaming, hop_from_ms

from .common import Imported, bounded_metadata, check_cost
from .formats import FORMATS, KERAS_H5, WRITERS, detect_format, read_json_model

log = logging.getLogger(__name__)
LEGACY_ORIGINAL = {"sample_rate": 48000, "window_samples": 5280, "hop_samples": 480}


def read_model(path: Path | str, *, knob_names: list[str] | None = None) -> Imported:
    """A ``.nam``, RTNeural/AIDA-X or GuitarML JSON model file, parsed and checked (nothing is
    written). A Keras ``.h5`` needs a window and hop: use :func:`import_model`."""
    path = Path(path)
    if detect_format(path) == KERAS_H5:
        raise ModelFormatError(f"{path}: a Keras .h5 holds no sample rate, window or hop: import it with "
                               "import_model(..., sample_rate=..., window_samples=..., hop_samples=...) or "
                               "`edgeamp import` (--original for the original experiment's)")
    return read_json_model(path, knob_names)[1]


def check_against_file(model: Imported) -> dict | None:
    """How close the numpy reference comes to the file's own test output (AIDA-X's
    ``input_batch``/``output_batch``: gains at 1, parameters at 0, from zero state), or None."""
    if model.check is None:
        return None
    x, y = model.check
    out, _ = reference.run_stateful(model.architecture, model.weights, x[None].astype(np.float64))
    err = np.abs(out[0] - y.astype(np.float64))
    return {"samples": int(y.shape[0]), "max_abs_error": float(err.max()),
            "esr": float(np.sum(err**2) / max(float(np.sum(y.astype(np.float64) ** 2)), 1e-30))}


def _legacy(path: Path, sample_rate: int | None, window_samples: int | None, hop_samples: int | None,
            original: bool):
    from edgeamp.interop.keras_h5 import legacy_to_weights, read_legacy_h5

    model = read_legacy_h5(path)
    arch, weights = legacy_to_weights(model, source=str(path))
    given = {"sample_rate": sample_rate, "window_samples": window_samples or model.window_samples,
             "hop_samples": hop_samples}
    for name, value in given.items():
        if value is None and not original:
            raise ModelFormatError(f"{path}: a Keras .h5 does not say its {name.replace('_', ' ')}: pass "
                                   f"--{name.replace('_', '-')} (the original experiment used "
                                   f"{LEGACY_ORIGINAL[name]}) or --original")
        given[name] = value or LEGACY_ORIGINAL[name]
    if given["hop_samples"] > given["window_samples"]:
        raise ModelFormatError(f"{path}: hop_samples {given['hop_samples']} is larger than window_samples "
                               f"{given['window_samples']}")
    streaming = Streaming("window", hop_samples=given["hop_samples"], window_samples=given["window_samples"])
    imported = Imported(KERAS_H5, arch, weights, given["sample_rate"],
                        {"keras_version": model.keras_version,
                         "layers": [f"{layer.name}:{layer.class_name}" for layer in model.layers]})
    return imported, streaming


def import_model(path: Path | str, out: Path | str, *, sample_rate: int | None = None, hop_ms: float = 10.0,
                 hop_samples: int | None = None, knob_names: list[str] | None = None, export: bool = False,
                 variants: tuple[str, ...] | None = None, precisions: tuple[str, ...] = ("f32", "f16"),
                 verify_seconds: float = 10.0, window_samples: int | None = None, original: bool = False,
                 default_sample_rate: int | None = None) -> Bundle:
    """Write the bundle of a model file at ``out`` and return it: a NAM ``.nam``, an RTNeural/AIDA-X
    or GuitarML JSON (stateful streaming, ``hop_ms`` hops), or a Keras-2 ``.h5`` of the original
    experiment (window mode: ``window_samples``/``hop_samples``, or ``original=True`` for 5280/480
    at 48000 Hz). The sample rate comes from the file where it says one; ``sample_rate`` must agree
    with it, and is required where the file says none. ``export``: also build and verify its
    OpenVINO IR (``variants``, ``precisions``: which; default every variant the bundle's mode has,
    f32 and f16). ``default_sample_rate``: the rate to assume, with a log line, where neither the file
    nor ``sample_rate`` says one. Nothing is written on error, and a bundle already at ``out`` is
    kept until the new one is complete.

    ::

        bundle = edgeamp.import_model("capture.nam", "capture.bundle", export=True)
        amp = edgeamp.load(bundle)
    """
    path = Path(path)
    out = Path(out)
    check_bundle_target(out)
    announce_replacement(out, "the import")
    fmt = detect_format(path)
    if fmt == KERAS_H5:
        model, streaming = _legacy(path, sample_rate, window_samples, hop_samples, original)
        rate = model.sample_rate
    else:
        if window_samples or original:
            raise ModelFormatError(f"{path} is not a Keras .h5: a window length and --original do not apply")
        spec, model = read_json_model(path, knob_names)
        rate = model.sample_rate
        if rate is None and sample_rate is None and default_sample_rate is not None:
            log.info("%s says no sample rate: taken as %d Hz (%s; import it with --sample-rate to choose another)",
                     path.name, default_sample_rate, spec.rate_hint)
            sample_rate = default_sample_rate
        if rate is None and sample_rate is None:
            raise ModelFormatError(f"{path}: the file does not say its sample rate; pass --sample-rate "
                                   f"({spec.rate_hint})")
        if rate is not None and sample_rate is not None and rate != sample_rate:
            raise ModelFormatError(f"{path}: the file says {rate} Hz, --sample-rate says {sample_rate} Hz: a model "
                                   "only sounds right at its own rate (edgeamp resamples other rates at run time)")
        rate = rate or sample_rate
        streaming = Streaming("stateful", hop_samples or hop_from_ms(hop_ms, rate))
    check_cost(model.architecture, str(path), rate)  # before minutes of export and verification
    model = replace(model, metadata=bounded_metadata(model.metadata))
    provenance = {
        "imported_from": path.name,
        "imported_sha256": _source_hash(path),
        "source_format": model.format,
        "source_version": model.version,
        "source_metadata": model.metadata,
    }
    check = check_against_file(model)
    if check is not None:
        provenance["source_check"] = check
        log.info("%s: the file's own test output (%d samples) reproduced within %.2e max abs (ESR %.2e)", path.name,
                 check["samples"], check["max_abs_error"], check["esr"])
    manifest = Manifest(sample_rate=rate, architecture=model.architecture, streaming=streaming,
                        input_gain=model.input_gain, output_gain=model.output_gain, provenance=provenance)
    check_writable(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-{os.getpid()}-", dir=out.absolute().parent))
    try:
        staged = staging / out.name
        write_bundle(staged, Bundle(manifest, model.weights))
        if export:
            from edgeamp.export.exporter import export_bundle

            export_bundle(staged, variants=variants, precisions=precisions, verify_seconds=verify_seconds)
        bundle = read_bundle(staged)
        # the old bundle's IR (other hops, other variants) belong to the old model: not carried over
        folders = {IR_DIR: staged / IR_DIR} if (staged / IR_DIR).is_dir() else {}
        write_bundle(out, replace(bundle, path=None), keep_ir=False, folders=folders)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported %s (%s, %s) at %d Hz into %s", path.name, model.format, model.architecture.describe(), rate,
             out)
    return read_bundle(out)


def _source_hash(path: Path) -> str:
    """SHA-256 of the model file, or of a NAM model directory's config.json and weights.npy together."""
    if not path.is_dir():
        return sha256_file(path)
    import hashlib

    h = hashlib.sha256()
    for name in ("config.json", "weights.npy"):
        h.update(bytes.fromhex(sha256_file(path / name)))
    return h.hexdigest()


def export_model(bundle: Bundle | Path | str, out: Path | str, fmt: str, **options) -> Path:
    """Write ``bundle`` as a ``fmt`` (``nam`` or ``aidax``) file at ``out``, atomically. Features the
    format cannot express are refused with ModelFormatError naming them, before anything is written.
    ``options`` go to the format's writer (``nam``: ``loudness_input``; ``aidax``: ``strict``)."""
    if fmt not in WRITERS:
        raise ModelFormatError(f"unknown format {fmt!r}; choose {' or '.join(WRITERS)}")
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(bundle)
    out = Path(out)
    spec = WRITERS[fmt]
    if out.is_dir():
        raise ModelFormatError(f"{out} is a directory; give the file to write, e.g. {out / ('amp' + spec.suffix)}")
    bundle, taps = split_fir(bundle, spec.label)
    doc = spec.write(bundle, **options)
    path = atomic_write_bytes(out, (json.dumps(doc, allow_nan=False) + "\n").encode())
    if taps is not None:
        ir = ir_path(out)
        write_audio(ir, taps.astype(np.float32), bundle.manifest.sample_rate, "FLOAT")
        log.info("%s: the model's %d-tap FIR stage (a cabinet-like response) is %s: load it in the player's IR "
                 "loader, unnormalised, at %d Hz", out.name, taps.shape[0], ir.name, bundle.manifest.sample_rate)
    return path


def ir_path(out: Path | str) -> Path:
    """Where :func:`export_model` writes a FIR stage as an impulse response: ``amp.nam`` -> ``amp_ir.wav``."""
    out = Path(out)
    return out.with_name(out.stem + "_ir.wav")


def split_fir(bundle: Bundle, label: str) -> tuple[Bundle, np.ndarray | None]:
    """A model with a FIR stage as the model without it and the taps: NAM and AIDA-X players convolve
    an impulse response after the model, which is where edgeamp's FIR stage sits (after the head),
    so model file + IR reproduce it exactly. With an input skip the FIR comes before the skip's add,
    which an IR after the model cannot do: refused by name."""
    arch = bundle.architecture
    if not getattr(arch, "fir_taps", 0):
        return bundle, None
    if arch.skip:
        raise ModelFormatError(f"{label}: this model's FIR stage comes before its input skip is added; a player's "
                               "impulse response comes after the whole model, so the pair would not be this model")
    plain = replace(arch, fir_taps=0)
    manifest = replace(bundle.manifest, architecture=plain, exports={})
    return Bundle(manifest, replace(bundle.weights, fir_taps=None), None, bundle.path), np.asarray(
        bundle.weights.fir_taps, np.float64)


__all__ = ["FORMATS", "check_against_file", "export_model", "import_model", "read_model"]
