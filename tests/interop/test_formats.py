"""The recurrent formats as their tools write them: GuitarML / Automated-GuitarAmpModelling JSON
(fixtures written by CoreAudioML's own save_model, with its own forward pass), AIDA-X files as
shipped (string sample rates, in_gain/out_gain, input_batch/output_batch), the Keras .h5 through
the same import, and imports that never cost the bundle they replace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgeamp
from edgeamp.cli import main as cli_main
from edgeamp.core import reference
from edgeamp.core.bundle import read_bundle
from edgeamp.core.errors import ModelFormatError
from edgeamp.interop.formats import FORMATS, detect_format
from edgeamp.interop.importer import export_model, import_model, read_model

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
GML = np.load(FIX / "expected_guitarml.npz")
X = GML["input"]
PARAMS = GML["guitarml_params"]
SR = 44100
AIDA = np.load(FIX / "expected.npz")

# fixture -> (cell, units, skip, knobs)
GUITARML = {
    "guitarml_lstm_8": ("lstm", (8,), True, 0),
    "guitarml_gru_6": ("gru", (6,), True, 0),
    "guitarml_lstm_cond": ("lstm", (5,), True, 1),
    "guitarml_lstm_2x4_noskip": ("lstm", (4, 4), False, 0),
    "guitarml_gru_cond2_2x3": ("gru", (3, 3), True, 2),
    "guitarml_recnet_gru_5": ("gru", (5,), True, 0),
}


def test_the_format_table_detects_each_format_by_content(tmp_path):
    names = {f.name for f in FORMATS}
    assert names == {"nam", "rtneural", "guitarml", "guitarml-conv"}
    assert detect_format(FIX / "guitarml_lstm_8.json") == "guitarml"
    assert detect_format(FIX / "aidax_gru.aidax") == "rtneural"
    assert detect_format(FIX / "nam_lstm_1x6.nam") == "nam"
    renamed = tmp_path / "model.nam"  # the name says nothing
    renamed.write_bytes((FIX / "guitarml_gru_6.json").read_bytes())
    assert detect_format(renamed) == "guitarml"


@pytest.fixture(scope="module")
def guitarml(tmp_path_factory):
    root = tmp_path_factory.mktemp("guitarml")
    return {name: import_model(FIX / f"{name}.json", root / f"{name}.bundle", sample_rate=SR, export=True,
                               variants=("stateful", "explicit_state"), verify_seconds=0.2)
            for name in GUITARML}


@pytest.mark.parametrize("name", sorted(GUITARML))
def test_guitarml_reference_and_ir_reproduce_coreaudioml(guitarml, name):
    b = guitarml[name]
    a = b.architecture
    cell, units, skip, n_knobs = GUITARML[name]
    assert (a.cell, a.units, a.head, a.skip, len(a.knobs), a.initial_state) == (cell, units, True, skip, n_knobs,
                                                                                 False)
    assert b.manifest.provenance["source_format"] == "guitarml"
    params = PARAMS[:n_knobs]
    xin = np.concatenate([X[:, None], np.tile(params, (X.shape[0], 1))], axis=1) if n_knobs else X[:, None]
    ref = reference.run_stateful(a, b.weights, xin[None].astype(np.float64))[0][0]
    np.testing.assert_allclose(ref, GML[name], atol=1e-6, rtol=0, err_msg="numpy reference vs CoreAudioML")
    knobs = {k.name: float(v) for k, v in zip(a.knobs, params)}
    for variant in ("stateful", "explicit_state"):
        amp = edgeamp.load(b.path, device="CPU", variant=variant, precision="f32", knobs=knobs)
        np.testing.assert_allclose(amp(X, SR), GML[name], atol=2e-5, rtol=0, err_msg=f"{variant} IR vs CoreAudioML")


def test_guitarml_needs_a_rate_and_says_what_the_players_assume(tmp_path):
    with pytest.raises(ModelFormatError, match="pass --sample-rate .*44100 Hz"):
        import_model(FIX / "guitarml_lstm_8.json", tmp_path / "a.bundle")
    assert not (tmp_path / "a.bundle").exists()
    b = import_model(FIX / "guitarml_lstm_cond.json", tmp_path / "b.bundle", sample_rate=48000, knob_names=["gain"])
    assert b.architecture.knob_names == ("gain",) and b.manifest.sample_rate == 48000
    k = b.architecture.knobs[0]
    assert (k.minimum, k.maximum, k.normalise(0.4)) == (0.0, 1.0, pytest.approx(0.4))  # fed as they are


def _gml(name="guitarml_gru_cond2_2x3"):
    return json.loads((FIX / f"{name}.json").read_text())


def _edit(doc, fn):
    fn(doc)
    return doc


BAD = {
    "no state_dict": (_edit(_gml(), lambda d: d.pop("state_dict")), "'state_dict' must be an object"),
    "missing tensor": (_edit(_gml(), lambda d: d["state_dict"].pop("rec.weight_hh_l1")),
                       r"missing \['rec.weight_hh_l1'\]"),
    "sizes disagree": (_edit(_gml(), lambda d: d["model_data"].update(hidden_size=4)),
                       r"state_dict\['rec.weight_ih_l0'\] has shape \(9, 3\), its declared sizes need \(12, 3\)"),
    "layers disagree": (_edit(_gml(), lambda d: d["model_data"].update(num_layers=1)),
                        r"unexpected \['rec.bias_hh_l1'"),
    "string weight": (_edit(_gml(), lambda d: d["state_dict"]["lin.weight"][0].__setitem__(0, "x")),
                      r"state_dict\['lin.weight'\] is not an array of numbers"),
    "null weight": (_edit(_gml(), lambda d: d["state_dict"]["lin.bias"].__setitem__(0, None)), "NaN/Inf"),
    "string size": (_edit(_gml(), lambda d: d["model_data"].update(hidden_size="3")),
                    "model_data.hidden_size must be a positive whole number"),
    "unknown unit": (_edit(_gml(), lambda d: d["model_data"].update(unit_type="RNN")), "unit_type 'RNN'"),
    "huge hidden": (_edit(_gml(), lambda d: d["model_data"].update(hidden_size=10**9)),
                    "hidden_size 1000000000 is beyond any GuitarML model"),
    "skip 2": (_edit(_gml(), lambda d: d["model_data"].update(skip=2)), "model_data.skip 2"),
    "two outputs": (_edit(_gml(), lambda d: d["model_data"].update(output_size=2)), "output_size 2"),
    "unknown model": (_edit(_gml(), lambda d: d["model_data"].update(model="Transformer")), "'Transformer'"),
    "conv net": (_edit(_gml(), lambda d: d["model_data"].update(model="GatedConvNet")), "convolutional"),
    "recnet chain": (_edit(_gml("guitarml_recnet_gru_5"), lambda d: d["blocks"].update({"1": d["blocks"]["0"]})),
                     "chains 2 blocks"),
    "lin bias absent": (_edit(_gml(), lambda d: d["state_dict"].pop("lin.bias")), r"missing \['lin.bias'\]"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_guitarml_files_name_the_field_and_write_nothing(tmp_path, case):
    content, match = BAD[case]
    src = tmp_path / "model.json"
    src.write_text(json.dumps(content))
    out = tmp_path / "out.bundle"
    with pytest.raises(ModelFormatError, match=match):
        import_model(src, out, sample_rate=SR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


# ---- AIDA-X files as shipped ---------------------------------------------------------------------
def _aida(name="aidax_gru.aidax"):
    return json.loads((FIX / name).read_text())


@pytest.mark.parametrize("where,value", [("metadata", "48000"), ("metadata", " 48000.0 "), ("top", "48000"),
                                         ("top", 48000)])
def test_aidax_sample_rate_as_a_string_in_metadata_or_at_the_top(tmp_path, where, value):
    doc = _aida()
    (doc.setdefault("metadata", {}) if where == "metadata" else doc)["samplerate"] = value
    (tmp_path / "m.json").write_text(json.dumps(doc))
    b = import_model(tmp_path / "m.json", tmp_path / "m.bundle")
    assert b.manifest.sample_rate == 48000
    b = import_model(tmp_path / "m.json", tmp_path / "m2.bundle", sample_rate=48000)  # agreeing is fine
    assert b.manifest.sample_rate == 48000
    doc["metadata" if where == "metadata" else "x"] = {"samplerate": "fast"}
    if where == "metadata":
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(ModelFormatError, match="metadata.samplerate 'fast' is not a number"):
            import_model(tmp_path / "bad.json", tmp_path / "bad.bundle")


def test_aidax_levels_apply_as_aidax_applies_them(tmp_path):
    """in_gain before the model (and the skip); out_gain after the model without a skip; with a skip
    AIDA-X ignores out_gain (applyModel adds the model's output to the gained input)."""
    for name, skip in (("aidax_gru.aidax", False), ("aidax_lstm_skip.json", True)):
        plain = import_model(FIX / name, tmp_path / f"{name}-plain.bundle", sample_rate=48000)
        doc = _aida(name)
        doc.update(in_gain=6.0, out_gain=-4.5)
        (tmp_path / name).write_text(json.dumps(doc))
        b = import_model(tmp_path / name, tmp_path / f"{name}.bundle", sample_rate=48000)
        gi, go = 10 ** (6 / 20), 10 ** (-4.5 / 20)
        assert b.manifest.input_gain == pytest.approx(gi)
        assert b.manifest.output_gain == (1.0 if skip else pytest.approx(go))
        a = plain.architecture
        x = AIDA["input"].astype(np.float64)
        f = reference.run_stateful(a, plain.weights, (x * gi)[None, :, None])[0][0]  # includes the skip (x * gi)
        want = f if skip else f * go
        got = edgeamp.load(b.path, backend="numpy")(AIDA["input"], 48000)
        np.testing.assert_allclose(got, want, atol=1e-6)
        # and back out: AIDA-X reads the levels from the file edgeamp writes
        out = export_model(b, tmp_path / f"{name}.out.aidax", "aidax")
        written = json.loads(out.read_text())
        assert written["in_gain"] == pytest.approx(6.0)
        assert ("out_gain" in written) == (not skip)
        again = import_model(out, tmp_path / f"{name}.again.bundle")
        np.testing.assert_allclose(edgeamp.load(again.path, backend="numpy")(AIDA["input"], 48000), want, atol=1e-6)
    doc = _aida()
    doc["in_gain"] = "6"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="in_gain '6' must be a number of dB"):
        import_model(tmp_path / "bad.json", tmp_path / "bad.bundle", sample_rate=48000)


