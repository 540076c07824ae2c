"""`edgeamp train --init-from`: fine-tune an imported capture (the Keras builders take its cell,
sizes and weights; a NAM start state is kept)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeamp.cli import main
from edgeamp.core.bundle import read_bundle
from edgeamp.interop.importer import import_model

from ..conftest import needs_tf

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"


@needs_tf
def test_fine_tuning_starts_from_the_imported_weights(tmp_path):
    init = import_model(FIX / "nam_lstm_1x6.nam", tmp_path / "nam.bundle")
    out = tmp_path / "tuned.bundle"
    # a learning rate of 1e-9 moves no weight measurably: what comes out is what went in
    assert main(["train", "--demo", "--demo-seconds", "6", "--steps", "2", "--learning-rate", "1e-9",
                 "--init-from", str(init.path), str(out), "--no-export"]) == 0
    tuned = read_bundle(out)
    assert tuned.architecture == init.architecture  # LSTM 6 + head, stored start state: not the preset's 32
    for key, value in init.weights.to_arrays().items():
        np.testing.assert_allclose(tuned.weights.to_arrays()[key], value, atol=1e-5, err_msg=key)
    source = tuned.manifest.provenance["fine_tuned_from"]
    assert source["source_format"] == "nam" and source["imported_from"] == "nam_lstm_1x6.nam"


@needs_tf
def test_fine_tuning_a_gru_changes_it_and_exports(tmp_path):
    init = import_model(FIX / "aidax_gru.aidax", tmp_path / "gru.bundle", sample_rate=48000)
    out = tmp_path / "tuned.bundle"
    assert main(["train", "--demo", "--demo-seconds", "6", "--steps", "6", "--init-from", str(init.path),
                 str(out)]) == 0
    tuned = read_bundle(out)
    assert tuned.architecture.cell == "gru" and tuned.architecture.units == (5,)
    moved = max(float(np.max(np.abs(tuned.weights.to_arrays()[k] - v))) for k, v in init.weights.to_arrays().items())
    assert moved > 1e-4
    assert "stateful-f32" in tuned.manifest.exports and tuned.manifest.metrics["scored_on"] == "test"


@needs_tf
def test_fine_tuning_refuses_a_model_that_does_not_fit(tmp_path, capsys):
    cond = import_model(FIX / "aidax_lstm_cond.json", tmp_path / "cond.bundle", sample_rate=48000)
    assert main(["train", "--demo", "--demo-seconds", "4", "--steps", "1", "--init-from", str(cond.path),
                 str(tmp_path / "x.bundle")]) == 2
    assert "the model's knobs are ['param1', 'param2'], the data's none" in capsys.readouterr().err
    nam = import_model(FIX / "nam_lstm_1x6.nam", tmp_path / "nam.bundle")
    assert main(["train", "--demo", "--demo-seconds", "4", "--steps", "1", "--preset", "seed", "--init-from",
                 str(nam.path), str(tmp_path / "y.bundle")]) == 2
    assert "a stateful-mode model; the seed preset trains window models" in capsys.readouterr().err
    assert not (tmp_path / "x.bundle").exists() and not (tmp_path / "y.bundle").exists()


@needs_tf
def test_fine_tuning_a_conditioned_aidax_capture_scores_each_setting_at_its_own_values(tmp_path):
    """Regression (issue 23): the held-out report turned stored knob inputs back into values as if
    every model range were [-1, 1]; an AIDA-X capture's is [0, 1], so its settings came out wrong
    (0.2 read back as 0.6)."""
    import soundfile as sf

    cond = import_model(FIX / "aidax_lstm_cond.json", tmp_path / "cond.bundle", sample_rate=48000)
    rng = np.random.default_rng(0)
    settings = [{"param1": 0.2, "param2": 0.3}, {"param1": 0.8, "param2": 0.6}]
    pairs = []
    for i, knobs in enumerate(settings):
        x = (0.3 * rng.standard_normal(3 * 48000)).astype(np.float32)
        sf.write(tmp_path / f"di{i}.wav", x, 48000, subtype="FLOAT")
        sf.write(tmp_path / f"amp{i}.wav", np.tanh((1 + 4 * knobs["param1"]) * x) * 0.5, 48000, subtype="FLOAT")
        pairs.append({"input": f"di{i}.wav", "target": f"amp{i}.wav", "knobs": knobs})
    manifest = {"knobs": [{"name": n, "minimum": 0, "maximum": 1, "default": 0.5} for n in ("param1", "param2")],
                "pairs": pairs}
    (tmp_path / "knobs.json").write_text(json.dumps(manifest))
    out = tmp_path / "tuned.bundle"
    assert main(["train", "--knob-manifest", str(tmp_path / "knobs.json"), "--steps", "2", "--init-from",
                 str(cond.path), str(out)]) == 0
    scored = [entry["knobs"] for entry in read_bundle(out).manifest.metrics["per_setting"]]
    assert sorted(scored, key=lambda k: k["param1"]) == settings
