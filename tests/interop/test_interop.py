"""Models in and out, against files and outputs made by the real tools (tests/fixtures/interop,
see make_fixtures.py there): NAM's own package for .nam, AIDA-X's trainer pipeline and RTNeural's
JSON writer for .aidax/.json. Each imported model's numpy reference and OpenVINO IR must reproduce
the tool's own output on the same signal; round trips keep the model; bad files say what is wrong
and leave nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import edgeamp
from edgeamp.cli import main as cli_main
from edgeamp.core import reference
from edgeamp.core.bundle import Bundle, Manifest, read_bundle, write_bundle
from edgeamp.core.errors import ModelFormatError
from edgeamp.core.model import Architecture, Knob, Streaming, random_weights
from edgeamp.export.exporter import export_bundle
from edgeamp.interop.importer import export_model, import_model, read_model

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
EXPECTED = np.load(FIX / "expected.npz")
X = EXPECTED["input"]
SR = 48000
PARAMS = EXPECTED["aidax_lstm_cond_params"]

# fixture -> (cell, units, head, skip, knobs, stored start state)
FIXTURES = {
    "nam_lstm_1x6.nam": ("lstm", (6,), True, False, 0, True),
    "nam_lstm_2x4.nam": ("lstm", (4, 4), True, False, 0, True),
    "nam_lstm_3x3.nam": ("lstm", (3, 3, 3), True, False, 0, True),
    "nam_lstm_1x16.nam": ("lstm", (16,), True, False, 0, True),
    "aidax_lstm_skip.json": ("lstm", (6,), True, True, 0, False),
    "aidax_gru.aidax": ("gru", (5,), True, False, 0, False),
    "aidax_gru_12.aidax": ("gru", (12,), True, True, 0, False),
    "aidax_lstm_cond.json": ("lstm", (4,), True, True, 2, False),
    "rtneural_gru_2.json": ("gru", (5, 3), True, False, 0, False),
    "rtneural_lstm_3.json": ("lstm", (4, 3, 3), True, False, 0, False),
}


def _expected(name: str) -> np.ndarray:
    return EXPECTED[name.split(".")[0]]


def _model_input(bundle, x=X, params=None):
    knobs = bundle.architecture.knobs
    if not knobs:
        return x.astype(np.float64)
    values = params if params is not None else [k.normalise(k.default) for k in knobs]
    return np.concatenate([x[:, None], np.tile(values, (x.shape[0], 1))], axis=1)[None].astype(np.float64)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Every fixture imported and exported (stateful, explicit_state, batched IR, f32 and f16)."""
    root = tmp_path_factory.mktemp("imported")
    out = {}
    for name in FIXTURES:
        path = import_model(FIX / name, root / f"{name}.bundle", sample_rate=SR if "nam" not in name else None)
        out[name] = export_bundle(path.path, verify_seconds=0.2)
    return out


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_import_reads_the_architecture_the_tool_wrote(imported, name):
    cell, units, head, skip, n_knobs, initial = FIXTURES[name]
    a = imported[name].architecture
    assert (a.cell, a.units, a.head, a.skip, len(a.knobs), a.initial_state) == (cell, units, head, skip, n_knobs,
                                                                                 initial)
    prov = imported[name].manifest.provenance
    assert prov["source_format"] == ("nam" if name.endswith(".nam") else "rtneural")
    assert prov["imported_from"] == name and len(prov["imported_sha256"]) == 64


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reference_and_ir_reproduce_the_tools_own_output(imported, name):
    b = imported[name]
    want = _expected(name)
    params = PARAMS if b.architecture.knobs else None
    ref = reference.run_stateful(b.architecture, b.weights, _model_input(b, params=params))[0][0]
    np.testing.assert_allclose(ref, want, atol=3e-6, rtol=0, err_msg="numpy reference vs the tool")
    knobs = dict(zip(b.architecture.knob_names, params)) if params is not None else None
    for variant in ("stateful", "explicit_state"):
        amp = edgeamp.load(b.path, device="CPU", variant=variant, precision="f32", knobs=knobs)
        np.testing.assert_allclose(amp(X, SR), want, atol=2e-5, rtol=0, err_msg=f"{variant} IR vs the tool")


