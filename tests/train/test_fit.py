"""Training: presets build, cuDNN conditions, loss goes down, resume, seed, Keras == reference, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from edgeamp.core.errors import ConfigError

from ..conftest import needs_tf

pytestmark = needs_tf


@pytest.fixture(scope="module")
def demo_segments():
    from edgeamp.train import demo_data
    from edgeamp.train.dataset import make_segment, split_tail

    di = demo_data.performance(12.0, seed=5)
    # an easy amp (memoryless drive) so that a few seconds of training show a clear trend
    seg = make_segment(di, (0.5 * np.tanh(6 * di)).astype(np.float32), (), {}, "demo")
    train, val = split_tail(seg, 0.25)
    return [train], [val]


def test_every_preset_builds_and_meets_cudnn_conditions():
    from edgeamp.train.models import build_keras_model, check_cudnn_compatible
    from edgeamp.train.presets import PRESETS, get_preset

    assert {"seed", "stateful", "small"} <= set(PRESETS)
    for name in PRESETS:
        config = get_preset(name)
        model = build_keras_model(config.architecture())
        check_cudnn_compatible(model)
        lstms = [layer for layer in model.layers if type(layer).__name__ == "LSTM"]
        assert len(lstms) == len(config.units)
        for layer in lstms:
            cfg = layer.get_config()
            assert (cfg["activation"], cfg["recurrent_activation"], cfg["recurrent_dropout"], cfg["unroll"],
                    cfg["use_bias"]) == ("tanh", "sigmoid", 0.0, False, True)
    seed = get_preset("seed")
    assert seed.units == (64, 64, 1) and seed.batch_size == 16 and seed.recipe == "window"
    s = seed.streaming(48000)
    assert (s.mode, s.window_samples, s.hop_samples) == ("window", 5280, 480)
    assert seed.streaming(44100).window_samples == 4851


def test_cudnn_check_names_the_offending_setting():
    import keras

    from edgeamp.train.models import check_cudnn_compatible

    inp = keras.Input((None, 1))
    model = keras.Model(inp, keras.layers.LSTM(4, recurrent_dropout=0.1, name="bad", return_sequences=True)(inp))
    with pytest.raises(ConfigError, match="layer bad: recurrent_dropout=0.1 rules out cuDNN"):
        check_cudnn_compatible(model)


def test_unknown_preset_and_key():
    from edgeamp.train.presets import get_preset

    with pytest.raises(ConfigError, match="unknown preset 'huge'; known presets: cab, seed, small, stateful"):
        get_preset("huge")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]"):
        get_preset("small", colour="red")
    with pytest.raises(ConfigError, match=r"'mse' is not one of \['esr_pre', 'esr', 'esr\+esr_pre'\]"):
        get_preset("small", loss="mse")


@pytest.mark.parametrize("preset", ["small", "seed", "small-esr"])
def test_short_training_lowers_the_loss(demo_segments, preset, tmp_path):
    from edgeamp.train.fit import fit
    from edgeamp.train.presets import get_preset

    overrides = {"val_every_steps": 10}
    if preset == "small-esr":  # the plain-ESR loss option
        preset, overrides["loss"] = "small", "esr+esr_pre"
    if preset == "seed":  # the exact seed topology, made cheap: shorter windows, small batch
        overrides.update(window_ms=15.0, batch_size=4, learning_rate=3e-3)
    config = get_preset(preset, **overrides)
    train, val = demo_segments
    result = fit(config, config.architecture(), train, val, 48000, steps=40, seed=1, checkpoint_dir=tmp_path)
    # per-chunk training loss is noisy (quiet chunks); the fixed held-out set shows the trend
    val = result.history["val_esr"]
    assert len(val) == 4 and val[-1] < 0.9 * val[0], val
    assert np.all(np.isfinite(result.history["loss"]))
    assert result.best_val_esr == min(result.history["val_esr"])


def test_resume_continues_and_seed_reproduces(demo_segments, tmp_path):
    from edgeamp.train.fit import fit
    from edgeamp.train.presets import get_preset

    config = get_preset("small", val_every_steps=5, chunks_per_sequence=2)
    train, val = demo_segments
    arch = config.architecture()
    a = fit(config, arch, train, val, 48000, steps=10, seed=3, checkpoint_dir=tmp_path / "a")
    b = fit(config, arch, train, val, 48000, steps=10, seed=3, checkpoint_dir=tmp_path / "b")
    for name, arr in a.weights.to_arrays().items():
        np.testing.assert_allclose(arr, b.weights.to_arrays()[name], atol=1e-6, err_msg=name)
    c = fit(config, arch, train, val, 48000, steps=10, seed=3, checkpoint_dir=tmp_path / "a", resume=True)
    assert c.steps == 20 and c.history["step"][:10] == a.history["step"] and c.history["step"][-1] == 20
    assert len(c.history["val_esr"]) == 4
    with pytest.raises(ConfigError, match="another preset or architecture"):
        fit(get_preset("stateful"), get_preset("stateful").architecture(), train, val, 48000, steps=1,
            checkpoint_dir=tmp_path / "a", resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        fit(config, arch, train, val, 48000, steps=1, checkpoint_dir=tmp_path / "none", resume=True)


def test_train_cli_end_to_end_writes_exported_bundle(tmp_path, capsys):
    from edgeamp.cli import main
    from edgeamp.core.bundle import read_bundle, verify_golden

    out = tmp_path / "demo.bundle"
    rc = main(["train", "--demo", "--demo-seconds", "10", "--preset", "small", "--steps", "30", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test clip" in text and "validation clip" in text and "ESR" in text
    b = read_bundle(out)
    m = b.manifest
    assert m.streaming.mode == "stateful" and m.architecture.units == (12,)
    assert {"esr", "esr_pre_emphasis", "mse", "dc_error", "stft_distance", "esr_f16_weights"} <= set(m.metrics)
    # three ways: the top-level figures are the test clip's; the validation clip's are kept apart
    assert m.metrics["scored_on"] == "test" and m.metrics["test_clips"][0].endswith("[test]")
    assert {"esr", "esr_pre_emphasis", "seconds"} <= set(m.metrics["validation"])
    assert m.metrics["validation"]["seconds"] == m.metrics["held_out_seconds"] == 1.5  # 15 % of 10 s each
    assert abs(m.metrics["esr_f16_weights"] - m.metrics["esr"]) < 0.05 * m.metrics["esr"] + 1e-3
    data = m.provenance["data"][0]
    assert len(data["input_sha256"]) == 64 and data["sample_rate"] == 48000
    assert m.provenance["steps"] == 30 and m.provenance["config"]["name"] == "small"
    assert (out / "plots" / "training.png").is_file() and (out / "plots" / "held_out.png").is_file()
    assert m.exports["stateful-f32"].max_abs_error <= 1e-5
    assert verify_golden(b)["max_abs_error"] < 1e-5

    # the trained Keras model equals the numpy reference on the bundle's weights
    from edgeamp.core import reference
    from edgeamp.train.models import build_keras_model, set_keras_weights

    model = build_keras_model(m.architecture)
    set_keras_weights(model, m.architecture, b.weights)
    x = b.golden.input[None, :4800, None]
    y_keras = np.asarray(model(x))[0, :, 0]
    y_ref, _ = reference.run_stateful(m.architecture, b.weights, x)
    np.testing.assert_allclose(y_keras, y_ref[0], atol=1e-5)

    # and eval scores it on a pair, writing the plot
    data_dir = tmp_path / "data"
    from edgeamp.train.demo_data import write_demo_data

    demo = write_demo_data(data_dir, seconds=4.0, seed=77)
    target = next(iter(demo.targets.values()))
    assert main(["eval", str(out), "--input", str(demo.di), "--target", str(target), "--out-dir",
                 str(tmp_path / "eval"), "--device", "CPU"]) == 0
    assert "ESR pre-emphasis" in capsys.readouterr().out
    assert (tmp_path / "eval" / "di.png").is_file()


def test_train_cli_errors(tmp_path, capsys):
    from edgeamp.cli import main

    assert main(["train", str(tmp_path / "o"), "--input", "a.wav"]) == 2
    assert "1 --input but 0 --target" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "o")]) == 2
    assert "no training data" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "o"), "--data-dir", str(tmp_path)]) == 2
    assert "no NAME_input.wav files" in capsys.readouterr().err


MIRRORED = r"""
import sys, numpy as np
from edgeamp.train.fit import configure_cpu_replicas, fit
configure_cpu_replicas(2)
from edgeamp.train import demo_data
from edgeamp.train.dataset import make_segment, split_tail
from edgeamp.train.presets import get_preset
di = demo_data.performance(8.0, seed=5)
train, val = split_tail(make_segment(di, (0.5 * np.tanh(6 * di)).astype(np.float32), (), {}, "d"), 0.25)
import tensorflow as tf
assert len(tf.config.list_logical_devices("CPU")) == 2
config = get_preset(sys.argv[1], val_every_steps=5, batch_size=4, window_ms=15.0, chunks_per_sequence=2)
r = fit(config, config.architecture(), [train], [val], 48000, steps=10, seed=1, strategy="mirrored")
print("VAL", r.history["val_esr"][0], r.history["val_esr"][-1], r.steps)
"""


@pytest.mark.parametrize("preset", ["small", "seed"])
def test_mirrored_strategy_on_two_logical_cpus(preset):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", MIRRORED, preset], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("VAL"))
    first, last, steps = line.split()[1:]
    assert int(steps) == 10 and np.isfinite(float(last))


def test_ctrl_c_keeps_the_best_model_and_writes_the_bundle(tmp_path):
    """SIGINT in the middle of training: the run stops, keeps the best weights, writes and exports the bundle."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from edgeamp.core.bundle import read_bundle

    out = tmp_path / "amp.bundle"
    env = {**os.environ, "EDGEAMP_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgeamp", "train", "--demo", "--demo-seconds", "8",
                             "--preset", "small", "--steps", "100000", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "amp.bundle.checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert state.exists(), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    b = read_bundle(out)
    assert b.manifest.provenance["stopped_by"].startswith("interrupted")
    assert 0 < b.manifest.provenance["steps"] < 100000
    assert "stateful-f32" in b.manifest.exports and "esr" in b.manifest.metrics


def test_ctrl_c_after_training_keeps_the_previous_bundle_whole(tmp_path, monkeypatch):
    """Regression: Ctrl-C just after "trained N steps" replaced a good bundle with one without ir/.
    The new bundle is staged beside OUT and swapped in only once exported and scored."""
    import edgeamp.export.exporter as exporter
    from edgeamp.core.bundle import read_bundle
    from edgeamp.train.pipeline import train_to_bundle
    from edgeamp.train.presets import get_preset

    out = tmp_path / "amp.bundle"
    config = get_preset("small")
    from edgeamp.train.data import PairSpec
    from edgeamp.train.demo_data import write_demo_data

    demo = write_demo_data(tmp_path / "data", seconds=6)
    specs = [PairSpec(str(demo.di), str(next(iter(demo.targets.values()))))]
    good = train_to_bundle(config, specs, out, steps=3)
    manifest_before = (out / "manifest.json").read_bytes()
    assert (out / good.manifest.exports["stateful-f32"].xml).is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "export_bundle", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_to_bundle(config, specs, out, steps=3, seed=1)
    assert (out / "manifest.json").read_bytes() == manifest_before
    again = read_bundle(out)
    assert (out / again.manifest.exports["stateful-f32"].xml).is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".amp.bundle")]  # no staging left


