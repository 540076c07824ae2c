"""Open a capture file (``.nam``, ``.aidax``, ``.json``) where a bundle is expected.

``edgeamp.load("capture.nam")`` and every command that takes a bundle accept a model file: it is
imported once into a cache folder (``~/.cache/edgeamp/captures``, or ``EDGEAMP_CACHE_DIR``, or
``--cache-dir``), keyed by the file's SHA-256, and reused while the file is unchanged. Only the IR
variant the device needs is exported and verified (over one second), so a capture plays within a
few seconds; other variants are exported into the cached bundle when a later call asks for them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from edgeamp.core.bundle import MANIFEST, read_bundle
from edgeamp.core.errors import BundleError, ModelFormatError
from edgeamp.core.hashing import sha256_file

from .formats import FORMATS, KERAS_H5, detect_format

log = logging.getLogger(__name__)
CACHE_ENV = "EDGEAMP_CACHE_DIR"
VERIFY_SECONDS = 1.0


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeamp" / "captures"


def is_capture(path) -> bool:
    """``path`` names a model file rather than a bundle directory."""
    return isinstance(path, (str, os.PathLike)) and Path(path).is_file()


def open_capture(path: Path | str, *, device: str = "auto", variant: str | None = None, strict: bool = False,
                 batched: bool = False, cache_dir: Path | str | None = None) -> Path:
    """The cached bundle of capture file ``path`` with the IR that ``device`` runs (the variant
    the runtime will choose, or ``variant``; the batched IR too with ``batched``)."""
    from edgeamp.edge_runtime.devices import choose_device

    choice = choose_device(device, mode="stateful", strict=strict)
    variants = (variant or choice.variant,) + (("batched",) if batched else ())
    precisions = ("f32", "f16") if choice.precision == "f16" else ("f32",)
    return bundle_for(path, variants=tuple(dict.fromkeys(variants)), precisions=precisions, cache_dir=cache_dir)


def bundle_for(path: Path | str, *, variants: tuple[str, ...] = ("stateful",), precisions: tuple[str, ...] = ("f32",),
               cache_dir: Path | str | None = None, sample_rate: int | None = None) -> Path:
    """The bundle of capture file ``path``, imported into the cache on first use, with the IR
    ``variants`` exported and verified in ``precisions`` (each once; later calls reuse them)."""
    path = Path(path)
    try:
        fmt = detect_format(path)
    except ModelFormatError as exc:
        raise BundleError(f"{path} is not a bundle directory, nor a model file edgeamp imports ({exc})") from exc
    if fmt == KERAS_H5:
        raise BundleError(f"{path}: a Keras .h5 says no sample rate, window or hop: import it first with "
                          f"`edgeamp import {path} OUT.bundle --original` (or give --sample-rate, --window-samples, "
                          "--hop-samples)")
    spec = next(f for f in FORMATS if f.name == fmt)
    digest = sha256_file(path)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:48] or "capture"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{stem}-{digest[:16]}{'-' + str(sample_rate) if sample_rate else ''}.bundle"
    start = time.perf_counter()
    if (target / MANIFEST).is_file():
        bundle = read_bundle(target)
        if bundle.manifest.provenance.get("imported_sha256") == digest:
            have = {(r.variant, r.precision) for r in bundle.manifest.exports.values()
                    if r.hop_samples == bundle.manifest.streaming.hop_samples}
            missing = tuple(v for v in variants if any((v, p) not in have for p in precisions))
            if missing:
                from edgeamp.export.exporter import export_bundle

                log.info("%s: exporting %s into the cached bundle %s", path.name, ", ".join(missing), target)
                export_bundle(target, variants=missing, precisions=precisions, verify_seconds=VERIFY_SECONDS)
            log.debug("%s: cached bundle %s", path.name, target)
            return target
    from .importer import import_model

    root.mkdir(parents=True, exist_ok=True)
    import_model(path, target, sample_rate=sample_rate, default_sample_rate=spec.player_rate, export=True,
                 variants=variants, precisions=precisions, verify_seconds=VERIFY_SECONDS)
    log.info("opened %s (%s) through the cache: %s (imported and verified %s in %.1f s; reused while the file is "
             "unchanged)", path.name, spec.label, target, ", ".join(variants), time.perf_counter() - start)
    return target
