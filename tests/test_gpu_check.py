"""`make gpu-check` fails, saying why, where TensorFlow sees no GPU (this machine and CI)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO, needs_tf


@needs_tf
def test_gpu_check_fails_without_a_gpu():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--steps", "2"],
                       capture_output=True, text=True, timeout=300)
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):  # a machine with a GPU: the check must pass instead
        assert r.returncode == 0 and "gpu-check: OK" in r.stdout, r.stderr[-2000:]
    else:
        assert r.returncode == 1 and "TensorFlow sees no GPU" in r.stderr, r.stderr[-2000:]
