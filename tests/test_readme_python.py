"""The README's "Python" section runs as written: every ```python block, in order, in one namespace."""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest

from .conftest import REPO


def python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_promised_examples():
    code = "\n".join(python_blocks())
    for needed in ("edgeamp.load(", "reset=False", "amp.gain = 7", "Pedalboard(", "NoiseGate", "Reverb",
                   "edgeamp.import_model("):
        assert needed in code, needed


@pytest.mark.skipif(importlib.util.find_spec("pedalboard") is None, reason="pedalboard not installed ([train] extra)")
def test_readme_python_blocks_run(exported_bundles, tmp_path, monkeypatch, capsys):
    import soundfile as sf

    from edgeamp.core.bundle import golden_signal

    shutil.copytree(exported_bundles["stateful"], tmp_path / "amp.bundle")
    shutil.copy(REPO / "tests" / "fixtures" / "interop" / "nam_lstm_1x6.nam", tmp_path / "capture.nam")
    sf.write(tmp_path / "di.wav", np.resize(golden_signal(48000), 48000), 48000, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEAMP_CACHE_DIR", str(tmp_path / "cache"))  # load("capture.nam") imports here
    namespace: dict = {"__name__": "readme"}
    for block in python_blocks():
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
    out = capsys.readouterr().out
    assert "<edgeamp.Amp 'amp.bundle'" in out and "outside [0.0, 10.0]" in out
    assert "LSTM 6 + dense head" in out
    for name in ("amp.wav", "chain.wav", "capture.wav"):
        y, sr = sf.read(tmp_path / name)
        assert sr == 48000 and y.shape[0] == 48000 and np.all(np.isfinite(y)) and np.abs(y).max() > 0.01
    # the knob example really moved the output
    assert not np.allclose(namespace["louder"], namespace["y"])
