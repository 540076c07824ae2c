"""The numpy reference: Keras 3 equivalence, streaming semantics, analytic checks."""

from __future__ import annotations

import numpy as np
import pytest

from edgeamp.core import reference
from edgeamp.core.errors import ConfigError, InputError
from edgeamp.core.model import Architecture, Knob, random_weights

from ..conftest import needs_tf

ARCHS = {
    "seed-64-64-1": Architecture((64, 64, 1)),
    "small-8-head": Architecture((8,), head=True),
    "two-layer-head-skip": Architecture((12, 6), head=True, skip=True),
    "knobs-skip": Architecture((10,), head=True, skip=True, knobs=(Knob("gain"), Knob("tone", 0, 1, 0.5))),
    "no-head-skip-knob": Architecture((5, 1), skip=True, knobs=(Knob("gain"),)),
}


def _signal(arch: Architecture, batch: int, time: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.8, 0.8, size=(batch, time, arch.input_channels))
    x[..., 1:] = rng.uniform(-1, 1, size=(batch, 1, arch.input_channels - 1))  # knobs held per sequence
    return x.astype(np.float32)


@needs_tf
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_keras_equals_reference_stateful(name):
    from edgeamp.train.models import build_keras_model, set_keras_weights

    arch = ARCHS[name]
    weights = random_weights(arch, seed=3, scale=1.5)
    model = build_keras_model(arch)
    set_keras_weights(model, arch, weights)
    x = _signal(arch, batch=3, time=400)
    y_keras = np.asarray(model(x))[..., 0]
    y_ref, _ = reference.run_stateful(arch, weights, x)
    np.testing.assert_allclose(y_keras, y_ref, atol=1e-5, rtol=0)


@needs_tf
@pytest.mark.parametrize("name", ["seed-64-64-1", "knobs-skip"])
def test_keras_equals_reference_window(name):
    """Window semantics: each hop is a fresh Keras call on the window that ends with it."""
    from edgeamp.train.models import build_keras_model, set_keras_weights

    arch = ARCHS[name]
    weights = random_weights(arch, seed=5, scale=1.5)
    model = build_keras_model(arch)
    set_keras_weights(model, arch, weights)
    window, hop = 96, 16
    x = _signal(arch, batch=2, time=hop * 9)
    y_ref = reference.run_window(arch, weights, x, window, hop)
    padded = np.concatenate([np.zeros((2, window - hop, arch.input_channels), np.float32), x], axis=1)
    windows = np.stack([padded[:, k * hop : k * hop + window] for k in range(9)], axis=1)  # (2, 9, W, C)
    y_keras = np.asarray(model(windows.reshape(18, window, -1)))[:, -hop:, 0].reshape(2, 9 * hop)
    np.testing.assert_allclose(y_keras, y_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_stateful_chunks_equal_whole(name):
    arch = ARCHS[name]
    weights = random_weights(arch, seed=1)
    x = _signal(arch, batch=2, time=300)
    whole, final = reference.run_stateful(arch, weights, x)
    state = None
    parts = []
    for lo, hi in [(0, 1), (1, 8), (8, 150), (150, 300)]:
        y, state = reference.run_stateful(arch, weights, x[:, lo:hi], state)
        parts.append(y)
    # float64; BLAS blocks differ with the chunk length, so equality is to rounding
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-12, rtol=0)
    for (h1, c1), (h2, c2) in zip(final, state):
        np.testing.assert_allclose(h1, h2, atol=1e-12, rtol=0)
        np.testing.assert_allclose(c1, c2, atol=1e-12, rtol=0)


def test_window_equals_naive_loop():
    arch = ARCHS["knobs-skip"]
    weights = random_weights(arch, seed=2)
    x = _signal(arch, batch=1, time=60)
    window, hop = 25, 10
    got = reference.run_window(arch, weights, x, window, hop, max_batch=2)
    padded = np.concatenate([np.zeros((1, window - hop, arch.input_channels)), x], axis=1)
    for k in range(6):
        y, _ = reference.run_stateful(arch, weights, padded[:, k * hop : k * hop + window])
        np.testing.assert_allclose(got[:, k * hop : (k + 1) * hop], y[:, -hop:], atol=1e-12, rtol=0)


def test_window_with_window_equal_hop_is_stateless_per_hop():
    arch = ARCHS["small-8-head"]
    weights = random_weights(arch, seed=2)
    x = _signal(arch, 1, 40)
    got = reference.run_window(arch, weights, x, 10, 10)
    second, _ = reference.run_stateful(arch, weights, x[:, 10:20])
    np.testing.assert_allclose(got[:, 10:20], second, atol=1e-12, rtol=0)


def test_lstm_single_unit_by_hand():
    """One unit, one step, known weights: h = o * tanh(i * g) with c0 = 0."""
    arch = Architecture((1,))
    from edgeamp.core.model import LayerWeights, ModelWeights

    k = np.array([[0.5, -0.3, 0.8, 0.2]])
    weights = ModelWeights((LayerWeights(k, np.zeros((1, 4)), np.array([0.1, 0.0, 0.0, -0.1])),))
    x = 0.7
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, g, o = sig(0.5 * x + 0.1), np.tanh(0.8 * x), sig(0.2 * x - 0.1)
    y, _ = reference.run_stateful(arch, weights, np.array([[[x]]]))
    assert y[0, 0] == pytest.approx(o * np.tanh(i * g), abs=1e-15)


def test_float64_and_float32_close_but_not_identical():
    arch = ARCHS["seed-64-64-1"]
    weights = random_weights(arch, seed=4)
    x = _signal(arch, 1, 200)
    y64, _ = reference.run_stateful(arch, weights, x, dtype=np.float64)
    y32, _ = reference.run_stateful(arch, weights, x, dtype=np.float32)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    np.testing.assert_allclose(y32, y64, atol=1e-5)


def test_bad_input_shapes_raise_with_message():
    arch = ARCHS["knobs-skip"]
    weights = random_weights(arch)
    with pytest.raises(InputError, match=r"\(batch, time, 3\).*got shape \(1, 10, 1\)"):
        reference.run_stateful(arch, weights, np.zeros((1, 10, 1)))
    with pytest.raises(InputError, match="NaN"):
        reference.run_stateful(arch, weights, np.full((1, 4, 3), np.nan))
    with pytest.raises(InputError, match="multiple of hop_samples=10"):
        reference.run_window(arch, weights, np.zeros((1, 15, 3)), 20, 10)


def test_architecture_validation_messages():
    with pytest.raises(ConfigError, match="last recurrent layer must have 1 unit"):
        Architecture((64, 64))
    with pytest.raises(ConfigError, match="duplicate knob"):
        Architecture((4,), head=True, knobs=(Knob("gain"), Knob("gain")))
    with pytest.raises(ConfigError, match="outside"):
        Knob("gain").normalise(11.0)
    assert Knob("tone", 0, 10, 5).normalise(5.0) == 0.0
