"""The base (device) install: commands that need the [train] extra say what to install, write
nothing, and what can work without it (eval's metrics) does. TensorFlow, pedalboard and
matplotlib are blocked in a subprocess to stand in for an install without them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

BLOCK = r"""
import os, sys
BLOCKED = tuple(os.environ.get("EDGEAMP_TEST_BLOCK", "tensorflow,keras,pedalboard,matplotlib").split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import importlib.util
_find = importlib.util.find_spec
def find_spec(name, package=None):
    if name.split('.')[0] in BLOCKED:
        return None
    return _find(name, package)
importlib.util.find_spec = find_spec
from edgeamp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _edgeamp(*args, cwd=None, block=None):
    import os

    env = {**os.environ, **({"EDGEAMP_TEST_BLOCK": block} if block else {})}
    return subprocess.run([sys.executable, "-c", BLOCK, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


@pytest.mark.parametrize("command", [["demo-data", "data"], ["demo", "--out-dir", "demo-out"]])
def test_demo_commands_say_what_to_install_and_write_nothing(tmp_path, command):
    r = _edgeamp(*command, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "pip install 'edgeamp[train]'" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # was: a half-written data folder


@pytest.mark.parametrize("command", [["demo-data", "data"], ["train", "--demo", "out.bundle", "--steps", "1"]])
def test_demo_data_without_scipy_says_so_and_writes_nothing(tmp_path, command):
    """Regression: with pedalboard but without scipy, demo-data and train --demo ended in a scipy
    traceback and left a half-written folder."""
    r = _edgeamp(*command, cwd=tmp_path, block="scipy")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "needs scipy" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_eval_prints_metrics_without_matplotlib(tmp_path, exported_bundles):
    import soundfile as sf

    from edgeamp.core.bundle import golden_signal

    x = np.resize(golden_signal(48000), 24000)
    sf.write(tmp_path / "di.wav", x, 48000, subtype="FLOAT")
    sf.write(tmp_path / "amp.wav", np.tanh(3 * x), 48000, subtype="FLOAT")
    r = _edgeamp("eval", exported_bundles["stateful"], "--input", tmp_path / "di.wav", "--target",
                 tmp_path / "amp.wav", "--device", "CPU", "--out-dir", tmp_path / "eval")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ESR pre-emphasis" in r.stdout and "no PNG: pip install matplotlib" in r.stdout
    assert (tmp_path / "eval" / "di_metrics.json").is_file()
    # files at another rate: refused with the flag to pass, scored at the model's rate with it
    sf.write(tmp_path / "di44.wav", np.resize(golden_signal(44100), 22050), 44100, subtype="FLOAT")
    sf.write(tmp_path / "amp44.wav", np.tanh(3 * np.resize(golden_signal(44100), 22050)), 44100, subtype="FLOAT")
    args = ("eval", exported_bundles["stateful"], "--input", tmp_path / "di44.wav", "--target", tmp_path / "amp44.wav",
            "--device", "CPU", "--out-dir", tmp_path / "eval44")
    r = _edgeamp(*args)
    assert r.returncode == 2 and "pass --resample" in r.stderr
    r = _edgeamp(*args, "--resample")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resampled from 44100 Hz to the model's 48000 Hz" in r.stdout