def test_nam_start_state_and_metadata_come_from_the_file(imported):
    b = imported["nam_lstm_2x4.nam"]
    doc = json.loads((FIX / "nam_lstm_2x4.nam").read_text())
    w = np.asarray(doc["weights"], np.float32)
    # layer 0: 4H x (1 + H) matrix, 4H bias, then h0, c0
    h = 4
    pos = 4 * h * (1 + h) + 4 * h
    np.testing.assert_array_equal(b.weights.layers[0].h0, w[pos : pos + h])
    np.testing.assert_array_equal(b.weights.layers[0].c0, w[pos + h : pos + 2 * h])
    assert np.max(np.abs(b.weights.layers[0].c0)) > 1e-3  # NAM's burn-in state is not zeros
    meta = b.manifest.provenance["source_metadata"]
    assert meta["gear_make"] == "Test" and meta["input_level_dbu"] == 12.5 and "loudness" in meta
    assert b.manifest.sample_rate == doc["sample_rate"]
    assert b.manifest.provenance["source_version"] == doc["version"]


def test_aidax_parameters_become_knobs_and_can_be_named(tmp_path):
    b = import_model(FIX / "aidax_lstm_cond.json", tmp_path / "a.bundle", sample_rate=SR, knob_names=["gain", "tone"])
    assert b.architecture.knob_names == ("gain", "tone")
    k = b.architecture.knobs[0]
    assert (k.minimum, k.maximum, k.normalise(0.3)) == (0.0, 1.0, pytest.approx(0.3))  # fed as they are
    amp = edgeamp.load(b.path, backend="numpy", knobs={"gain": float(PARAMS[0]), "tone": float(PARAMS[1])})
    np.testing.assert_allclose(amp(X, SR), EXPECTED["aidax_lstm_cond"], atol=3e-6)


# ---- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,fmt", [("nam_lstm_2x4.nam", "nam"), ("nam_lstm_3x3.nam", "nam"),
                                      ("aidax_gru.aidax", "aidax"), ("aidax_lstm_cond.json", "aidax"),
                                      ("rtneural_lstm_3.json", "aidax"), ("rtneural_gru_2.json", "aidax")])
def test_round_trip_through_the_format_keeps_the_model(imported, tmp_path, name, fmt):
    b = imported[name]
    out = export_model(b, tmp_path / f"m.{fmt}", fmt)
    again = import_model(out, tmp_path / "again.bundle", sample_rate=SR if fmt == "aidax" else None)
    assert again.architecture == b.architecture
    for key, value in b.weights.to_arrays().items():
        np.testing.assert_allclose(again.weights.to_arrays()[key], value, atol=1e-7, err_msg=key)
    assert again.manifest.sample_rate == b.manifest.sample_rate


def test_edgeamp_models_export_exactly_with_gains_knob_ranges_and_no_head(tmp_path):
    """Features a format lacks but an exact rewrite exists for: gains fold into weights (.nam) or
    become AIDA-X's in_gain/out_gain, knob ranges become AIDA-X's 0..1, a head-less stack gets a
    unit head in .nam."""
    cases = [
        (Architecture((8,), head=True), 0.7, 1.6, "nam", {}),
        (Architecture((1,), head=False), 1.3, 1.0, "nam", {}),
        (Architecture((6, 4), head=True, knobs=(Knob("gain", 0, 10, 5), Knob("tone", -2, 2, 0))), 0.8, 1.2,
         "aidax", {"gain": 7.5, "tone": -1.0}),
        (Architecture((5,), head=True, skip=True, cell="gru", knobs=(Knob("drive", 1, 3, 2),)), 1.0, 1.0, "aidax",
         {"drive": 2.6}),
    ]
    for i, (arch, gin, gout, fmt, knobs) in enumerate(cases):
        manifest = Manifest(SR, arch, Streaming("stateful", 480), input_gain=gin, output_gain=gout)
        src = write_bundle(tmp_path / f"src{i}.bundle", Bundle(manifest, random_weights(arch, seed=i, scale=1.4)))
        out = export_model(src, tmp_path / f"m{i}.{fmt}", fmt)
        back = import_model(out, tmp_path / f"back{i}.bundle", sample_rate=SR)
        # .nam has no levels (folded into the weights); AIDA-X files carry in_gain/out_gain in dB
        levels = (1.0, 1.0) if fmt == "nam" else (pytest.approx(gin), pytest.approx(gout))
        assert (back.manifest.input_gain, back.manifest.output_gain) == levels
        assert [k.name for k in back.architecture.knobs] == list(arch.knob_names)
        want = edgeamp.load(src, backend="numpy", knobs=knobs)(X, SR)
        got = edgeamp.load(back.path, backend="numpy", knobs=knobs)(X, SR)
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=f"case {i} ({fmt})")


