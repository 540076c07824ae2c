"""`edgeamp render`: offline output equals the reference; formats, rates and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edgeamp.cli import main as cli_main
from edgeamp.core.bundle import compute_output, read_bundle


def _write(path, rate=48000, subtype="PCM_24", channels=2, seconds=0.5):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.4 * np.sin(2 * np.pi * 196 * t) * np.exp(-2 * t)
    data = np.stack([x, -x], axis=1)[:, :channels]
    sf.write(path, data, rate, subtype=subtype)
    return sf.read(path, dtype="float32", always_2d=True)[0][:, 0]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_render_equals_reference_and_keeps_format(exported_bundles, tmp_path, subtype, capsys):
    x = _write(tmp_path / "di.wav", subtype=subtype)
    rc = cli_main(["render", str(exported_bundles["stateful"]), str(tmp_path / "di.wav"), str(tmp_path / "out.wav"),
                   "--device", "CPU"])
    assert rc == 0
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    info = sf.info(tmp_path / "out.wav")
    assert (rate, info.subtype, y.shape) == (48000, subtype, x.shape)
    b = read_bundle(exported_bundles["stateful"])
    ref = compute_output(b.manifest, b.weights, x, np.zeros((x.shape[0], 1), np.float32))
    quantum = {"PCM_16": 2**-15, "PCM_24": 2**-23, "FLOAT": 0}[subtype]
    np.testing.assert_allclose(y, np.clip(ref, -1, 1), atol=1e-5 + quantum, rtol=0)
    assert "real time" in capsys.readouterr().out


def test_render_refuses_other_rate_unless_resample(exported_bundles, tmp_path, capsys):
    _write(tmp_path / "di.wav", rate=44100)
    args = ["render", str(exported_bundles["stateful"]), str(tmp_path / "di.wav"), str(tmp_path / "o.wav")]
    assert cli_main(args) == 2
    assert "44100 Hz, the model runs at 48000 Hz: pass --resample" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()
    assert cli_main([*args, "--resample"]) == 0
    info = sf.info(tmp_path / "o.wav")
    assert info.samplerate == 44100 and info.frames == int(44100 * 0.5)


def test_render_refuses_to_overwrite_input_and_bad_channel(exported_bundles, tmp_path, capsys):
    _write(tmp_path / "di.wav")
    before = (tmp_path / "di.wav").read_bytes()
    assert cli_main(["render", str(exported_bundles["stateful"]), str(tmp_path / "di.wav"),
                     str(tmp_path / "di.wav")]) == 2
    assert (tmp_path / "di.wav").read_bytes() == before
    assert cli_main(["render", str(exported_bundles["stateful"]), str(tmp_path / "di.wav"), str(tmp_path / "o.wav"),
                     "--channel", "3"]) == 2
    assert "channel 3 asked for, the file has 2" in capsys.readouterr().err


def test_render_with_knob_and_numpy_backend(exported_bundles, tmp_path):
    x = _write(tmp_path / "di.wav", subtype="FLOAT", channels=1)
    base = ["render", str(exported_bundles["window"]), str(tmp_path / "di.wav")]
    assert cli_main([*base, str(tmp_path / "a.wav"), "--knob", "gain=9", "--device", "CPU"]) == 0
    assert cli_main([*base, str(tmp_path / "b.wav"), "--knob", "gain=9", "--backend", "numpy"]) == 0
    a, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    np.testing.assert_allclose(a, b, atol=1e-5)
    bundle = read_bundle(exported_bundles["window"])
    knobs = np.full((x.shape[0], 1), bundle.architecture.knobs[0].normalise(9.0), np.float32)
    np.testing.assert_allclose(a, compute_output(bundle.manifest, bundle.weights, x, knobs), atol=1e-5)
    assert cli_main([*base, str(tmp_path / "c.wav"), "--knob", "gain"]) == 2


# ---- regressions from outside testing (issue 16) ---------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["render", "B", "in.wav", "out.wav", "--block", "-1"], "--block: must be at least 1, got -1"),
    (["render", "B", "in.wav", "out.wav", "--block", "0"], "--block: must be at least 1, got 0"),
    (["render", "B", "in.wav", "out.wav", "--hop-ms", "nan"], "--hop-ms: must be a positive number"),
    (["render", "B", "in.wav", "out.wav", "--threads", "0"], "--threads: must be at least 1"),
    (["bench", "B", "--hops", "-5"], "--hops: must be at least 1"),
    (["serve", "B", "--port", "70000"], "--port: a TCP port is 0..65535"),
    (["serve", "B", "--max-realtime", "inf"], "--max-realtime: must be a positive number"),
    (["export", "B", "--verify-seconds", "0"], "--verify-seconds: must be a positive number"),
    (["train", "--demo", "OUT", "--minutes", "-1"], "--minutes: must be a positive number"),
    (["live", "B", "--hops-per-block", "0"], "--hops-per-block: must be at least 1"),
])
def test_numeric_options_are_checked_at_parse_time(argv, words, capsys):
    """Regression: --block -1 exited 0 and wrote uninitialised memory; --block 0 gave a traceback."""
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_render_output_follows_the_umask_and_refuses_a_directory(exported_bundles, tmp_path, capsys):
    import os

    _write(tmp_path / "di.wav")
    old = os.umask(0o022)
    try:
        assert cli_main(["render", str(exported_bundles["stateful"]), str(tmp_path / "di.wav"),
                         str(tmp_path / "out.wav"), "--device", "CPU"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out.wav").stat().st_mode & 0o777 == 0o644  # was 0600 (mkstemp)
    (tmp_path / "outdir").mkdir()
    assert cli_main(["render", str(exported_bundles["stateful"]), str(tmp_path / "di.wav"),
                     str(tmp_path / "outdir"), "--device", "CPU"]) == 2
    assert "is a directory: give a file name" in capsys.readouterr().err


def test_render_refuses_lossy_output_and_reports_the_format_it_wrote(exported_bundles, tmp_path, capsys, caplog):
    _write(tmp_path / "di.wav", subtype="FLOAT", channels=1)
    bundle = str(exported_bundles["stateful"])
    assert cli_main(["render", bundle, str(tmp_path / "di.wav"), str(tmp_path / "out.ogg"), "--device", "CPU"]) == 2
    assert ".ogg is a lossy format" in capsys.readouterr().err and not (tmp_path / "out.ogg").exists()
    # FLAC cannot hold float samples: what was written is said and reported, not the input's format
    with caplog.at_level("WARNING", logger="edgeamp"):
        assert cli_main(["render", bundle, str(tmp_path / "di.wav"), str(tmp_path / "out.flac"), "--device",
                         "CPU"]) == 0
    assert "FLAC cannot hold FLOAT samples; writing PCM_16" in caplog.text
    assert "PCM_16 at 48000 Hz" in capsys.readouterr().out
    assert sf.info(tmp_path / "out.flac").subtype == "PCM_16"


def test_outputs_nobody_can_write_and_odd_inputs_are_named(exported_bundles, tmp_path, capsys, caplog):
    """Regressions: OUT under /proc gave a FileNotFoundError traceback naming a temporary file; NaN in
    the input was zeroed without a word; an empty file streamed into an IndexError."""
    import asyncio

    from edgeamp.core.errors import InputError
    from edgeamp.edge_runtime.stream_client import stream_signal

    _write(tmp_path / "di.wav", subtype="FLOAT", channels=1)
    bundle = str(exported_bundles["stateful"])
    assert cli_main(["render", bundle, str(tmp_path / "di.wav"), "/proc/edgeamp-out.wav", "--device", "CPU"]) == 2
    assert "cannot write /proc/edgeamp-out.wav" in capsys.readouterr().err
    from pathlib import Path

    nam = Path(__file__).parents[1] / "fixtures" / "interop" / "nam_lstm_1x6.nam"
    assert cli_main(["import", str(nam), "/proc/x.bundle"]) == 2
    assert "cannot write /proc/x.bundle" in capsys.readouterr().err
    x = sf.read(tmp_path / "di.wav", dtype="float32")[0]
    x[100:103] = [np.nan, np.inf, -np.inf]
    sf.write(tmp_path / "nan.wav", x, 48000, subtype="FLOAT")
    with caplog.at_level("WARNING", logger="edgeamp"):
        assert cli_main(["render", bundle, str(tmp_path / "nan.wav"), str(tmp_path / "out.wav"), "--device",
                         "CPU"]) == 0
    assert "3 NaN/Inf sample(s) in the input" in caplog.text
    assert np.isfinite(sf.read(tmp_path / "out.wav")[0]).all()
    with pytest.raises(InputError, match="nothing to stream"):
        asyncio.run(stream_signal("ws://127.0.0.1:9/stream", np.zeros(0, np.float32), 48000))
