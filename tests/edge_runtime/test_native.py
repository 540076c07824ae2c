"""The native CPU engine (edge_runtime/native.py, native/kernel.cpp): every block against the numpy
reference, the backend choice, and an install without a compiler."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeamp.core import wavenet
from edgeamp.core.bundle import Bundle, Manifest, write_bundle
from edgeamp.core.errors import BundleError, ConfigError
from edgeamp.core.metrics import esr
from edgeamp.core.model import Architecture, Dense, Knob, Streaming, random_weights
from edgeamp.edge_runtime import native
from edgeamp.edge_runtime.engines import NumpyEngine
from edgeamp.edge_runtime.session import ProcessorFactory

pytestmark = pytest.mark.skipif(native.unavailable_reason() is not None,
                                reason=f"native engine not built: {native.unavailable_reason()}")
REPO = Path(__file__).resolve().parents[2]


def _feather(activation: str, gated: bool) -> wavenet.WaveNetArchitecture:
    arrays = wavenet.nam_preset("feather").arrays
    return wavenet.WaveNetArchitecture(tuple(dataclasses.replace(a, activation=activation, gated=gated)
                                             for a in arrays))


MODELS = {
    "lstm12": Architecture((12,), head=True),
    "lstm32-skip": Architecture((32,), head=True, skip=True),
    "lstm-seed": Architecture((64, 64, 1)),
    "lstm-wide-input": Architecture((20, 24), head=True),  # the second layer's input is projected per hop
    "gru24": Architecture((24,), head=True, cell="gru"),
    "gru-stack": Architecture((16, 8), head=True, cell="gru", skip=True),
    "knobs-fir-h0": Architecture((8, 4), head=True, skip=True, knobs=(Knob("gain"), Knob("tone")), fir_taps=64,
                                 initial_state=True),
    "front-hidden": Architecture((20,), head=True, front=(Dense(8, "tanh"), Dense(6, "relu", 3, 2)),
                                 hidden=(Dense(5, "prelu"), Dense(7, "softmax"), Dense(4, "elu", 2, 3),
                                         Dense(3, "sigmoid"))),
    # a long conv1d on the audio itself (SmartAmpPro's 120-tap FIR bank; the kernel's time-vectorised
    # form), dilated with prelu, and linear
    "fir-bank-front": Architecture((12,), head=True, front=(Dense(4, "", 120), Dense(3, "prelu", 5, 3))),
    "fir-bank-tanh-dilated": Architecture((8,), head=True, front=(Dense(5, "tanh", 17, 4),)),
    "fir-bank-prelu": Architecture((6,), head=True, front=(Dense(4, "prelu", 9, 2),)),
    "fir-bank-softmax": Architecture((6,), head=True, front=(Dense(3, "softmax", 7),)),
    "wavenet-standard": wavenet.nam_preset("standard"),
    "wavenet-nano": wavenet.nam_preset("nano"),
    **{f"wavenet-{act}": _feather(act, gated) for act, gated in
       (("ReLU", True), ("Sigmoid", False), ("SiLU", False), ("Softsign", False), ("Hardswish", False),
        ("Hardsigmoid", False), ("ELU", False), ("LeakyReLU", False), ("Hardtanh", True))},
}


def _weights(arch):
    return wavenet.random_weights(arch, seed=3) if arch.family == "wavenet" else random_weights(arch, seed=3)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("hop", [480, 37])
def test_native_engine_follows_the_reference(name, hop):
    """Every block the two families have, at a hop that fills the kernel's vectors and one that does not;
    reset returns to the start state (zeros or the stored one)."""
    arch = MODELS[name]
    w = _weights(arch)
    ref = NumpyEngine(arch, w, Streaming("stateful", hop), input_gain=0.8, output_gain=1.3)
    eng = native.NativeEngine(arch, w, hop, input_gain=0.8, output_gain=1.3)
    rng = np.random.default_rng(1)
    audio = rng.uniform(-0.5, 0.5, (5, hop)).astype(np.float32)
    knobs = rng.uniform(-1, 1, (5, hop, len(arch.knobs))).astype(np.float32)
    got = np.concatenate([eng.run_hop(a, k).copy() for a, k in zip(audio, knobs)])
    want = np.concatenate([ref.run_hop(a, k).copy() for a, k in zip(audio, knobs)])
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= 2e-6 * scale, (name, np.abs(got - want).max())
    eng.reset()
    again = np.concatenate([eng.run_hop(a, k).copy() for a, k in zip(audio, knobs)])
    np.testing.assert_array_equal(again, got)
    eng.close()
    with pytest.raises(Exception, match="closed"):
        eng.run_hop(audio[0], knobs[0])


def test_activations_hold_at_the_extremes():
    """tanh/sigmoid/exp of the kernel at saturating and tiny inputs (an LSTM whose gates saturate)."""
    arch = Architecture((16,), head=True)
    w = random_weights(arch, seed=4, scale=8.0)  # pre-activations in the tens: saturated gates
    ref = NumpyEngine(arch, w, Streaming("stateful", 64))
    eng = native.NativeEngine(arch, w, 64)
    for amp in (1e-6, 1.0, 30.0):
        a = (amp * np.sin(np.arange(64) / 3)).astype(np.float32)
        k = np.zeros((64, 0), np.float32)
        got, want = eng.run_hop(a, k).copy(), ref.run_hop(a, k)
        assert np.all(np.isfinite(got))
        # saturated gates amplify float32 rounding (outputs in the tens): relative, not absolute agreement
        np.testing.assert_allclose(got, want, atol=2e-5 * max(1.0, np.abs(want).max()))


@pytest.fixture
def bundle(tmp_path):
    from edgeamp.export.exporter import export_bundle

    arch = Architecture((8,), head=True, skip=True, knobs=(Knob("gain"),))
    path = tmp_path / "m.bundle"
    write_bundle(path, Bundle(Manifest(48000, arch, Streaming("stateful", 480)), random_weights(arch)))
    return export_bundle(path, variants=("stateful",), verify_seconds=0.2)


def test_backend_choice(bundle):
    native_factory = ProcessorFactory(bundle, backend="native")
    assert native_factory.engine == "native" and native_factory.describe().startswith("CPU (native engine")
    assert native_factory.native_esr < 1e-9  # checked against the golden data when it opened
    # any hop: no IR is needed (OpenVINO would need one exported at 64)
    assert ProcessorFactory(bundle, backend="native", hop_samples=64).new().hop_samples == 64
    with pytest.raises(BundleError, match="no stateful IR with a hop of 64"):
        ProcessorFactory(bundle, backend="openvino", hop_samples=64)
    # auto on a CPU: the native engine, by rule (two opens run the same engine, bit for bit)
    auto = ProcessorFactory(bundle, hop_samples=64)
    assert auto.engine == "native" and auto.choice.reason.endswith("native engine")
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 2000).astype(np.float32)
    one, two = ProcessorFactory(bundle).new(), ProcessorFactory(bundle).new()
    np.testing.assert_array_equal(one.process(x), two.process(x))
    # what the native engine does not do is refused with --backend native, and left to OpenVINO by auto
    for options, words in (({"inference_precision": "f16"}, "f16"), ({"variant": "stateful"}, "variant"),
                           ({"device": "NPU"}, "runs on the CPU")):
        with pytest.raises(ConfigError, match=words):
            ProcessorFactory(bundle, backend="native", **options)
    if native.bf16_reason() is None:  # bf16 runs natively where the kernel has it, else it is refused
        assert ProcessorFactory(bundle, backend="native", inference_precision="bf16").describe().endswith("bf16)")
    else:
        with pytest.raises(ConfigError, match="bf16"):
            ProcessorFactory(bundle, backend="native", inference_precision="bf16")
    for options in ({"inference_precision": "f16"}, {"precision": "f32"}, {"variant": "stateful"}):
        left = ProcessorFactory(bundle, **options)
        assert left.engine == "openvino" and "native engine not used" in left.native_reason
    assert ProcessorFactory(bundle, backend="openvino").engine == "openvino"


@pytest.mark.skipif(native.bf16_reason() is not None, reason=str(native.bf16_reason()))
def test_bf16_runs_the_large_recurrent_layers_in_bf16_and_keeps_small_ones_f32():
    """bf16 execution: the seed's 64-unit layers (64 KB of float32 step weights) run their step products
    in bf16 (close to the reference, not bit-equal to f32); a 12-unit layer stays float32 (bit-equal)."""
    rng = np.random.default_rng(2)
    audio = rng.uniform(-0.5, 0.5, (6, 480)).astype(np.float32)
    knobs = np.zeros((480, 0), np.float32)
    for units, bf16_used in (((64, 64, 1), True), ((64,), True), ((12,), False)):  # 64: an odd K of 65 inputs
        arch = Architecture(units, head=units[-1] != 1)
        w = random_weights(arch, seed=3)
        ref = NumpyEngine(arch, w, Streaming("stateful", 480))
        f32, bf16 = native.NativeEngine(arch, w, 480), native.NativeEngine(arch, w, 480, inference_precision="bf16")
        a = np.concatenate([f32.run_hop(x, knobs).copy() for x in audio])
        b = np.concatenate([bf16.run_hop(x, knobs).copy() for x in audio])
        want = np.concatenate([ref.run_hop(x, knobs).copy() for x in audio])
        if bf16_used:
            assert not np.array_equal(a, b)
            assert esr(want, b) < 1e-3, esr(want, b)
        else:
            np.testing.assert_array_equal(a, b)
        f32.close()
        bf16.close()


def test_a_kernel_that_computes_wrongly_is_refused(bundle, monkeypatch):
    real = native.NativeEngine.run_hop
    monkeypatch.setattr(native.NativeEngine, "run_hop", lambda self, a, k: real(self, a, k) * 1.1)
    with pytest.raises(BundleError, match="native engine does not reproduce"):
        ProcessorFactory(bundle, backend="native")


def test_native_processor_streams_like_openvino(bundle):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32)
    outs = {}
    for backend in ("native", "openvino"):
        proc = ProcessorFactory(bundle, backend=backend, knobs={"gain": 3.0}).new()
        outs[backend] = np.concatenate([proc.process(x[i : i + 333]) for i in range(0, x.shape[0], 333)])
    np.testing.assert_allclose(outs["native"], outs["openvino"], atol=2e-5)


def test_switched_off_by_the_environment(bundle):
    code = ("import edgeamp; from edgeamp.edge_runtime import native; "
            f"f = edgeamp.load({str(bundle.path)!r}).factory; print(f.engine, '|', native.unavailable_reason())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "EDGEAMP_NATIVE": "0"}, check=True,
                         capture_output=True, text=True).stdout
    assert out.startswith("openvino |") and "EDGEAMP_NATIVE=0" in out


@pytest.mark.slow
def test_an_install_without_a_compiler_still_works(tmp_path):
    """The extension is optional: a wheel built where the C++ compiler fails installs and runs OpenVINO only,
    saying why in one line."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # the checkout's files as a clean clone has them (no build/ left over)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    env = {**os.environ, "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false"}
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(src)], env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "native CPU engine was not built" in built.stdout + built.stderr
    wheel = next(tmp_path.glob("edgeamp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "native.so" in n], names
    assert "edgeamp/edge_runtime/native.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = "from edgeamp.edge_runtime import native; print(native.unavailable_reason())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
                         check=True, capture_output=True, text=True).stdout.strip()
    assert "not built at install" in out and "\n" not in out
