"""Learning-rate halving and early stopping on the validation ESR: Keras' own ``ReduceLROnPlateau``
and ``EarlyStopping`` callbacks, driven by the fit loop (one Keras "epoch" per validation, since the
TBPTT loop is not ``model.fit``)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Host:
    """What the callbacks look at: ``optimizer`` (ReduceLROnPlateau) and ``stop_training``
    (EarlyStopping); the Keras model itself stays out of it."""

    optimizer: object
    stop_training: bool = False


class ValidationSchedule:
    """``update(val_esr)`` after each validation: halves the learning rate after ``lr_decay_checks``
    validations without a new best (not below ``min_learning_rate``), and says stop after
    ``patience_checks`` without one. ``lr_changes``: ``[step, new rate]`` pairs."""

    def __init__(self, keras, optimizer, *, lr_decay_checks: int, patience_checks: int, min_learning_rate: float,
                 best: float = math.inf) -> None:
        self.host = _Host(optimizer)
        self._lr = lambda: float(keras.ops.convert_to_numpy(optimizer.learning_rate))  # a MirroredVariable too
        self.reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_esr", mode="min", factor=0.5,
                                                        patience=lr_decay_checks, min_lr=min_learning_rate,
                                                        min_delta=0.0, cooldown=0)
        self.stop = keras.callbacks.EarlyStopping(monitor="val_esr", mode="min", patience=patience_checks,
                                                  min_delta=0.0)
        self.checks = 0
        for cb in (self.reduce, self.stop):
            cb.set_model(self.host)
            cb.on_train_begin()
            cb.best = best  # resuming: the best so far is the one to beat
        self.lr_changes: list[list] = []

    def update(self, val_esr: float, step: int) -> bool:
        """Record one validation; True when training should stop."""
        before = self._lr()
        logs = {"val_esr": float(val_esr)}
        self.reduce.on_epoch_end(self.checks, dict(logs))
        self.stop.on_epoch_end(max(self.checks, 1), dict(logs))  # EarlyStopping never stops at epoch 0
        self.checks += 1
        after = self._lr()
        if after != before:
            self.lr_changes.append([step, after])
        return bool(self.host.stop_training)
