"""Model description: architecture and weights, as data.

Canonical weight layout (the one stored in ``weights.npz``) is Keras 3 ``LSTM``'s:

- ``kernel``            ``(in_features, 4 * units)``
- ``recurrent_kernel``  ``(units, 4 * units)``
- ``bias``              ``(4 * units,)``

with the gate blocks along the last axis in the order **i, f, c, o** (input, forget,
cell candidate, output). A gate pre-activation is ``x @ kernel + h @ recurrent_kernel +
bias``. The optional dense head is ``kernel (units_last, 1)``, ``bias (1,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import BundleError, ConfigError


@dataclass(frozen=True)
class Knob:
    """A conditioning input that a user turns: ``minimum <= value <= maximum``, in knob units."""

    name: str
    minimum: float = 0.0
    maximum: float = 10.0
    default: float = 5.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"knob name {self.name!r} must be an identifier (letters, digits, _)")
        if not self.minimum < self.maximum:
            raise ConfigError(f"knob {self.name!r}: minimum {self.minimum} must be < maximum {self.maximum}")
        if not self.minimum <= self.default <= self.maximum:
            raise ConfigError(
                f"knob {self.name!r}: default {self.default} outside [{self.minimum}, {self.maximum}]"
            )

    def normalise(self, value: float) -> float:
        """Map a knob value to the model's input range [-1, 1]; out-of-range values raise."""
        if not self.minimum <= value <= self.maximum:
            raise ConfigError(
                f"knob {self.name!r}: value {value} outside [{self.minimum}, {self.maximum}]"
            )
        return 2.0 * (value - self.minimum) / (self.maximum - self.minimum) - 1.0


@dataclass(frozen=True)
class Architecture:
    """An LSTM stack: audio (+ conditioning channels) in, one audio channel out.

    ``lstm_units``: sizes of the stacked LSTM layers, first to last.
    ``head``: a dense ``units_last -> 1`` layer after the last LSTM; without it the last
    LSTM must have 1 unit and its hidden state is the output (the original experiment).
    ``skip``: add the audio input to the output (the model learns the residual).
    ``knobs``: conditioning inputs, one extra input channel each, in this order.
    """

    lstm_units: tuple[int, ...]
    head: bool = False
    skip: bool = False
    knobs: tuple[Knob, ...] = ()

    def __post_init__(self) -> None:
        if not self.lstm_units or any(int(u) < 1 for u in self.lstm_units):
            raise ConfigError(f"lstm_units must be one or more positive sizes, got {self.lstm_units}")
        if not self.head and self.lstm_units[-1] != 1:
            raise ConfigError(
                f"without a dense head the last LSTM layer must have 1 unit, got {self.lstm_units[-1]}"
            )
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate knob names in {names}")

    @property
    def input_channels(self) -> int:
        return 1 + len(self.knobs)

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every array in ``weights.npz``, by name."""
        shapes: dict[str, tuple[int, ...]] = {}
        n_in = self.input_channels
        for i, units in enumerate(self.lstm_units):
            shapes[f"lstm{i}/kernel"] = (n_in, 4 * units)
            shapes[f"lstm{i}/recurrent_kernel"] = (units, 4 * units)
            shapes[f"lstm{i}/bias"] = (4 * units,)
            n_in = units
        if self.head:
            shapes["head/kernel"] = (n_in, 1)
            shapes["head/bias"] = (1,)
        return shapes

    def parameter_count(self) -> int:
        return int(sum(np.prod(s) for s in self.expected_shapes().values()))

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 per audio sample (matrix products only)."""
        flops = 0
        n_in = self.input_channels
        for units in self.lstm_units:
            flops += 2 * (n_in + units) * 4 * units
            n_in = units
        if self.head:
            flops += 2 * n_in
        return flops


@dataclass(frozen=True)
class LSTMLayerWeights:
    """One LSTM layer, Keras 3 layout, gate order i, f, c, o (see module docstring)."""

    kernel: np.ndarray  # (in_features, 4U)
    recurrent_kernel: np.ndarray  # (U, 4U)
    bias: np.ndarray  # (4U,)

    @property
    def units(self) -> int:
        return self.recurrent_kernel.shape[0]


