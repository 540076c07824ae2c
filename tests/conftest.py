"""Shared fixtures and skip markers. Nothing here touches devices or audio at import time."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_AMP = Path(os.environ.get("EDGEAMP_REAL_AMP", REPO.parent / "shared" / "data" / "real-amp"))

HAVE_TF = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow/Keras not installed (pip install -e '.[train]')")
needs_real_amp = pytest.mark.skipif(
    not REAL_AMP.is_dir(), reason=f"real-amp recordings not found at {REAL_AMP} (set EDGEAMP_REAL_AMP)"
)


@pytest.fixture(autouse=True, scope="session")
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    yield
