"""NAM's WaveNet (A1) through every path, against NAM's own output: fixtures written by NAM's package
(its standard, lite, feather and nano sizes, a gated one, a ReLU one; make_fixtures.py), expected
output NAM's model loaded back from each file, run from NAM's prewarmed start (its receptive field
of silence, what NAM Core's reset does too)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgeamp
from edgeamp.cli import main as cli_main
from edgeamp.core import reference
from edgeamp.core.bundle import Bundle, Manifest, read_bundle, write_bundle
from edgeamp.core.errors import ModelFormatError
from edgeamp.core.model import Streaming
from edgeamp.core.wavenet import nam_preset, random_weights, zero_state
from edgeamp.edge_runtime.batching import BatchedEngine
from edgeamp.edge_runtime.engines import initial_inputs
from edgeamp.edge_runtime.session import find_ir
from edgeamp.interop.importer import export_model, import_model, read_model

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
E = np.load(FIX / "expected_nam_wavenet.npz")
X = E["input"]
SR = 48000
NAMES = ("standard", "lite", "feather", "nano", "gated", "relu")
# measured (AVX-512 EPYC): reference 1.2e-8 from NAM's torch output, f32 IR 1.3e-8 from the reference
REF_TOL, IR_TOL = 1e-7, 1e-6


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavenet")
    return {n: import_model(FIX / f"nam_wavenet_{n}.nam", root / f"{n}.bundle", export=True,
                            variants=("stateful", "explicit_state", "batched") if n in ("nano", "gated") else
                            ("stateful",), precisions=("f32",), verify_seconds=0.3)
            for n in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_reference_and_ir_reproduce_nams_own_output(bundles, name):
    b = bundles[name]
    assert b.architecture.family == "wavenet" and b.manifest.sample_rate == SR
    want = E[f"nam_wavenet_{name}"]
    ref = reference.run_stateful(b.architecture, b.weights, X.astype(np.float64))[0][0]
    assert np.max(np.abs(ref - want)) < REF_TOL
    amp = edgeamp.load(b.path, device="CPU", precision="f32")
    assert np.max(np.abs(amp(X, SR) - ref)) < IR_TOL


def test_the_configurations_read_as_nam_wrote_them(bundles):
    std = bundles["standard"].architecture
    assert std == nam_preset("standard")  # NAM's standard: 16 then 8 channels, dilations 1..512 twice
    assert [a.channels for a in bundles["lite"].architecture.arrays] == [12, 6]
    assert bundles["gated"].architecture.arrays[0].gated and bundles["relu"].architecture.arrays[0].activation == "ReLU"
    assert std.receptive_field == 4093 and std.parameter_count() == len(json.loads(
        (FIX / "nam_wavenet_standard.nam").read_text())["weights"])


@pytest.mark.parametrize("name", ["nano", "gated"])
def test_explicit_state_and_batched_ir_stream_like_the_reference(bundles, name):
    b = bundles[name]
    ref = reference.run_stateful(b.architecture, b.weights, X.astype(np.float64))[0][0]
    amp = edgeamp.load(b.path, device="CPU", variant="explicit_state", precision="f32")
    assert np.max(np.abs(amp(X, SR) - ref)) < IR_TOL
    record = find_ir(b, "batched", b.manifest.streaming.hop_samples, "f32")
    engine = BatchedEngine(b.checked_ir(record), b.architecture, 480, max_batch=4,
                           initial=initial_inputs(b.architecture, b.weights))
    try:
        slots = [engine.slot() for _ in range(3)]
        outs = [np.concatenate([s.run_hop(X[lo : lo + 480] * g, np.zeros((480, 0), np.float32)).copy()
                                for lo in range(0, 2400, 480)]) for s, g in zip(slots, (1.0, 0.5, 1.0))]
    finally:
        engine.close()
    np.testing.assert_allclose(outs[0], ref, atol=IR_TOL)
    np.testing.assert_allclose(outs[2], ref, atol=IR_TOL)
    half = reference.run_stateful(b.architecture, b.weights, 0.5 * X.astype(np.float64))[0][0]
    np.testing.assert_allclose(outs[1], half, atol=IR_TOL)


def test_start_state_is_nams_prewarm_and_reset_returns_to_it(bundles):
    b = bundles["nano"]
    arch, w = b.architecture, b.weights
    start = reference.initial_state(arch, w)
    assert max(float(np.max(np.abs(s[0]))) for s in start) > 1e-4  # the response to silence, not zeros
    # the stored state is what the receptive field of silence leaves, from zero histories
    silence = np.zeros((1, arch.receptive_field, 1))
    _, warmed = reference.forward(w, silence, zero_state(arch))
    for a, c in zip(start, warmed):
        np.testing.assert_allclose(a[0], c[0], atol=1e-7)
    amp = edgeamp.load(b.path, device="CPU")
    first = amp(X, SR)
    amp(np.random.default_rng(0).uniform(-1, 1, 9600).astype(np.float32), SR)
    np.testing.assert_array_equal(amp(X, SR), first)  # amp(x, sr) resets to the start state


def test_render_stream_chunked_equals_one_call(bundles):
    amp = edgeamp.load(bundles["feather"].path, device="CPU")
    whole = amp(X, SR)
    amp.reset()
    chunks = np.concatenate([amp(X[i : i + 333], SR, reset=False) for i in range(0, X.size, 333)])
    d = amp.latency_samples
    np.testing.assert_allclose(chunks[d:], whole[: X.size - d], atol=1e-6)


def test_export_to_nam_round_trips_with_gains_folded(tmp_path, bundles):
    b = bundles["lite"]
    src = write_bundle(tmp_path / "g.bundle", Bundle(
        Manifest(SR, b.architecture, Streaming("stateful", 480), input_gain=0.7, output_gain=1.6), b.weights))
    out = export_model(src, tmp_path / "g.nam", "nam")
    doc = json.loads(out.read_text())
    assert doc["architecture"] == "WaveNet" and doc["version"].startswith("0.5.")
    back = import_model(out, tmp_path / "back.bundle")
    assert back.manifest.input_gain == 1.0 and back.manifest.output_gain == 1.0
    want = edgeamp.load(src, backend="numpy")(X, SR)
    got = edgeamp.load(back.path, backend="numpy")(X, SR)
    np.testing.assert_allclose(got, want, atol=1e-7)
    # the same file as NAM wrote it, when no gains: weights byte-for-byte in NAM's order
    plain = json.loads(export_model(b, tmp_path / "p.nam", "nam").read_text())
    original = json.loads((FIX / "nam_wavenet_lite.nam").read_text())
    np.testing.assert_allclose(plain["weights"], original["weights"], rtol=0, atol=0)
    assert plain["config"] == original["config"]


def test_wavenet_bundles_run_through_the_clis(tmp_path, bundles, capsys):
    import soundfile as sf

    path = str(bundles["nano"].path)
    sf.write(tmp_path / "di.wav", X, SR, subtype="FLOAT")
    assert cli_main(["render", path, str(tmp_path / "di.wav"), str(tmp_path / "out.wav"), "--device", "CPU"]) == 0
    assert cli_main(["info", path, "--verify"]) == 0
    assert "WaveNet 4x7/2x13" in capsys.readouterr().out
    assert cli_main(["bench", path, "--device", "CPU", "--hops", "20", "--warmup", "2", "--no-peak",
                     "--out-dir", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["esr_vs_reference"] < 1e-10
    assert cli_main(["export-model", path, str(tmp_path / "x.aidax"), "--format", "aidax"]) == 2
    assert "WaveNet" in capsys.readouterr().err


def _doc(name="nano"):
    return json.loads((FIX / f"nam_wavenet_{name}.nam").read_text())


def _edit(doc, fn):
    fn(doc)
    return doc


BAD = {
    "one weight short": (_edit(_doc(), lambda d: d["weights"].pop()), "weights, but this WaveNet"),
    "one weight extra": (_edit(_doc(), lambda d: d["weights"].append(0.1)), "weights, but this WaveNet"),
    "unknown activation": (_edit(_doc(), lambda d: d["config"]["layers"][0].update(activation="Swish2")),
                           "activation 'Swish2' is not one edgeamp runs"),
    "huge dilation": (_edit(_doc(), lambda d: d["config"]["layers"][1]["dilations"].append(10**8)),
                      "keeps 200000000 samples of history"),
    "null weight": (_edit(_doc(), lambda d: d["weights"].__setitem__(7, None)), "NaN/Inf"),
    "string size": (_edit(_doc(), lambda d: d["config"]["layers"][0].update(channels="4")),
                    "channels must be a positive whole number"),
    "head size mismatch": (_edit(_doc(), lambda d: d["config"]["layers"][0].update(head_size=3)),
                           "head size 3, which must equal layer array 1's channels"),
    "film": (_edit(_doc(), lambda d: d["config"]["layers"][0].update(conv_pre_film={"active": True})),
             "conv_pre_film"),
    "condition dsp": (_edit(_doc(), lambda d: d["config"].update(condition_dsp={"architecture": "WaveNet"})),
                      "condition_dsp is set"),
    "post head": (_edit(_doc(), lambda d: d["config"].update(head={"channels": 4})), "config.head is set"),
    "slimmable": (_edit(_doc(), lambda d: d.update(architecture="SlimmableContainer")), "NAM's A2"),
    "unknown key": (_edit(_doc(), lambda d: d["config"]["layers"][0].update(warp_drive=1)), "warp_drive"),
    "unknown architecture": (_edit(_doc(), lambda d: d.update(architecture="Transformer")), "'Transformer'"),
    "deep json": (b'{"a": ' * 100000 + b"1" + b"}" * 100000, "nested"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_wavenet_files_name_what_is_wrong_and_write_nothing(tmp_path, case):
    content, match = BAD[case]
    src = tmp_path / "m.nam"
    src.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(ModelFormatError, match=match):
        import_model(src, tmp_path / "out.bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nam"]


def test_random_wavenets_of_each_nam_size_export_and_verify(tmp_path):
    """No capture needed: NAM's sizes with random weights at NAM's scale (what bench --arch runs)."""
    for i, name in enumerate(("feather", "nano")):
        arch = nam_preset(name)
        b = write_bundle(tmp_path / f"{name}.bundle",
                         Bundle(Manifest(SR, arch, Streaming("stateful", 240)), random_weights(arch, seed=i)))
        from edgeamp.export.exporter import export_bundle

        out = export_bundle(b, variants=("stateful",), precisions=("f32",), verify_seconds=0.2)
        assert out.manifest.exports["stateful-f32"].esr_vs_reference < 1e-10
        assert read_bundle(b).architecture == arch
        assert read_model(FIX / "nam_wavenet_nano.nam").architecture == nam_preset("nano")


def test_nams_older_model_directory_imports_and_checks_its_own_test_pair(tmp_path, capsys):
    """NAM 0.2-0.4 exported a directory: config.json, weights.npy and its own inputs.npy/outputs.npy."""
    doc = _doc("nano")
    d = tmp_path / "nano-export"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"version": "0.4.0", "architecture": "WaveNet",
                                               "config": doc["config"]}))
    np.save(d / "weights.npy", np.asarray(doc["weights"]))
    np.save(d / "inputs.npy", X)
    np.save(d / "outputs.npy", E["nam_wavenet_nano"])  # NAM's own output, from its start padding
    assert cli_main(["import", str(d), str(tmp_path / "n.bundle"), "--sample-rate", "48000", "--no-export"]) == 0
    assert "own test output (2400 samples) reproduced within" in capsys.readouterr().out
    b = read_bundle(tmp_path / "n.bundle")
    assert b.manifest.provenance["source_check"]["max_abs_error"] < REF_TOL
    assert b.architecture == nam_preset("nano")
    (d / "config.json").write_text(json.dumps({"version": "0.4.0", "architecture": "LSTM", "config": {}}))
    with pytest.raises(ModelFormatError, match="reads WaveNet directories"):
        import_model(d, tmp_path / "l.bundle", sample_rate=SR)


@pytest.mark.parametrize("batched", [False, True])
def test_a_wavenet_streams_through_the_service_like_the_offline_render(bundles, batched):
    """`edgeamp serve` on a NAM WaveNet (nano; its batched IR too): a stream's output equals the render."""
    from edgeamp.edge_runtime.stream_client import stream_signal
    from tests.edge_runtime.test_service import Server, _offline, _run

    path = bundles["nano"].path
    s = Server(path, "--workers", "1", *(["--batch"] if batched else []))
    try:
        result = _run(stream_signal(s.url, X, SR, block=480))
        np.testing.assert_allclose(result.output, _offline(path, X), atol=1e-6)
        assert s.http("GET", "/model")[1]["architecture"]["family"] == "wavenet"
    finally:
        assert s.stop() == 0
