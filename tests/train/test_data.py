"""Pair loading: every bad input has its error; alignment, polarity, leading silence."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from edgeamp.core.errors import InputError
from edgeamp.train.data import estimate_latency, load_pair, whitened_correlation

from ..conftest import REAL_AMP, needs_real_amp

SR = 48000


def guitarish(seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n)
    for onset in np.arange(0.05, seconds - 0.3, 0.31):
        k = int(onset * SR)
        f = rng.uniform(80, 400)
        t = np.arange(int(0.3 * SR)) / SR
        x[k : k + t.shape[0]] += rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * f * t) * np.exp(-8 * t)
    x += 0.002 * rng.standard_normal(n)
    return x.astype(np.float32)


def amp(x, delay=0, invert=False):
    """A nonlinear amp-like chain with a strong phase response (group delay of tens of samples)."""
    b, a = signal.butter(4, 300, btype="low", fs=SR)  # bass-heavy: the plain correlation peak moves late
    y = np.tanh(4 * signal.lfilter(b, a, x) + 2 * x)
    b2, a2 = signal.butter(2, [80, 5000], btype="band", fs=SR)
    y = 0.5 * signal.lfilter(b2, a2, y)
    y = np.concatenate([np.zeros(delay), y[: y.shape[0] - delay]])
    return (-y if invert else y).astype(np.float32)


def write(tmp_path, name, data, rate=SR, subtype="FLOAT"):
    path = tmp_path / name
    sf.write(path, data, rate, subtype=subtype)
    return path


def test_whitened_onset_recovers_a_known_delay_where_plain_correlation_wanders(tmp_path):
    x = guitarish()
    y = amp(x, delay=480)
    lag, polarity, score = estimate_latency(x, y, max_lag=2000)
    assert abs(lag - 480) <= 2 and score > 6
    plain = np.correlate(y[:40000], x[:40000], "full")[40000 - 1 : 40000 - 1 + 2000]
    assert int(np.argmax(np.abs(plain))) - 480 > 5  # the amp's phase response moves the plain peak


def test_load_pair_compensates_and_reports(tmp_path):
    x = guitarish()
    y = amp(x, delay=480, invert=True)
    pair = load_pair(write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", y))
    r = pair.report
    assert abs(r.latency_samples - 480) <= 2 and r.latency_compensated and r.polarity == -1
    # a delay also starts the target with digital zeros: trimmed from both files alike
    lead = r.leading_silence_samples
    assert pair.x.shape == pair.y.shape == (x.shape[0] - lead - r.latency_samples,)
    np.testing.assert_array_equal(pair.x, x[lead : lead + pair.x.shape[0]])
    # polarity is reported, not flipped: the aligned target is the inverted amp
    assert np.corrcoef(pair.y, -amp(x)[lead : lead + pair.y.shape[0]])[0, 1] > 0.95


def test_no_align_keeps_delay_and_small_lags_are_kept(tmp_path):
    x = guitarish()
    pair = load_pair(write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", amp(x, delay=480)), align=False)
    assert not pair.report.latency_compensated
    assert pair.x.shape[0] == x.shape[0] - pair.report.leading_silence_samples
    small = load_pair(write(tmp_path, "di2.wav", x), write(tmp_path, "amp2.wav", amp(x, delay=5)))
    assert small.report.latency_samples in range(3, 8) and not small.report.latency_compensated


def test_leading_digital_silence_is_trimmed_and_said(tmp_path, caplog):
    x = guitarish()
    y = amp(x)
    y[:2048] = 0.0
    with caplog.at_level(logging.INFO):
        pair = load_pair(write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", y))
    assert pair.report.leading_silence_samples == 2048
    assert "2048 samples of digital silence" in caplog.text
    assert pair.x.shape[0] == x.shape[0] - 2048


def test_nothing_is_modified_on_disk(tmp_path):
    x = guitarish()
    paths = [write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", amp(x, delay=100))]
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    load_pair(*paths)
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths] == before


def _bad(tmp_path, kind):
    x = guitarish()
    y = amp(x)
    if kind == "rate":
        return write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", y, rate=44100)
    if kind == "length":
        return write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", y[: -SR // 2])
    if kind == "short":
        return write(tmp_path, "di.wav", x[: SR]), write(tmp_path, "amp.wav", y[: SR])
    if kind == "silent":
        return write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", np.zeros_like(y))
    if kind == "nan":
        y = y.copy()
        y[100] = np.nan
        return write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", y)
    if kind == "unrelated":
        other = np.ascontiguousarray(guitarish(seed=9)[::-1])  # another take (same onset grid, reversed)
        return write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", amp(other))
    if kind == "missing":
        return tmp_path / "nope.wav", write(tmp_path, "amp.wav", y)
    if kind == "not audio":
        (tmp_path / "di.wav").write_text("hello")
        return tmp_path / "di.wav", write(tmp_path, "amp.wav", y)
    raise AssertionError(kind)


BAD = {
    "rate": r"sample rates differ: .*di.wav is 48000 Hz, .*amp.wav is 44100 Hz; pass --resample",
    "length": r"lengths differ by 24000 samples \(0.500 s\)",
    "short": r"only 1.00 s of audio; at least 2 s are needed",
    "silent": r"amp.wav: the target is silent",
    "nan": r"amp.wav: 1 NaN/Inf sample",
    "unrelated": r"look unrelated",
    "missing": r"nope.wav: no such audio file",
    "not audio": r"di.wav: cannot read audio",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs_have_their_errors(tmp_path, kind):
    with pytest.raises(InputError, match=BAD[kind]):
        load_pair(*_bad(tmp_path, kind))


def test_resample_flag(tmp_path):
    x = guitarish()
    y = amp(x)
    import soxr

    pair = load_pair(write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", soxr.resample(y, SR, 44100), 44100),
                     allow_resample=True)
    assert pair.report.resampled_from == 44100 and abs(pair.x.shape[0] - x.shape[0]) <= 2


def test_clipped_target_warns(tmp_path, caplog):
    x = guitarish()
    y = np.clip(amp(x) * 20, -1, 1)
    with caplog.at_level(logging.WARNING):
        pair = load_pair(write(tmp_path, "di.wav", x), write(tmp_path, "amp.wav", y))
    assert "looks clipped" in caplog.text and pair.report.warnings


def test_whitened_correlation_of_identity_is_a_delta():
    x = guitarish(1.0)
    lags, r = whitened_correlation(x, x, 10)
    assert lags[np.argmax(np.abs(r))] == 0 and r[10] > 0.9


@needs_real_amp
@pytest.mark.real_amp
@pytest.mark.parametrize("setting", ["B1_M3_T7", "B10_M0_T0"])
def test_real_amp_alignment(setting):
    """Real recordings: 2048 leading zeros trimmed; onset a few samples (plain peak wanders 10-26)."""
    for n in range(1, 6):
        base = REAL_AMP / setting / f"{setting}_G5_file_{n}"
        pair = load_pair(f"{base}_input.wav", f"{base}.wav")
        assert pair.report.leading_silence_samples == 2048
        assert 1 <= pair.report.latency_samples <= 9, (n, pair.report)
        assert pair.report.correlation_score > 6