def test_fir_models_export_as_a_model_file_and_an_impulse_response(tmp_path, capsys):
    """Regression: FIR-stage models (the demo's, the cab preset's) were refused by export-model. The
    player's chain, model file then IR convolution, reproduces edgeamp's render."""
    import soundfile as sf

    from edgeamp.interop.importer import ir_path

    for i, (arch, fmt) in enumerate(((Architecture((8,), head=True, fir_taps=64), "nam"),
                                     (Architecture((6,), head=True, cell="gru", fir_taps=33), "aidax"))):
        manifest = Manifest(SR, arch, Streaming("stateful", 480), input_gain=0.8, output_gain=1.3)
        src = write_bundle(tmp_path / f"fir{i}.bundle", Bundle(manifest, random_weights(arch, seed=5 + i, scale=1.3)))
        out = tmp_path / f"fir{i}.{fmt}"
        assert cli_main(["export-model", str(src), str(out), "--format", fmt]) == 0
        assert f"{arch.fir_taps}-tap FIR stage as an impulse response" in capsys.readouterr().out
        ir, rate = sf.read(ir_path(out), dtype="float64")
        assert rate == SR and ir.shape == (arch.fir_taps,)
        played = edgeamp.load(import_model(out, tmp_path / f"back{i}.bundle", sample_rate=SR).path,
                              backend="numpy")(X, SR).astype(np.float64)
        played = np.convolve(played, ir)[: X.shape[0]]  # the player's IR loader, after the model
        want = edgeamp.load(src, backend="numpy")(X, SR)
        np.testing.assert_allclose(played, want, atol=1e-5, err_msg=fmt)
    skip = Architecture((4,), head=True, skip=True, fir_taps=16)
    src = write_bundle(tmp_path / "skip.bundle", Bundle(Manifest(SR, skip, Streaming("stateful", 480)),
                                                        random_weights(skip)))
    with pytest.raises(ModelFormatError, match="FIR stage comes before its input skip"):
        export_model(src, tmp_path / "skip.aidax", "aidax")
    assert not (tmp_path / "skip.aidax").exists() and not ir_path(tmp_path / "skip.aidax").exists()


PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
NAM_CORE = Path(os.environ.get("EDGEAMP_NAM_CORE_RUN", PEERS / "nam_core_run"))
RTNEURAL = Path(os.environ.get("EDGEAMP_RTNEURAL_RUN", PEERS / "rtneural_run"))


@pytest.mark.skipif(not (NAM_CORE.is_file() and RTNEURAL.is_file()),
                    reason="the peer drivers are not built (benchmarks/peers/README.md: NAM Core, RTNeural)")