def test_train_refuses_an_output_that_is_a_file_before_training(tmp_path, capsys):
    from edgeamp.cli import main

    (tmp_path / "out.bundle").write_text("not a bundle")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    assert main(["train", "--demo", "--demo-seconds", "4", "--steps", "1", str(tmp_path / "out.bundle")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["train", "--demo", "--demo-seconds", "4", "--steps", "1", str(tmp_path / "home")]) == 2
    assert "not an edgeamp bundle: refusing to replace it" in capsys.readouterr().err
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"


def test_tensorflow_banners_only_with_verbose(tmp_path):
    """TensorFlow's oneDNN banner printed twice in every training run (issue 16); now only with -v."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edgeamp", "train", "--demo", "--demo-seconds", "4", "--preset",
           "small", "--steps", "1", "--no-export", str(tmp_path / "a.bundle")]
    quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "oneDNN" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr, quiet.stderr[-2000:]
    loud = subprocess.run([*cmd[:4], "-v", *cmd[4:-1], str(tmp_path / "b.bundle")], capture_output=True, text=True,
                          timeout=300)
    assert loud.returncode == 0, loud.stderr[-2000:]


def test_the_cab_preset_is_stateful_with_a_1024_tap_fir_stage_and_the_summed_loss():
    """The peer table's cab rows were trained as `--preset stateful --fir-taps 1024 --loss esr+esr_pre`."""
    import dataclasses

    from edgeamp.train.presets import get_preset

    cab, stateful = get_preset("cab"), get_preset("stateful")
    assert cab.fir_taps == 1024 and cab.architecture().fir_taps == 1024
    assert dataclasses.replace(stateful, name="cab", fir_taps=1024, loss="esr+esr_pre") == cab


def test_train_defaults_to_the_best_measured_preset_and_help_describes_every_preset(tmp_path, capsys):
    """A new user gets `cab` (it beat `stateful` 2-4x on both real-amp settings' test clips), and
    `--help` names every preset with its measured figures and runtime cost."""
    from edgeamp.cli import main
    from edgeamp.core.bundle import read_bundle
    from edgeamp.train.presets import PRESETS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "default: cab" in text
    for name in PRESETS:
        line = next((ln for ln in text.splitlines() if ln.strip().startswith(name)), "")
        assert line, name
    assert text.count(" ms\n") + text.count(" ms ") >= len(PRESETS)  # each preset's runtime cost
    out = tmp_path / "amp.bundle"
    assert main(["train", "--demo", "--demo-seconds", "4", "--steps", "1", "--no-export", str(out)]) == 0
    b = read_bundle(out)
    assert b.manifest.provenance["preset"] == "cab" and b.architecture.fir_taps == 1024
