"""Shared fixtures and skip markers. Nothing here touches devices or audio at import time."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
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


@pytest.fixture(scope="session")
def exported_bundles(tmp_path_factory):
    """Small exported bundles at 48 kHz with 480-sample hops: {"stateful": path, "window": path}.

    Architecture 8-4 + head + skip + one knob (gain 0..10), random weights; IR for every variant.
    """
    from edgeamp.core.bundle import Bundle, Manifest, write_bundle
    from edgeamp.core.model import Architecture, Knob, Streaming, random_weights
    from edgeamp.export.exporter import export_bundle

    root = tmp_path_factory.mktemp("bundles")
    arch = Architecture((8, 4), head=True, skip=True, knobs=(Knob("gain", 0.0, 10.0, 5.0),))
    out = {}
    for mode, streaming in (("stateful", Streaming("stateful", 480)), ("window", Streaming("window", 480, 1440))):
        manifest = Manifest(48000, arch, streaming, input_gain=0.9, output_gain=1.1)
        path = write_bundle(root / f"{mode}.bundle", Bundle(manifest, random_weights(arch, seed=21, scale=1.2)))
        export_bundle(path, verify_seconds=0.3, window_verify_seconds=0.1)
        out[mode] = path
    return out


@pytest.fixture(scope="module")
def jack_server():
    """jackd with the dummy driver (48 kHz, 480-frame periods): paces callbacks in real time.
    Realtime scheduling where allowed (root), plain scheduling otherwise."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd not installed (Debian jackd2; .ci/system-deps installs it)")
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1", "JACK_DEFAULT_SERVER": "edgeamp-test"}
    for mode in (["-R", "-P", "70"], ["--no-realtime"]):
        proc = subprocess.Popen(["jackd", *mode, "-n", "edgeamp-test", "-d", "dummy", "-r", "48000", "-p", "480"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2.0)
        if proc.poll() is None:
            break
    else:
        pytest.fail(f"jackd did not start: {proc.stdout.read()[-2000:]}")
    yield env
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