def test_fir_models_play_in_nam_core_and_rtneural_with_their_impulse_response(tmp_path):
    """The players themselves, not edgeamp's readers of their files: a FIR-stage model exported as
    ``.nam`` + IR WAV is rendered by NeuralAmpModelerCore, as ``.aidax`` + IR WAV by RTNeural (AIDA-X's
    levels applied around it as AIDA-X does), each convolved with the IR: edgeamp's render within 1e-5
    (measured: 9e-8 both, NAM Core after its prewarm transient)."""
    import subprocess

    import soundfile as sf

    from edgeamp.interop.importer import ir_path

    x = np.random.default_rng(3).uniform(-0.5, 0.5, 9600).astype(np.float32)
    for i, (arch, fmt, driver) in enumerate(((Architecture((8,), head=True, fir_taps=64), "nam", NAM_CORE),
                                             (Architecture((6,), head=True, fir_taps=33), "aidax", RTNEURAL))):
        manifest = Manifest(SR, arch, Streaming("stateful", 480), input_gain=0.8, output_gain=1.3)
        src = write_bundle(tmp_path / f"fir{i}.bundle", Bundle(manifest, random_weights(arch, seed=5 + i, scale=1.3)))
        out = export_model(src, tmp_path / f"fir{i}.{fmt}", fmt)
        ir, rate = sf.read(ir_path(out), dtype="float64")
        gain_in, gain_out = (1.0, 1.0) if fmt == "nam" else (0.8, 1.3)  # .nam: folded into its weights
        (x * np.float32(gain_in)).tofile(tmp_path / "in.f32")
        subprocess.run([str(driver), "render", str(out), str(tmp_path / "in.f32"), str(tmp_path / "out.f32")],
                       check=True, capture_output=True)
        model = np.fromfile(tmp_path / "out.f32", np.float32).astype(np.float64) * gain_out
        played = np.convolve(model, ir)[: x.shape[0]]
        want = edgeamp.load(src, backend="numpy")(x, SR)
        # from the second hop on: NAM Core prewarms an LSTM on half a second of silence at reset (lstm.cpp,
        # GetPrewarmSamples), where the file's own state is edgeamp's start: 60 samples differ at first
        np.testing.assert_allclose(played[480:], want[480:], atol=1e-5, err_msg=f"{fmt} through {driver.name}")


@pytest.mark.parametrize("name,fmt,match", [
    ("nam_lstm_2x4.nam", "aidax", "stores an initial state"),
    ("aidax_gru.aidax", "nam", "this model is a GRU"),
    ("aidax_lstm_skip.json", "nam", "no input skip"),
    ("aidax_lstm_cond.json", "nam", "has no knobs"),
    ("rtneural_gru_2.json", "nam", "this model is a GRU"),
])
def test_export_refuses_what_the_format_cannot_express(imported, tmp_path, name, fmt, match):
    target = tmp_path / "out.file"
    with pytest.raises(ModelFormatError, match=match):
        export_model(imported[name], target, fmt)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_export_refuses_uneven_nam_layers_other_rates_and_window_models(tmp_path):
    arch = Architecture((8, 4), head=True)
    for name, manifest, fmt, match in (
        ("uneven", Manifest(SR, arch, Streaming("stateful", 480)), "nam", "one hidden size for every layer"),
        ("rate", Manifest(44100, arch, Streaming("stateful", 441)), "aidax", "48000 Hz"),
        ("window", Manifest(SR, Architecture((4,), head=True), Streaming("window", 480, 960)), "nam", "window-mode"),
        ("window-aidax", Manifest(SR, arch, Streaming("window", 480, 960)), "aidax", "window-mode"),
    ):
        src = write_bundle(tmp_path / f"{name}.bundle", Bundle(manifest, random_weights(manifest.architecture)))
        with pytest.raises(ModelFormatError, match=match):
            export_model(src, tmp_path / f"{name}.{fmt}", fmt)
        assert not (tmp_path / f"{name}.{fmt}").exists()


# ---- bad files ---------------------------------------------------------------------------------
def _nam_doc():
    return json.loads((FIX / "nam_lstm_2x4.nam").read_text())


def _json_doc():
    return json.loads((FIX / "rtneural_gru_2.json").read_text())


def _edit(doc, fn):
    fn(doc)
    return doc


