"""The validation schedule: Keras' ReduceLROnPlateau and EarlyStopping driven once per validation."""

from __future__ import annotations

import pytest

from ..conftest import needs_tf


@needs_tf
def test_halves_after_checks_without_gain_floors_at_the_minimum_and_stops_on_patience():
    import keras

    from edgeamp.train.schedule import ValidationSchedule

    opt = keras.optimizers.Adam(learning_rate=0.004)
    s = ValidationSchedule(keras, opt, lr_decay_checks=3, patience_checks=7, min_learning_rate=0.001)
    esrs = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.91, 0.92]
    stops = [s.update(v, step=100 * (i + 1)) for i, v in enumerate(esrs)]
    # best at the 2nd check; three checks without a new best halve the rate (5th and 8th check), never below
    # the minimum; the 7th check without one stops
    assert s.lr_changes == [[500, pytest.approx(0.002)], [800, pytest.approx(0.001)]]
    assert stops == [False] * 8 + [True]
    again = ValidationSchedule(keras, opt, lr_decay_checks=1, patience_checks=50, min_learning_rate=0.001)
    again.update(2.0, 1)
    again.update(3.0, 2)
    assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(0.001)  # already at the floor


@needs_tf
def test_resume_beats_the_best_so_far():
    import keras

    from edgeamp.train.schedule import ValidationSchedule

    opt = keras.optimizers.Adam(learning_rate=0.01)
    s = ValidationSchedule(keras, opt, lr_decay_checks=1, patience_checks=9, min_learning_rate=1e-4, best=0.5)
    s.update(0.6, 10)  # not better than the resumed best: counts as a check without gain
    assert s.lr_changes == [[10, pytest.approx(0.005)]]


def test_the_progress_bar_counts_the_budget_it_has():
    """Regression: a --minutes budget gave a bar with no total, hence no ETA."""
    from edgeamp.train.fit import progress_budget

    assert progress_budget(500, None) == (500, "step")
    assert progress_budget(500, 2.0) == (500, "step")
    assert progress_budget(None, 2.5) == (150, "s")
