"""The Myriad-target IR on the last OpenVINO release with the Myriad plugin (2022.3, Python 3.10).

A Python 3.10 virtual environment with ``openvino==2022.3.2`` and edgeamp's base install (no
TensorFlow) is created once and cached in ``$EDGEAMP_PY310_ENV`` (default
``~/.cache/edgeamp/py310-ov2022.3``). In it, the explicit-state IR written by today's
exporter is read by 2022.3's CPU plugin through edgeamp's own engine, rendered hop by hop
and compared with the numpy reference computed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeamp.core.bundle import Bundle, Manifest, write_bundle
from edgeamp.core.model import Architecture, Knob, Streaming, random_weights
from edgeamp.export.exporter import export_bundle, reference_output, verification_signal

from ..conftest import REPO

OV_2022 = "2022.3.2"


def find_python310() -> str | None:
    """A working Python 3.10 (a pyenv shim may exist and still refuse to run)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [os.environ.get("EDGEAMP_PYTHON310", "")]
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/3.10*/bin/python3.10"))
    candidates += [shutil.which("python3.10") or ""]
    for c in candidates:
        if not c or not Path(c).exists():
            continue
        probe = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 10)":
            return c
    return None


PY310 = find_python310()
pytestmark = [
    pytest.mark.py310_openvino2022,
    pytest.mark.skipif(PY310 is None, reason="no Python 3.10 found (pyenv, python3.10 or $EDGEAMP_PYTHON310)"),
]


@pytest.fixture(scope="module")
def py310_env() -> Path:
    env = Path(os.environ.get("EDGEAMP_PY310_ENV", Path.home() / ".cache" / "edgeamp" / "py310-ov2022.3"))
    python = env / "bin" / "python"
    marker = env / f".openvino-{OV_2022}"
    if not marker.exists():
        shutil.rmtree(env, ignore_errors=True)
        subprocess.run([PY310, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"openvino=={OV_2022}", "numpy<2"], check=True)
        marker.touch()
    # edgeamp itself: reinstalled every run (no deps: they are pinned above or light)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
        check=True, capture_output=True,
    )
    subprocess.run([str(python), "-m", "pip", "install", "-q", "tqdm", "soundfile", "soxr"], check=True,
                   capture_output=True)
    return python


SCRIPT = r"""
import sys, json, numpy as np
import edgeamp.edge_runtime as er
from edgeamp.edge_runtime import ov_compat
from edgeamp.core.bundle import read_bundle
from edgeamp.edge_runtime.engines import OpenVINOEngine, initial_inputs
assert "tensorflow" not in sys.modules
bundle_path, data_path, out_path = sys.argv[1:4]
b = read_bundle(bundle_path)
d = np.load(data_path)
results = {"openvino": ov_compat.version(), "python": sys.version.split()[0]}
for key, e in sorted(b.manifest.exports.items()):
    engine = OpenVINOEngine(b.path / e.xml, e.variant, b.architecture, e.hop_samples,
                            window_samples=e.window_samples, initial=initial_inputs(b.architecture, b.weights))
    audio, knobs = d["audio"], d["knobs"]
    hop = e.hop_samples
    y = np.concatenate([engine.run_hop(audio[i:i + hop], knobs[i:i + hop]).copy()
                        for i in range(0, len(audio), hop)])
    results[key] = float(np.max(np.abs(y - d["ref_" + e.variant])))
json.dump(results, open(out_path, "w"))
"""