BAD = {
    "empty": (b"", "the file is empty"),
    "truncated": ((FIX / "nam_lstm_2x4.nam").read_bytes()[:700], "truncated"),
    "not json": (b"this is not json {", "not valid JSON"),
    # GuitarML's tone library holds a GitHub page saved as SmartAmp/bluesJR-Clean.json
    "a web page": (b"\n\n<!DOCTYPE html>\n<html lang=\"en\">\n<head>", "a web page \\(HTML\\), not a model file"),
    "binary": (bytes(range(256)) * 4, "not a text file"),
    "json list": (b"[1, 2, 3]", "does not know"),
    "other architecture": (_edit(_nam_doc(), lambda d: d.update(architecture="ConvNet")),
                           "'ConvNet' is not one edgeamp imports"),
    "unknown version": (_edit(_nam_doc(), lambda d: d.update(version="1.0.0")), "not one edgeamp reads"),
    "nam weight count": (_edit(_nam_doc(), lambda d: d["weights"].pop()), "260 weights, but an LSTM of 2"),
    "nam NaN": ((FIX / "nam_lstm_2x4.nam").read_bytes().replace(b"[", b"[NaN, ", 1).replace(b"], \"sample", b"]"
                                                                                            b", \"sample"),
                "NaN"),
    "nam null weight": (_edit(_nam_doc(), lambda d: d["weights"].__setitem__(5, None)), "NaN/Inf"),
    "nam parametric": (_edit(_nam_doc(), lambda d: d["config"].update(input_size=3)), "input_size 3"),
    # were OverflowError, ValueError, minutes of export, or a 10 MB manifest
    "nam size 1e400": (json.dumps(_nam_doc()).replace('"hidden_size": 4', '"hidden_size": 1e400').encode(),
                       "hidden_size must be a positive whole number, got inf"),
    "nam size 1e300": (_edit(_nam_doc(), lambda d: d["config"].update(hidden_size=1e300)),
                       r"hidden_size is 1e\+300; edgeamp imports at most 1024"),
    "nam 5000-digit size": (json.dumps(_nam_doc()).replace('"hidden_size": 4', '"hidden_size": ' + "9" * 5000)
                            .encode(), "not a model file"),
    "nam 100k deep": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    "nam 300 layers": (_edit(_nam_doc(), lambda d: d["config"].update(num_layers=300, hidden_size=2)),
                       "num_layers is 300; edgeamp imports at most 16"),
    "nam hidden 400": (_edit(_nam_doc(), lambda d: (d["config"].update(hidden_size=400, num_layers=1),
                                                    d.update(weights=[0.01] * (4 * 400 * 401 + 6 * 400 + 401)))),
                       r"LSTM 400 .* has 64\d,\d{3} weights, about 31 G multiply-adds per second"),
    "rtneural kernel shape": (_edit(_json_doc(), lambda d: d["layers"][1]["weights"][0].pop()),
                              r"layer 1 \(gru, 3 units\) kernel has shape \(4, 9\)"),
    "rtneural units vs weights": (_edit(_json_doc(), lambda d: d["layers"][0]["shape"].__setitem__(2, 6)),
                                  "layer 0 .* kernel has shape"),
    "rtneural Inf": (_edit(_json_doc(), lambda d: d["layers"][2]["weights"][1].__setitem__(0, 1e999)),
                     "model.json: the file holds Infinity"),
    "unknown activation": (_edit(_json_doc(), lambda d: d["layers"][0].update(activation="swish")),
                           "activation 'swish', which RTNeural does not know"),
    "dense activation": (_edit(_json_doc(), lambda d: d["layers"][2].update(activation="tanh")), "linear"),
    "mixed cells": (_edit(_json_doc(), lambda d: d["layers"].__setitem__(1, {
        "type": "lstm", "activation": "tanh", "shape": [None, None, 3],
        "weights": [np.full((5, 12), 0.1).tolist(), np.full((3, 12), 0.1).tolist(), [0.0] * 12]})),
        "mixes lstm and gru layers"),
    "conv layer": (_edit(_json_doc(), lambda d: d["layers"].insert(0, {"type": "conv1d", "activation": "",
                                                                       "shape": [None, None, 2], "weights": []})),
                   "layer 0 kernel_size must be a positive whole number"),
    "conv2d layer": (_edit(_json_doc(), lambda d: d["layers"].insert(0, {"type": "conv2d", "activation": "",
                                                                         "shape": [None, None, 2], "weights": []})),
                     "'conv2d'"),
    "unknown layer": (_edit(_json_doc(), lambda d: d["layers"][0].update(type="transformer")), "unknown type"),
    "in_skip 2": (_edit(_json_doc(), lambda d: d.update(in_skip=2)), "in_skip 2"),
    "no output": (_edit(_json_doc(), lambda d: d["layers"].pop()), "no single audio output"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_say_what_is_wrong_and_write_nothing(tmp_path, case):
    content, match = BAD[case]
    src = tmp_path / "model.json"
    src.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    out = tmp_path / "out.bundle"
    with pytest.raises(ModelFormatError, match=match):
        import_model(src, out, sample_rate=SR)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]  # no partial bundle beside it


def test_sample_rate_rules(tmp_path):
    with pytest.raises(ModelFormatError, match="pass --sample-rate"):
        import_model(FIX / "aidax_gru.aidax", tmp_path / "a.bundle")
    with pytest.raises(ModelFormatError, match="the file says 48000 Hz, --sample-rate says 44100"):
        import_model(FIX / "nam_lstm_1x6.nam", tmp_path / "b.bundle", sample_rate=44100)
    doc = _nam_doc()
    del doc["sample_rate"]
    (tmp_path / "norate.nam").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="48000 Hz"):
        import_model(tmp_path / "norate.nam", tmp_path / "c.bundle")
    b = import_model(tmp_path / "norate.nam", tmp_path / "c.bundle", sample_rate=44100)
    assert (b.manifest.sample_rate, b.manifest.streaming.hop_samples) == (44100, 441)
    with pytest.raises(ModelFormatError, match="2 parameter input"):
        read_model(FIX / "aidax_lstm_cond.json", knob_names=["gain"])


