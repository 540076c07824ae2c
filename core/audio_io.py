"""Audio file I/O (soundfile) and resampling (soxr): mono float32 in, same format out."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import check_writable
from .errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    subtype: str  # e.g. PCM_16, PCM_24, FLOAT
    format: str  # e.g. WAV, FLAC


def read_mono(path: Path | str, channel: int | None = None) -> tuple[np.ndarray, AudioInfo]:
    """Read one channel as float32 in [-1, 1]. ``channel`` is 0-based; default the first (said in a log line)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        raw = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"{path}: cannot read audio ({exc})") from exc
    info = AudioInfo(str(path), int(sr), data.shape[1], data.shape[0], raw.subtype, raw.format)
    if channel is None:
        channel = 0
        if data.shape[1] > 1:
            log.info("%s: %d channels, using channel 1 (choose with --channel)", path.name, data.shape[1])
    if not 0 <= channel < data.shape[1]:
        raise InputError(f"{path}: channel {channel + 1} asked for, the file has {data.shape[1]} channel(s)")
    return np.ascontiguousarray(data[:, channel]), info


def resample(x: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """High-quality resampling (soxr VHQ)."""
    if rate_from == rate_to:
        return x
    import soxr

    return soxr.resample(x, rate_from, rate_to, quality="VHQ").astype(np.float32)


def check_output_path(path: Path | str) -> str:
    """The soundfile format for an output path; a directory or an unknown extension is refused (call
    this before long work, so that nothing is computed for a file that cannot be written)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory: give a file name for the output, e.g. {path / 'out.wav'}")
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if path.suffix.lower() in (".ogg", ".mp3", ".opus"):
        raise InputError(f"{path}: {path.suffix} is a lossy format, and a model's output is compared sample for "
                         "sample: write .wav or .flac")
    if fmt is None:
        raise InputError(f"{path}: unknown audio file extension (use .wav or .flac)")
    check_writable(path)
    return fmt


def write_audio(path: Path | str, x: np.ndarray, sample_rate: int, subtype: str | None = None) -> str:
    """Write mono audio atomically (temp file + rename); returns the sample format written (``subtype``
    where the file format holds it, else the format's default, logged). PCM subtypes clip; clipped
    samples are counted."""
    import soundfile as sf

    path = Path(path)
    x = np.asarray(x, dtype=np.float32)
    if subtype and subtype.startswith("PCM"):
        clipped = int(np.count_nonzero(np.abs(x) > 1.0))
        if clipped:
            log.warning("%s: %d sample(s) beyond full scale clipped for %s", path.name, clipped, subtype)
        x = np.clip(x, -1.0, 1.0)
    fmt = check_output_path(path)
    if subtype and not sf.check_format(fmt, subtype):
        log.warning("%s: %s cannot hold %s samples; writing %s", path.name, fmt, subtype, sf.default_subtype(fmt))
        subtype = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; an output file follows the umask
    try:
        sf.write(tmp, x, sample_rate, subtype=subtype, format=fmt)
        written = sf.info(tmp).subtype
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written