def test_aidax_own_test_output_is_checked_and_reported(tmp_path, capsys):
    doc = _aida()
    doc["input_batch"] = AIDA["input"][:2048].tolist()
    doc["output_batch"] = AIDA["aidax_gru"][:2048].tolist()  # the tool's own output, from zero state
    doc["in_gain"] = 3.0  # AIDA-X's check runs with the gains at 1
    (tmp_path / "m.aidax").write_text(json.dumps(doc))
    assert cli_main(["import", str(tmp_path / "m.aidax"), str(tmp_path / "m.bundle"), "--sample-rate", "48000",
                     "--no-export"]) == 0
    text = capsys.readouterr().out
    assert "the file's own test output (2048 samples) reproduced within" in text and "levels input +3.0 dB" in text
    check = read_bundle(tmp_path / "m.bundle").manifest.provenance["source_check"]
    assert check["samples"] == 2048 and check["max_abs_error"] < 1e-5
    doc["output_batch"] = (AIDA["aidax_gru"][:2048] * 1.5).tolist()  # a file whose check fails says so
    (tmp_path / "off.aidax").write_text(json.dumps(doc))
    b = import_model(tmp_path / "off.aidax", tmp_path / "off.bundle", sample_rate=48000)
    assert b.manifest.provenance["source_check"]["max_abs_error"] > 1e-2
    doc["output_batch"] = doc["output_batch"][:100]
    (tmp_path / "short.aidax").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="two lists of the same length"):
        import_model(tmp_path / "short.aidax", tmp_path / "short.bundle", sample_rate=48000)


