"""Demo data: deterministic, knobs move the teacher, files written with their manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeamp.core.errors import ConfigError
from edgeamp.train import demo_data


def test_performance_is_deterministic_and_seed_dependent():
    a = demo_data.performance(6.0, seed=1)
    b = demo_data.performance(6.0, seed=1)
    c = demo_data.performance(6.0, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (6 * 48000,)
    assert 0.59 < np.abs(a).max() <= 0.6


def test_teacher_knobs_change_the_sound():
    di = demo_data.performance(4.0, seed=3)
    base = demo_data.render_teacher(di, 5, 5)
    hot = demo_data.render_teacher(di, 10, 5)
    bright = demo_data.render_teacher(di, 5, 10)
    np.testing.assert_array_equal(base, demo_data.render_teacher(di, 5, 5))
    rms = lambda v: float(np.sqrt(np.mean(v**2)))  # noqa: E731
    assert rms(hot) > rms(base)  # more gain, more drive: louder and more compressed
    power = lambda v: np.abs(np.fft.rfft(v)) ** 2  # noqa: E731
    n = power(base).shape[0]
    hf, lf = slice(int(3000 / 24000 * n), None), slice(int(80 / 24000 * n), int(400 / 24000 * n))
    tilt = lambda v: power(v)[hf].sum() / power(v)[lf].sum()  # noqa: E731
    assert tilt(bright) > 2 * tilt(base)  # tone up: more treble relative to bass


def test_teacher_rejects_out_of_range_knob():
    with pytest.raises(ConfigError, match="gain.*outside"):
        demo_data.teacher(gain=11)


def test_write_demo_data_grid(tmp_path):
    demo = demo_data.write_demo_data(tmp_path, seconds=3.0, grid=[(2, 5), (8, 5)])
    meta = json.loads((tmp_path / "demo.json").read_text())
    assert [f["target"] for f in meta["pairs"]] == ["amp_g2_t5.wav", "amp_g8_t5.wav"]
    assert meta["pairs"][1]["knobs"] == {"gain": 8, "tone": 5} and demo.manifest == tmp_path / "demo.json"
    assert demo.di.is_file() and all(p.is_file() for p in demo.targets.values())
