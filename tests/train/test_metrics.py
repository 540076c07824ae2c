"""Analytic checks of the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from edgeamp.core import metrics as M


def sig(n=4800, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def test_esr_of_identity_is_zero_and_of_silence_is_one():
    x = sig()
    assert M.esr(x, x) == 0.0 and M.esr_pre_emphasis(x, x) == 0.0
    assert M.esr(x, np.zeros_like(x)) == pytest.approx(1.0)
    assert M.mse(x, x) == 0.0 and M.dc_error(x, x) == 0.0
    assert M.multi_resolution_stft(x, x) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("a", [0.0, 0.5, 0.9, 2.0, -1.0])
def test_esr_scale_behaviour(a):
    x = sig()
    assert M.esr(x, a * x) == pytest.approx((1 - a) ** 2)
    assert M.esr_pre_emphasis(x, a * x) == pytest.approx((1 - a) ** 2)
    assert M.esr(3 * x, 3 * a * x) == pytest.approx(M.esr(x, a * x))  # scale invariant


def test_pre_emphasis_filter():
    np.testing.assert_allclose(M.pre_emphasis(np.ones(4)), [1, 0.15, 0.15, 0.15])


def test_dc_and_mse_analytic():
    x = sig()
    assert M.dc_error(x, x + 0.1) == pytest.approx(0.01 / np.mean(x**2))
    assert M.mse(x, x + 0.1) == pytest.approx(0.01)


def test_stft_distance_grows_with_error():
    x = sig()
    small = M.multi_resolution_stft(x, x + 0.01 * sig(seed=1))
    big = M.multi_resolution_stft(x, x + 0.5 * sig(seed=1))
    assert 0 < small < big


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="differ in length: 3 vs 4"):
        M.esr(np.zeros(3), np.zeros(4))


def test_verdicts():
    assert [M.esr_verdict(v) for v in (0.005, 0.02, 0.05, 0.5)] == ["great", "good", "may sound acceptable", "poor"]


def test_error_bands_find_where_the_error_lives():
    """An error of 30 Hz rumble shows up in the 0-50 Hz band: nearly all the error energy, and a
    band ESR far above 1 where the target has almost nothing; the shares add up to 1."""
    from edgeamp.core.metrics import error_bands

    sr = 48000
    t = np.arange(2 * sr) / sr
    y = 0.5 * np.sin(2 * np.pi * 1000 * t)
    y_hat = y + 0.05 * np.sin(2 * np.pi * 30 * t)
    bands = error_bands(y, y_hat, sr)
    assert abs(sum(b["share"] for b in bands) - 1.0) < 1e-9
    low = bands[0]
    assert (low["low_hz"], low["high_hz"]) == (0.0, 50.0)
    assert low["share"] > 0.99 and low["band_esr"] > 100
    assert bands[-1]["high_hz"] == sr / 2


def test_low_band_level_finds_a_hot_bass():
    """The demo's check: the model's level against the target's below 60 Hz (analytic: x2 is +6.02 dB;
    a 40 Hz tone doubled only there shows in the band, a 1 kHz one doubled does not)."""
    rng = np.random.default_rng(0)
    y = rng.standard_normal(48000 * 4)
    assert M.low_band_level_db(y, y, 48000) == pytest.approx(0.0, abs=1e-9)
    assert M.low_band_level_db(y, 2 * y, 48000) == pytest.approx(6.0206, abs=1e-3)
    t = np.arange(y.shape[0]) / 48000
    low, high = np.sin(2 * np.pi * 41.015625 * t), np.sin(2 * np.pi * 1000.0 * t)  # 41.0 Hz: a bin centre
    assert M.low_band_level_db(y + low, y + 2 * low, 48000) > 3.0
    assert abs(M.low_band_level_db(y + high, y + 2 * high, 48000)) < 0.5


def test_a_silent_target_has_no_esr_figure():
    """Regression: a digitally silent held-out clip was reported as "ESR 0.0000 (great)" and stored as 0.0."""
    silent = np.zeros(4800)
    for prediction in (np.zeros(4800), np.full(4800, 1e-6)):
        m = M.all_metrics(silent, prediction)
        assert np.isnan(m["esr"]) and np.isnan(m["esr_pre_emphasis"])
        assert M.format_esr(m["esr"]) == "none (the target is digital silence)"
        assert "great" not in M.esr_verdict(m["esr"])
    assert M.format_esr(None).startswith("none")
    assert M.format_esr(0.01234) == "0.0123" and M.esr_verdict(0.005) == "great"


def test_segment_knobs_use_the_knobs_own_model_range():
    """Regression (found in review): stored knob inputs were turned back into values assuming the model
    range [-1, 1]; an AIDA-X import's knobs use [0, 1], so its held-out clips were scored at the wrong
    settings."""
    from edgeamp.core.model import Knob
    from edgeamp.train.dataset import Segment
    from edgeamp.train.pipeline import segment_knobs

    for knob in (Knob("gain", 0.0, 10.0, 5.0), Knob("gain", 0.0, 10.0, 5.0, model_minimum=0.0, model_maximum=1.0)):
        x = np.zeros((16, 2), np.float32)
        x[:, 1] = knob.normalise(7.5)
        seg = Segment(x, np.zeros(16, np.float32), "clip")
        assert segment_knobs([knob], seg) == {"gain": 7.5}
