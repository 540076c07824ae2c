"""NAM's standard capture inputs are recognised and split as NAM splits them (issue 16: the v3
input plays its validation clip at the start and at the end, so a tail split scored a model on a
clip it had trained on)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from edgeamp.train import nam_inputs
from edgeamp.train.pipeline import DataOptions, load_segments, split_held_out

RATE = 48000


def _v3_like(tmp_path, lead_zeros: int = 2048):
    """A signal with NAM v3's layout (validation clip, silence, training audio, the same clip again),
    shortened in the middle, and a target with leading digital silence (as real reamps have)."""
    rng = np.random.default_rng(0)
    val = (0.3 * rng.standard_normal(nam_inputs.VALIDATION)).astype(np.float32)
    body = (0.3 * rng.standard_normal(10 * RATE)).astype(np.float32)
    x = np.concatenate([val, np.zeros(RATE, np.float32), body, val])
    y = np.tanh(2 * x)
    y[:lead_zeros] = 0.0  # digital silence the input does not have (the real-amp recordings' quirk)
    sf.write(tmp_path / "input.wav", x, RATE, subtype="FLOAT")
    sf.write(tmp_path / "output.wav", y, RATE, subtype="FLOAT")
    return x, val


def test_v3_layout_is_recognised_by_content(tmp_path):
    x, _ = _v3_like(tmp_path)
    layout = nam_inputs.detect(tmp_path / "input.wav")
    assert layout is not None and layout.version == "3.0.0" and layout.how == "content"
    (t0, t1), (v0, v1) = layout.ranges(x.shape[0])
    assert (t0, t1) == (480_000, x.shape[0] - 432_000) and (v0, v1) == (x.shape[0] - 432_000, x.shape[0])
    noise = np.random.default_rng(1).standard_normal(30 * RATE).astype(np.float32)
    sf.write(tmp_path / "other.wav", noise, RATE, subtype="FLOAT")
    assert nam_inputs.detect(tmp_path / "other.wav") is None


def test_v3_pair_is_held_out_as_nam_does(tmp_path):
    from edgeamp.train.knob_data import PairSpec

    _, val = _v3_like(tmp_path)
    segments, rate, reports = load_segments([PairSpec(str(tmp_path / "input.wav"), str(tmp_path / "output.wav"))],
                                            (), DataOptions())
    train, held_out = split_held_out(segments, reports, 0.15)
    assert reports[0].input_offset == 2048  # the target's leading silence was trimmed from both
    assert held_out[0].y.shape[0] == 432_000
    np.testing.assert_array_equal(held_out[0].x[:, 0], val)  # exactly the validation clip
    # neither copy of the validation clip is in the training audio
    train_x = train[0].x[:, 0]
    assert train_x.shape[0] == 432_000 + RATE + 10 * RATE - 480_000  # from 0:10 to the start of the last clip
    assert np.max(np.abs(np.correlate(train_x[:20000], val[:2000], "valid"))) < 0.5 * np.sum(val[:2000] ** 2)


def test_three_way_split_never_tests_on_training_or_validation_audio(tmp_path):
    from edgeamp.train.dataset import make_segment
    from edgeamp.train.pipeline import split_three_ways

    x = np.arange(100_000, dtype=np.float32)  # every sample unique: parts are told apart by value
    seg = make_segment(x, x, (), {}, "clip")
    (train,), (val,), (test,) = split_three_ways([seg], None, 0.15)
    assert (train.y.shape[0], val.y.shape[0], test.y.shape[0]) == (70_000, 15_000, 15_000)
    assert train.y[-1] < val.y[0] and val.y[-1] < test.y[0]  # in order, disjoint, covering everything
    assert train.y.shape[0] + val.y.shape[0] + test.y.shape[0] == x.shape[0]


def test_nam_input_three_ways(tmp_path):
    from edgeamp.train.knob_data import PairSpec
    from edgeamp.train.pipeline import split_three_ways

    _, val_clip = _v3_like(tmp_path)
    segments, _, reports = load_segments([PairSpec(str(tmp_path / "input.wav"), str(tmp_path / "output.wav"))],
                                         (), DataOptions())
    (train,), (val,), (test,) = split_three_ways(segments, reports, 0.15)
    np.testing.assert_array_equal(test.x[:, 0], val_clip)  # NAM's validation clip is the test clip
    assert val.y.shape[0] == train.y.shape[0] == 240_000  # as long as the test clip, at most half the rest
