"""Neural Amp Modeler's standard input files: recognise them and hold out what NAM holds out.

NAM's capture signals are played through the amp as they are, so a DI/amp pair made with one of
them has a fixed layout. The v3 input plays the same 9 s validation clip at the start and again
at the end, so holding out "the last 15 %" would score a model on a clip it trained on. NAM
recognises its inputs by the MD5 of the file and, failing that, by their content; so does this
module (the content check: the two copies of the validation clip are sample-identical).

Layouts at 48 kHz (from NAM's trainer, ``nam/train/core.py``):

- v3: validation 1 at 0:00-0:09, silence, blips 0:10-0:12, chirps, noise, training data from
  0:10 on, validation 2 over the last 9 s. Training [480000, -432000), validation [-432000, end).
- v2: training data, then validation 1 and 2 (9 s each, identical) and blips over the last 2 s.
  Training [0, -960000), validation [-960000, -528000).
- v1: training data, validation over the last 9 s. Training [0, -432000), validation [-432000, end).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RATE = 48_000
VALIDATION = 432_000  # 9 s

# MD5 of NAM's standard input files (as NAM's trainer checks them) -> version
STANDARD_MD5 = {
    "4d54a958861bf720ec4637f43d44a7ef": "1.0.0",
    "7c3b6119c74465f79d96c761a0e27370": "1.1.1",
    "ede3b9d82135ce10c7ace3bb27469422": "2.0.0",
    "36cd1af62985c2fac3e654333e36431e": "3.0.0",
}


@dataclass(frozen=True)
class NamLayout:
    """Where NAM trains and validates in one of its standard inputs: ``(start, stop)`` sample ranges
    of the file, negative values counted from its end (``stop`` None: to the end)."""

    version: str
    train: tuple[int, int | None]
    validation: tuple[int, int | None]
    how: str  # "file hash" or "content"

    def ranges(self, n: int, offset: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
        """Absolute ``(start, stop)`` ranges in a signal of ``n`` samples that starts ``offset``
        samples into the file (what loading trimmed from the front)."""
        def absolute(r):
            file_n = n + offset
            lo = r[0] if r[0] >= 0 else file_n + r[0]
            hi = file_n if r[1] is None else (r[1] if r[1] >= 0 else file_n + r[1])
            return max(lo - offset, 0), max(min(hi - offset, n), 0)
        return absolute(self.train), absolute(self.validation)


LAYOUTS = {
    "1": ((0, -VALIDATION), (-VALIDATION, None)),
    "2": ((0, -960_000), (-960_000, -528_000)),
    "3": ((480_000, -VALIDATION), (-VALIDATION, None)),
}


def detect(path: str | Path, x: np.ndarray | None = None, rate: int | None = None) -> NamLayout | None:
    """The layout if ``path`` is one of NAM's standard inputs (``x``, ``rate``: its samples, read
    here when not given), else None."""
    path = Path(path)
    md5 = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            md5.update(block)
    version = STANDARD_MD5.get(md5.hexdigest())
    how = "file hash"
    if version is None:
        if x is None or rate is None:
            import soundfile as sf

            x, rate = sf.read(str(path), dtype="float32", always_2d=True)
            x = x[:, 0]
        version, how = _by_content(x, rate), "content"
    if version is None:
        return None
    train, validation = LAYOUTS[version.split(".")[0]]
    return NamLayout(version, train, validation, how)


def _by_content(x: np.ndarray, rate: int) -> str | None:
    if rate != RATE:
        return None
    n = x.shape[0]
    if n >= 2 * VALIDATION + 96_000 and np.any(x[:VALIDATION]) and np.array_equal(x[:VALIDATION], x[-VALIDATION:]):
        return "3.0.0"  # the validation clip at the start and at the end
    if n >= 960_000 + VALIDATION and np.any(x[-960_000:-528_000]) and np.array_equal(
            x[-960_000:-528_000], x[-528_000:-96_000]):
        return "2.0.0"  # two copies of the validation clip before the closing blips
    return None
