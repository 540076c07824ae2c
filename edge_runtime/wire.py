"""The streaming service's sample formats on the wire, shared by the service and its client.

Frames are little-endian ``float32`` or ``int16`` PCM; int16 maps to [-1, 1) by 1/32768 and
clips on the way out.
"""

from __future__ import annotations

import numpy as np

FORMATS = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}


def encode(x: np.ndarray, fmt: str) -> bytes:
    """Float32 samples -> frame bytes in ``fmt``."""
    if fmt == "int16":
        return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(FORMATS[fmt]).tobytes()
    return x.astype(FORMATS[fmt], copy=False).tobytes()


def decode_into(data: bytes, fmt: str, out: np.ndarray) -> np.ndarray:
    """Frame bytes in ``fmt`` -> float32 samples written into ``out`` (no temporary array)."""
    raw = np.frombuffer(data, FORMATS[fmt])
    if fmt == "int16":
        np.multiply(raw, np.float32(1 / 32768), out=out, casting="unsafe")
    else:
        np.copyto(out, raw)
    return out