def test_cli_import_export_model_and_errors(tmp_path, capsys):
    out = tmp_path / "nam.bundle"
    assert cli_main(["import", str(FIX / "nam_lstm_1x6.nam"), str(out), "--no-export"]) == 0
    text = capsys.readouterr().out
    assert "LSTM 6 + dense head, stored start state" in text and "fixture nam_lstm_1x6 / Test / Tiny LSTM" in text
    assert read_bundle(out).manifest.exports == {}
    assert cli_main(["export-model", str(out), str(tmp_path / "x.nam"), "--format", "nam"]) == 0
    assert json.loads((tmp_path / "x.nam").read_text())["architecture"] == "LSTM"
    assert cli_main(["import", str(FIX / "nam_wavenet_tiny.nam"), str(tmp_path / "w.bundle")]) == 2
    assert "does not say its sample rate; pass --sample-rate" in capsys.readouterr().err  # NAM wrote none
    assert not (tmp_path / "w.bundle").exists()
    assert cli_main(["import", str(FIX / "nam_wavenet_tiny.nam"), str(tmp_path / "w.bundle"), "--sample-rate",
                     "48000", "--no-export"]) == 0
    assert "WaveNet 2x2" in capsys.readouterr().out
    assert cli_main(["export-model", str(out), str(tmp_path / "x.aidax"), "--format", "aidax"]) == 2
    assert "stores an initial state" in capsys.readouterr().err
    assert cli_main(["import", str(FIX / "aidax_gru.aidax"), str(tmp_path / "g.bundle"), "--original"]) == 2


def test_huge_metadata_is_cut_not_printed_whole(tmp_path, capsys):
    """Regression: a 10 MB metadata.name was printed in full (and would make the manifest 10 MB)."""
    doc = _nam_doc()
    doc["metadata"]["name"] = "N" * (2 << 20)
    doc["metadata"]["gear_model"] = {"deep": [[[[["x"]]]]]}
    src = tmp_path / "big.nam"
    src.write_text(json.dumps(doc))
    assert cli_main(["import", str(src), str(tmp_path / "big.bundle"), "--no-export"]) == 0
    out = capsys.readouterr()
    assert len(out.out) + len(out.err) < 5000
    meta = read_bundle(tmp_path / "big.bundle").manifest.provenance["source_metadata"]
    assert meta["name"] == "N" * 500 + "..."
    assert (tmp_path / "big.bundle" / "manifest.json").stat().st_size < 20000


def test_reimport_over_a_bundle_says_it_replaces_it(tmp_path, caplog):
    """Regression: re-importing (or retraining) over an existing bundle replaced it without a word."""
    out = tmp_path / "o.bundle"
    import_model(FIX / "nam_lstm_1x6.nam", out)
    assert "holds a bundle already" not in caplog.text
    with caplog.at_level("WARNING", logger="edgeamp"):
        import_model(FIX / "nam_lstm_2x4.nam", out)
    assert f"{out} holds a bundle already: the import replaces it" in caplog.text