@dataclass(frozen=True)
class ModelWeights:
    """All weights of an :class:`Architecture`, as numpy arrays."""

    lstm: tuple[LSTMLayerWeights, ...]
    head_kernel: np.ndarray | None = None  # (U_last, 1)
    head_bias: np.ndarray | None = None  # (1,)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.lstm):
            out[f"lstm{i}/kernel"] = layer.kernel
            out[f"lstm{i}/recurrent_kernel"] = layer.recurrent_kernel
            out[f"lstm{i}/bias"] = layer.bias
        if self.head_kernel is not None:
            out["head/kernel"] = self.head_kernel
            out["head/bias"] = self.head_bias
        return out

    @classmethod
    def from_arrays(cls, arch: Architecture, arrays: dict[str, np.ndarray]) -> ModelWeights:
        """Check names, shapes and finiteness against ``arch``; raise BundleError on mismatch."""
        expected = arch.expected_shapes()
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise BundleError(
                f"weights do not match the architecture {arch.lstm_units} (head={arch.head}): "
                f"missing {missing}, unexpected {extra}"
            )
        for name, shape in expected.items():
            arr = np.asarray(arrays[name])
            if arr.shape != shape:
                raise BundleError(f"weight {name!r} has shape {arr.shape}, the architecture needs {shape}")
            if not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise BundleError(f"weight {name!r} holds {bad} NaN/Inf value(s)")
        layers = tuple(
            LSTMLayerWeights(
                kernel=np.asarray(arrays[f"lstm{i}/kernel"]),
                recurrent_kernel=np.asarray(arrays[f"lstm{i}/recurrent_kernel"]),
                bias=np.asarray(arrays[f"lstm{i}/bias"]),
            )
            for i in range(len(arch.lstm_units))
        )
        if arch.head:
            return cls(layers, np.asarray(arrays["head/kernel"]), np.asarray(arrays["head/bias"]))
        return cls(layers)

    def astype(self, dtype: type) -> ModelWeights:
        cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
        return ModelWeights(
            tuple(LSTMLayerWeights(cast(w.kernel), cast(w.recurrent_kernel), cast(w.bias)) for w in self.lstm),
            cast(self.head_kernel),
            cast(self.head_bias),
        )


def random_weights(arch: Architecture, seed: int = 0, scale: float = 0.5) -> ModelWeights:
    """Random weights for tests and benchmarks (uniform in +-scale/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in arch.expected_shapes().items():
        fan_in = shape[0] if len(shape) == 2 else shape[0] // 4
        arrays[name] = (rng.uniform(-1, 1, size=shape) * scale / np.sqrt(max(fan_in, 1))).astype(np.float32)
    return ModelWeights.from_arrays(arch, arrays)


StreamingMode = Literal["window", "stateful"]


@dataclass(frozen=True)
class Streaming:
    """How the model runs on a stream (see docs/DESIGN.md, streaming contract).

    ``window``: every hop runs the last ``window_samples`` inputs from zero state and keeps
    the last ``hop_samples`` outputs (the original experiment). ``stateful``: LSTM state is
    carried from hop to hop; ``window_samples`` is unused (0).
    """

    mode: StreamingMode
    hop_samples: int
    window_samples: int = 0

    def __post_init__(self) -> None:
        if self.hop_samples < 1:
            raise ConfigError(f"hop_samples must be >= 1, got {self.hop_samples}")
        if self.mode == "window" and self.window_samples < self.hop_samples:
            raise ConfigError(
                f"window mode needs window_samples >= hop_samples, got {self.window_samples} < {self.hop_samples}"
            )


def hop_from_ms(hop_ms: float, sample_rate: int) -> int:
    """Hop length in samples; the hop must be a whole number of samples at this rate."""
    exact = hop_ms * sample_rate / 1000.0
    hop = round(exact)
    if hop < 1 or not math.isclose(exact, hop, abs_tol=1e-6):
        near = [h for h in (math.floor(exact), math.ceil(exact)) if h >= 1]
        options = ", ".join(f"{h} samples = {1000 * h / sample_rate:.4g} ms" for h in near)
        raise ConfigError(
            f"a {hop_ms:g} ms hop at {sample_rate} Hz is {exact:.3f} samples, not a whole number; "
            f"choose e.g. {options} (use --hop-samples)"
        )
    return hop
