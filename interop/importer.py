"""Import another tool's model file as a bundle; write a bundle as another tool's model file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgeamp.edge_runtime.atomic import atomic_write_bytes
from edgeamp.edge_runtime.bundle import Bundle, Manifest, check_bundle_target, read_bundle, write_bundle
from edgeamp.edge_runtime.errors import ModelFormatError
from edgeamp.edge_runtime.hashing import sha256_file
from edgeamp.edge_runtime.model import Streaming, hop_from_ms

from .common import Imported, detect_format, read_json
from .nam import read_nam, to_nam
from .rtneural import read_rtneural, to_rtneural

log = logging.getLogger(__name__)
EXPORT_FORMATS = {"nam": (to_nam, ".nam"), "aidax": (to_rtneural, ".aidax")}


def read_model(path: Path | str, *, knob_names: list[str] | None = None) -> Imported:
    """A NAM ``.nam`` or RTNeural/AIDA-X JSON model file, parsed and checked (nothing is written)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "keras-h5":
        raise ModelFormatError(f"{path}: a Keras .h5: import it with `edgeamp import` (or import-legacy), which "
                               "asks for its window and hop")
    doc = read_json(path)
    if fmt == "nam":
        if knob_names:
            raise ModelFormatError(f"{path}: a NAM LSTM has no knobs to name")
        return read_nam(doc, str(path))
    return read_rtneural(doc, str(path), knob_names)


def import_model(path: Path | str, out: Path | str, *, sample_rate: int | None = None, hop_ms: float = 10.0,
                 hop_samples: int | None = None, knob_names: list[str] | None = None, export: bool = False) -> Bundle:
    """Write the bundle of a NAM or RTNeural model file at ``out`` (stateful streaming, ``hop_ms``
    hops) and return it. The sample rate comes from the file where it says one; ``sample_rate``
    must agree with it, and is required where the file says none. ``export``: also build and
    verify its OpenVINO IR (what ``edgeamp.load`` runs). Nothing is written on error.

    ::

        bundle = edgeamp.import_model("capture.nam", "capture.bundle", export=True)
        amp = edgeamp.load(bundle)
    """
    path = Path(path)
    check_bundle_target(out)
    model = read_model(path, knob_names=knob_names)
    rate = model.sample_rate
    if rate is None and sample_rate is None:
        what = "NAM's docs say to assume 48000 Hz" if model.format == "nam" else "AIDA-X runs models at 48000 Hz"
        raise ModelFormatError(f"{path}: the file does not say its sample rate; pass --sample-rate ({what})")
    if rate is not None and sample_rate is not None and rate != sample_rate:
        raise ModelFormatError(f"{path}: the file says {rate} Hz, --sample-rate says {sample_rate} Hz: a model only "
                               "sounds right at its own rate (edgeamp resamples other rates at run time)")
    rate = rate or sample_rate
    hop = hop_samples or hop_from_ms(hop_ms, rate)
    manifest = Manifest(
        sample_rate=rate,
        architecture=model.architecture,
        streaming=Streaming("stateful", hop),
        provenance={
            "imported_from": path.name,
            "imported_sha256": sha256_file(path),
            "source_format": model.format,
            "source_version": model.version,
            "source_metadata": model.metadata,
        },
    )
    write_bundle(out, Bundle(manifest, model.weights))
    log.info("imported %s (%s, %s) at %d Hz into %s", path.name, model.format, model.architecture.describe(), rate,
             out)
    if export:
        from edgeamp.export.exporter import export_bundle

        return export_bundle(out)
    return read_bundle(out)


def export_model(bundle: Bundle | Path | str, out: Path | str, fmt: str) -> Path:
    """Write ``bundle`` as a ``fmt`` (``nam`` or ``aidax``) file at ``out``, atomically. Features the
    format cannot express are refused with ModelFormatError naming them, before anything is written."""
    if fmt not in EXPORT_FORMATS:
        raise ModelFormatError(f"unknown format {fmt!r}; choose {' or '.join(EXPORT_FORMATS)}")
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(bundle)
    out = Path(out)
    if out.is_dir():
        example = out / ("amp" + EXPORT_FORMATS[fmt][1])
        raise ModelFormatError(f"{out} is a directory; give the file to write, e.g. {example}")
    convert, _ = EXPORT_FORMATS[fmt]
    doc = convert(bundle)
    return atomic_write_bytes(out, (json.dumps(doc, allow_nan=False) + "\n").encode())
