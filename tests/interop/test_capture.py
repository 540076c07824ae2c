"""Capture files open where a bundle is expected: imported once into a cache keyed by the file's
hash, with only the IR the device needs, and reused."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import edgeamp
from edgeamp.cli import main as cli_main
from edgeamp.core.bundle import read_bundle
from edgeamp.core.errors import BundleError
from edgeamp.interop import capture, importer

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
X = np.load(FIX / "expected.npz")["input"]


def test_load_opens_a_capture_through_the_cache_and_reuses_it(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="edgeamp"):
        amp = edgeamp.load(FIX / "nam_lstm_1x6.nam", cache_dir=cache, device="CPU")
    assert "through the cache" in caplog.text
    (cached,) = cache.iterdir()
    b = read_bundle(cached)
    assert {r.variant for r in b.manifest.exports.values()} == {"stateful"}  # only what the device runs
    want = edgeamp.load(cached, backend="numpy")(X, 48000)
    np.testing.assert_allclose(amp(X, 48000), want, atol=2e-5)

    def no_import(*a, **k):
        raise AssertionError("imported again")

    monkeypatch.setattr(importer, "import_model", no_import)
    again = edgeamp.load(str(FIX / "nam_lstm_1x6.nam"), cache_dir=cache, device="CPU")
    np.testing.assert_array_equal(again(X, 48000), amp(X, 48000))
    # another variant is exported into the cached bundle when asked for, not re-imported
    edgeamp.load(FIX / "nam_lstm_1x6.nam", cache_dir=cache, device="CPU", variant="explicit_state")
    assert {r.variant for r in read_bundle(cached).manifest.exports.values()} == {"stateful", "explicit_state"}
    assert len(list(cache.iterdir())) == 1


def test_a_changed_file_is_imported_anew(tmp_path):
    src = tmp_path / "m.json"
    shutil.copy(FIX / "guitarml_lstm_8.json", src)
    first = capture.bundle_for(src, cache_dir=tmp_path / "c")
    shutil.copy(FIX / "guitarml_gru_6.json", src)
    second = capture.bundle_for(src, cache_dir=tmp_path / "c")
    assert first != second
    assert read_bundle(first).architecture.cell == "lstm" and read_bundle(second).architecture.cell == "gru"
    assert read_bundle(second).manifest.sample_rate == 44100  # GuitarML's players' rate, logged


def test_cli_commands_take_a_capture_file(tmp_path, capsys, caplog):
    sf.write(tmp_path / "di.wav", X, 48000, subtype="FLOAT")
    cache = str(tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="edgeamp"):
        assert cli_main(["render", str(FIX / "aidax_gru.aidax"), str(tmp_path / "di.wav"), str(tmp_path / "a.wav"),
                         "--cache-dir", cache, "--device", "CPU"]) == 0
    assert "says no sample rate: taken as 48000 Hz (AIDA-X runs models at 48000 Hz" in caplog.text
    assert cli_main(["info", str(FIX / "nam_lstm_1x6.nam"), "--cache-dir", cache]) == 0
    assert "LSTM 6 + dense head" in capsys.readouterr().out
    assert cli_main(["render", str(FIX / "nam_lstm_1x6.nam"), str(tmp_path / "di.wav"), str(tmp_path / "out.wav"),
                     "--cache-dir", cache, "--device", "CPU"]) == 0
    y, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert sr == 48000 and y.shape == X.shape


def test_keras_h5_and_unknown_files_are_refused_with_the_way_forward(tmp_path):
    from tests.export.test_legacy import random_cudnn_layer, write_keras2_h5

    write_keras2_h5(tmp_path / "m.h5", [random_cudnn_layer(np.random.default_rng(0), 1, 1)])
    with pytest.raises(BundleError, match="import it first with `edgeamp import"):
        edgeamp.load(tmp_path / "m.h5", cache_dir=tmp_path / "c")
    with pytest.raises(BundleError, match="is not a bundle directory .*edgeamp.load"):
        read_bundle(FIX / "nam_lstm_1x6.nam")
