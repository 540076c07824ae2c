"""Training data in memory: aligned pairs with their knob channels, split, and random crops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeamp.core.errors import InputError
from edgeamp.core.model import Knob


@dataclass
class Segment:
    """One continuous stretch of aligned audio: ``x`` ``(T, 1 + n_knobs)``, ``y`` ``(T,)``, float32."""

    x: np.ndarray
    y: np.ndarray
    name: str


def make_segment(x: np.ndarray, y: np.ndarray, knobs: tuple[Knob, ...], values: dict[str, float], name: str):
    cols = [x[:, None]]
    for k in knobs:
        if k.name not in values:
            raise InputError(f"{name}: no value for knob {k.name!r}")
        cols.append(np.full((x.shape[0], 1), k.normalise(values[k.name]), np.float32))
    return Segment(np.concatenate(cols, axis=1).astype(np.float32), y.astype(np.float32), name)


def split_tail(seg: Segment, fraction: float) -> tuple[Segment, Segment]:
    """Hold out the last ``fraction`` of a segment (a continuous tail, never seen in training)."""
    n_val = int(round(seg.y.shape[0] * fraction))
    cut = seg.y.shape[0] - n_val
    return (Segment(seg.x[:cut], seg.y[:cut], seg.name + "[train]"),
            Segment(seg.x[cut:], seg.y[cut:], seg.name + "[held-out]"))


class Sampler:
    """Random crops of ``length`` samples from segments, weighted by segment length.

    Each crop also gets a loss weight. With ``balance``, crops from a knob setting whose
    recordings are quiet weigh more, so that every setting counts alike in an energy-normalised
    loss (ESR over a batch is otherwise dominated by the loudest setting); the weights average
    1 over the data. Without knobs there is one setting and every weight is 1.
    """

    def __init__(self, segments: list[Segment], length: int, rng: np.random.Generator,
                 balance: bool = False) -> None:
        usable = [s for s in segments if s.y.shape[0] >= length]
        if not usable:
            longest = max((s.y.shape[0] for s in segments), default=0)
            raise InputError(f"training audio too short: crops need {length} samples, longest segment has {longest}")
        self.segments = usable
        self.length = length
        self.rng = rng
        sizes = np.array([s.y.shape[0] - length + 1 for s in usable], dtype=np.float64)
        self.p = sizes / sizes.sum()
        self.weights = np.ones(len(usable), np.float32)
        if balance:
            keys = [tuple(np.round(s.x[0, 1:], 6)) for s in usable]
            power = {}
            for key in set(keys):
                members = [s for s, k in zip(usable, keys) if k == key]
                power[key] = sum(float(np.sum(s.y.astype(np.float64) ** 2)) for s in members) / sum(
                    s.y.shape[0] for s in members)
            w = np.array([1.0 / max(power[k], 1e-12) for k in keys])
            self.weights = (w / np.sum(w * self.p)).astype(np.float32)

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``x (batch, length, channels)``, ``y (batch, length)`` and loss weights ``(batch,)``."""
        channels = self.segments[0].x.shape[1]
        xb = np.empty((batch_size, self.length, channels), np.float32)
        yb = np.empty((batch_size, self.length), np.float32)
        which = self.rng.choice(len(self.segments), size=batch_size, p=self.p)
        for i, s in enumerate(which):
            seg = self.segments[s]
            start = int(self.rng.integers(0, seg.y.shape[0] - self.length + 1))
            xb[i] = seg.x[start : start + self.length]
            yb[i] = seg.y[start : start + self.length]
        return xb, yb, self.weights[which]


def validation_pieces(segments: list[Segment], piece: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut held-out audio into ``piece``-sample parts, each preceded by ``warmup`` samples of its own
    past (zeros at the very start): ``x (N, warmup + piece, C)``, ``y (N, piece)``; the tail that
    does not fill a piece is dropped."""
    xs, ys = [], []
    for seg in segments:
        pad = np.concatenate([np.zeros((warmup, seg.x.shape[1]), np.float32), seg.x])
        for k in range(seg.y.shape[0] // piece):
            xs.append(pad[k * piece : k * piece + warmup + piece])
            ys.append(seg.y[k * piece : (k + 1) * piece])
    if not xs:
        raise InputError(f"held-out audio shorter than one validation piece of {piece} samples")
    return np.stack(xs), np.stack(ys)