def _run_on_2022_3(py310_env, tmp_path, path, seconds: float) -> dict:
    """Export ``path``'s explicit-state and stateful IR here, stream them in the 2022.3 venv, and return
    each IR's max abs error against the reference computed here (and the versions it ran on)."""
    import json

    bundle = export_bundle(path, variants=("explicit_state", "stateful"), verify_seconds=seconds)
    audio, knobs = verification_signal(bundle, seconds, 480)
    data = {"audio": audio, "knobs": knobs}
    for variant in ("explicit_state", "stateful"):
        data[f"ref_{variant}"] = reference_output(bundle, variant, audio, knobs, 480)
    np.savez(tmp_path / "data.npz", **data)
    proc = subprocess.run(
        [str(py310_env), "-c", SCRIPT, str(path), str(tmp_path / "data.npz"), str(tmp_path / "out.json")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize("arch", [
    Architecture((16, 8), head=True, skip=True, knobs=(Knob("gain"),)),
    Architecture((12,), head=True, skip=True, cell="gru"),  # GRUSequence (an AIDA-X GRU-12)
    Architecture((6, 6), head=True, initial_state=True),  # a NAM LSTM's stored start state
], ids=["lstm", "gru", "lstm-initial-state"])
def test_explicit_state_ir_runs_on_openvino_2022_3(py310_env, tmp_path, arch):
    manifest = Manifest(48000, arch, Streaming("stateful", 480))
    path = write_bundle(tmp_path / "amp.bundle", Bundle(manifest, random_weights(arch, seed=11, scale=1.0)))
    results = _run_on_2022_3(py310_env, tmp_path, path, 0.5)
    assert results["openvino"].startswith("2022.3"), results
    assert results["python"].startswith("3.10")
    assert results["explicit_state-f32"] <= 1e-5, results
    assert results["explicit_state-f16"] <= 5e-3, results  # FP16 weights: reported, loosely bounded
    assert results["stateful-f32"] <= 1e-5, results


def test_render_with_explicit_state_ir_on_openvino_2022_3(py310_env, tmp_path):
    """`edgeamp render` of a WAV file with the Myriad-target IR, in the 2022.3 environment."""
    import soundfile as sf

    from edgeamp.core.bundle import compute_output

    arch = Architecture((16, 8), head=True, knobs=(Knob("gain"),))
    path = write_bundle(tmp_path / "amp.bundle",
                        Bundle(Manifest(48000, arch, Streaming("stateful", 480)), random_weights(arch, seed=4)))
    bundle = export_bundle(path, variants=("explicit_state",), verify_seconds=0.3)
    audio, _ = verification_signal(bundle, 0.7, 480)
    sf.write(tmp_path / "di.wav", audio, 48000, subtype="FLOAT")
    proc = subprocess.run(
        [str(py310_env), "-m", "edgeamp", "render", str(path), str(tmp_path / "di.wav"),
         str(tmp_path / "out.wav"), "--device", "CPU", "--variant", "explicit_state", "--precision", "f32",
         "--knob", "gain=8"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPU (explicit_state IR, f32)" in proc.stdout
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    knobs = np.full((audio.shape[0], 1), arch.knobs[0].normalise(8.0), np.float32)
    ref = compute_output(bundle.manifest, bundle.weights, audio, knobs)
    assert rate == 48000 and y.shape == audio.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_wavenet_explicit_state_ir_runs_on_openvino_2022_3(py310_env, tmp_path):
    """A NAM WaveNet (nano, with its prewarmed start state): the Myriad-target IR on 2022.3."""
    from edgeamp.core.wavenet import nam_preset
    from edgeamp.core.wavenet import random_weights as wavenet_weights

    arch = nam_preset("nano")
    path = write_bundle(tmp_path / "wn.bundle", Bundle(Manifest(48000, arch, Streaming("stateful", 480)),
                                                       wavenet_weights(arch, seed=3)))
    results = _run_on_2022_3(py310_env, tmp_path, path, 0.3)
    assert results["openvino"].startswith("2022.3"), results
    assert results["explicit_state-f32"] <= 1e-6, results
    assert results["stateful-f32"] <= 1e-6, results
    assert results["explicit_state-f16"] <= 5e-3, results


@pytest.mark.parametrize("name", ["smartamp_5x10", "smartamppro_24"])
def test_guitarml_convolutional_captures_run_on_openvino_2022_3(py310_env, tmp_path, name):
    """A SmartGuitarAmp WaveNet (a layer array per layer, its carry channel) and a SmartAmpPro model
    (the 120-tap front conv1d, the LSTM with its forget gate held shut at -1e4, which FP16 keeps):
    the Myriad-target IR on 2022.3."""
    from pathlib import Path

    from edgeamp.interop.importer import import_model

    fix = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
    path = import_model(fix / f"{name}.json", tmp_path / "gml.bundle", sample_rate=48000, hop_samples=480).path
    results = _run_on_2022_3(py310_env, tmp_path, path, 0.3)
    assert results["openvino"].startswith("2022.3"), results
    assert results["explicit_state-f32"] <= 1e-5, results
    assert results["stateful-f32"] <= 1e-5, results
    assert results["explicit_state-f16"] <= 5e-3, results