def test_aidax_declared_sizes_are_bounded_before_any_weight_is_read(tmp_path):
    doc = _aida()
    doc["in_shape"] = [None, None, 20000]
    (tmp_path / "wide.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="20000 input channels"):
        import_model(tmp_path / "wide.json", tmp_path / "w.bundle", sample_rate=48000)
    doc = _aida()
    doc["layers"][0]["shape"] = [None, None, 100000]
    (tmp_path / "big.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="100000 units"):
        import_model(tmp_path / "big.json", tmp_path / "b.bundle", sample_rate=48000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json", "wide.json"]


# ---- one import for every format, staged --------------------------------------------------------
def test_import_over_a_bundle_keeps_it_when_the_new_import_fails_or_is_interrupted(tmp_path, monkeypatch):
    out = import_model(FIX / "aidax_gru.aidax", tmp_path / "o.bundle", sample_rate=48000, export=True,
                       variants=("stateful",), verify_seconds=0.2).path
    old = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    import edgeamp.export.exporter as exporter

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "export_bundle", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_model(FIX / "guitarml_lstm_8.json", out, sample_rate=48000, export=True)
    assert {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.bundle"]  # no staging folder left
    monkeypatch.undo()
    # a completed import replaces the old model's IR too (no file of the old model is left in ir/)
    new = import_model(FIX / "guitarml_lstm_8.json", out, sample_rate=48000, export=True, variants=("stateful",),
                       verify_seconds=0.2)
    ir = {p.name for p in (out / "ir").iterdir()}
    assert ir == {Path(r.xml).with_suffix(s).name for r in new.manifest.exports.values() for s in (".xml", ".bin")}


def test_keras_h5_goes_through_the_same_import(tmp_path, capsys):
    from tests.export.test_legacy import random_cudnn_layer, write_keras2_h5  # Keras 2.2.4's layout

    rng = np.random.default_rng(1)
    src = tmp_path / "m.h5"
    write_keras2_h5(src, [random_cudnn_layer(rng, 1, 6), random_cudnn_layer(rng, 6, 1)])
    with pytest.raises(ModelFormatError, match="--original"):
        import_model(src, tmp_path / "a.bundle")
    with pytest.raises(ModelFormatError, match="holds no sample rate"):
        read_model(src)
    b = import_model(src, tmp_path / "a.bundle", original=True)
    s = b.manifest.streaming
    assert (s.mode, s.window_samples, s.hop_samples, b.manifest.sample_rate) == ("window", 5280, 480, 48000)
    assert b.manifest.provenance["source_format"] == "keras-h5"
    # the CLI: same function, so --hop-samples and --no-export apply, and it exports by default
    assert cli_main(["import", str(src), str(tmp_path / "b.bundle"), "--sample-rate", "44100",
                     "--window-samples", "192", "--hop-samples", "96"]) == 0
    b = read_bundle(tmp_path / "b.bundle")
    s = b.manifest.streaming
    assert (b.manifest.sample_rate, s.window_samples, s.hop_samples) == (44100, 192, 96)
    assert "window" in {r.variant for r in b.manifest.exports.values()}
    assert "exported and verified" in capsys.readouterr().out
    assert cli_main(["import", str(src), str(tmp_path / "c.bundle"), "--original", "--no-export"]) == 0
    assert read_bundle(tmp_path / "c.bundle").manifest.exports == {}


# ---- what players read beside the weights -------------------------------------------------------
def test_aidax_export_checks_the_sizes_aidax_compiles_in(tmp_path, caplog, capsys):
    b = import_model(FIX / "rtneural_gru_2.json", tmp_path / "two.bundle", sample_rate=48000)  # GRU 5-3
    with caplog.at_level("WARNING", logger="edgeamp"):
        export_model(b, tmp_path / "two.aidax", "aidax")
    assert "runs one recurrent layer; this model has 2 (5-3)" in caplog.text
    with pytest.raises(ModelFormatError, match="--strict"):
        export_model(b, tmp_path / "strict.aidax", "aidax", strict=True)
    assert not (tmp_path / "strict.aidax").exists()
    odd = import_model(FIX / "aidax_gru.aidax", tmp_path / "odd.bundle", sample_rate=48000)  # GRU 5
    assert cli_main(["export-model", str(odd.path), str(tmp_path / "odd.aidax"), "--format", "aidax",
                     "--strict"]) == 2
    assert "sizes 8, 12, 16, 20, 24, 32, 40, 64, 80; this model's is 5 (nearest: 8" in capsys.readouterr().err
    ok = import_model(FIX / "aidax_gru_12.aidax", tmp_path / "ok.bundle", sample_rate=48000)
    assert cli_main(["export-model", str(ok.path), str(tmp_path / "ok.aidax"), "--format", "aidax", "--strict"]) == 0


def test_nam_export_writes_nam_metadata_with_loudness_as_nam_computes_it(tmp_path, monkeypatch):
    import soundfile as sf

    from edgeamp.interop import nam

    b = import_model(FIX / "nam_lstm_2x4.nam", tmp_path / "n.bundle")
    loud = tmp_path / "loudness_input.wav"
    x = (0.5 * np.sin(2 * np.pi * 110 * np.arange(24000) / 48000)).astype(np.float32)
    sf.write(loud, x, 48000, subtype="FLOAT")
    doc = json.loads(export_model(b, tmp_path / "n.nam", "nam", loudness_input=loud).read_text())
    meta = doc["metadata"]
    y = edgeamp.load(b.path, backend="numpy")(x, 48000).astype(np.float64)
    assert meta["loudness"] == pytest.approx(20 * np.log10(np.sqrt(np.mean(y**2))), abs=1e-4)
    assert 0.0 <= meta["gain"] <= 1.0
    assert set(meta["date"]) == {"year", "month", "day", "hour", "minute", "second"}
    assert (meta["input_level_dbu"], meta["output_level_dbu"], meta["gear_make"]) == (12.5, 18.0, "Test")
    # without NAM's input file the levels are left out rather than copied from a different model
    monkeypatch.setattr(nam, "loudness_input_path", lambda: None)
    meta = json.loads(export_model(b, tmp_path / "m.nam", "nam").read_text())["metadata"]
    assert "loudness" not in meta and "gain" not in meta and meta["name"] == "fixture nam_lstm_2x4"


# ---- RTNeural's layers around the recurrent part (fixtures by RTNeural's own writer, Keras' output) ----
RTN = np.load(FIX / "expected_rtneural_layers.npz")
RTN_MODELS = {
    "rtneural_gru_dense_sigmoid": "GRU 8 + dense 8 sigmoid + dense head",
    "rtneural_td_dense_lstm": "dense 6 tanh + LSTM 6 + dense head",
    "rtneural_prelu_bn_elu": "LSTM 6 + dense 5 prelu + dense 5 elu + dense head",
    "rtneural_bn_folded": "GRU 5 + dense 4 + dense head",  # the BatchNormalization folds into the dense layer
    "rtneural_conv1d_gru": "dense 6 tanh + conv1d 4 k3 d2 tanh + GRU 8 + dense head",  # RTNeural's full_model form
}


@pytest.mark.parametrize("name", sorted(RTN_MODELS))
def test_rtneural_dense_activation_prelu_batchnorm_layers_reproduce_keras(tmp_path, name):
    b = import_model(FIX / f"{name}.json", tmp_path / "m.bundle", sample_rate=48000, export=True,
                     variants=("stateful", "explicit_state", "batched"), precisions=("f32",), verify_seconds=0.2)
    assert b.architecture.describe() == RTN_MODELS[name]
    x = RTN["input"]
    ref = reference.run_stateful(b.architecture, b.weights, x.astype(np.float64))[0][0]
    np.testing.assert_allclose(ref, RTN[name], atol=2e-6, err_msg="numpy reference vs Keras")
    for variant in ("stateful", "explicit_state"):
        y = edgeamp.load(b.path, device="CPU", variant=variant, precision="f32")(x, 48000)
        np.testing.assert_allclose(y, RTN[name], atol=2e-5, err_msg=f"{variant} IR vs Keras")
    # and back out to RTNeural JSON: the same model
    out = export_model(b, tmp_path / "m.aidax", "aidax")
    again = import_model(out, tmp_path / "again.bundle")
    np.testing.assert_allclose(edgeamp.load(again.path, backend="numpy")(x, 48000), ref, atol=1e-6)


def test_rtneural_layers_edgeamp_cannot_run_are_refused_by_name(tmp_path):
    doc = json.loads((FIX / "rtneural_gru_dense_sigmoid.json").read_text())
    conv = {"type": "conv1d", "activation": "", "shape": [None, None, 2], "weights": [], "kernel_size": [3],
            "dilation": [1], "groups": 2}
    cases = [
        ({**doc, "layers": [conv, *doc["layers"]]}, "conv1d layers with groups 1"),
        ({**doc, "layers": [{**conv, "groups": 1, "dilation": [10**6]}, *doc["layers"]]}, "samples of history"),
        ({**doc, "layers": [{**conv, "type": "conv2d"}, *doc["layers"]]}, "layer 0 is 'conv2d'"),
        ({**doc, "layers": [doc["layers"][0], doc["layers"][1], {**doc["layers"][0], "weights": [
            np.zeros((8, 24)).tolist(), np.zeros((8, 24)).tolist(), np.zeros((2, 24)).tolist()]}, doc["layers"][2]]},
         "follows a dense layer with an activation"),
        ({**doc, "layers": [*doc["layers"][:-1], {**doc["layers"][-1], "activation": "tanh"}]},
         "output layer .* activation 'tanh'; edgeamp's output layer is linear"),
        ({**doc, "layers": [*doc["layers"][:1], {"type": "batchnorm", "activation": "", "shape": [None, None, 8],
                                                 "weights": [[1.0] * 8, [0.0] * 8]}, *doc["layers"][1:]]},
         "needs an 'epsilon' number"),
    ]
    for i, (bad, match) in enumerate(cases):
        (tmp_path / f"{i}.json").write_text(json.dumps(bad))
        with pytest.raises(ModelFormatError, match=match):
            import_model(tmp_path / f"{i}.json", tmp_path / f"{i}.bundle", sample_rate=48000)
        assert not (tmp_path / f"{i}.bundle").exists()
