"""What every stage of edgeamp shares: the model description (families, the recurrent and WaveNet
models and their numpy references), the bundle format (the only hand-off between stages), errors,
config (de)serialisation, hashing, atomic writes, progress bars, quality metrics and audio file I/O.

It imports numpy and the standard library only (soundfile, soxr and tqdm lazily, where audio or a
terminal is involved): every other folder may import it, it imports none of them.
"""

from __future__ import annotations


def version() -> str:
    """The installed edgeamp distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v

    try:
        return _v("edgeamp")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"
