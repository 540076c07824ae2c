"""Model description: architecture and weights, as data.

A model is a stack of recurrent layers of one cell type (``lstm`` or ``gru``), an optional
dense head, an optional input skip. Canonical weight layout (the one stored in ``weights.npz``)
is Keras 3's, per layer ``{cell}{i}/...``:

- LSTM: ``kernel (in, 4U)``, ``recurrent_kernel (U, 4U)``, ``bias (4U,)``; gate blocks along
  the last axis in the order **i, f, c, o** (input, forget, cell candidate, output);
- GRU (Keras ``reset_after=True``, the cuDNN form): ``kernel (in, 3U)``, ``recurrent_kernel (U, 3U)``,
  ``bias (2, 3U)`` (row 0 input bias, row 1 recurrent bias); gate blocks **z, r, h** (update,
  reset, candidate); ``h_t = z * h_{t-1} + (1 - z) * h~``, ``h~ = tanh(x W_h + b_h + r * (h U_h + b'_h))``.

A gate pre-activation is ``x @ kernel + h @ recurrent_kernel + bias``. The optional dense
head is ``kernel (units_last, 1)``, ``bias (1,)``. The optional long-memory stage is a learned
FIR filter on the head's output, ``fir/taps (K,)``: ``out[t] = sum_k taps[k] * pre[t - k]``,
before the input skip (a cabinet or transformer response the recurrent part need not carry);
its state is the last ``K - 1`` head outputs. With ``initial_state`` the stack starts
(and ``reset()`` returns) to a stored state ``{cell}{i}/h0`` (and ``/c0`` for LSTM), each
``(U,)``, instead of zeros: NAM's LSTM files carry one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import BundleError, ConfigError

Cell = Literal["lstm", "gru"]
GATES = {"lstm": 4, "gru": 3}
STATE_KINDS = {"lstm": ("h", "c"), "gru": ("h",)}


@dataclass(frozen=True)
class Knob:
    """A conditioning input that a user turns: ``minimum <= value <= maximum``, in knob units."""

    name: str
    minimum: float = 0.0
    maximum: float = 10.0
    default: float = 5.0
    # the model input the knob's minimum and maximum map to (linearly): edgeamp's trainer uses
    # [-1, 1]; an imported AIDA-X model takes its parameters as they are, [0, 1]
    model_minimum: float = -1.0
    model_maximum: float = 1.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"knob name {self.name!r} must be an identifier (letters, digits, _)")
        if not self.minimum < self.maximum:
            raise ConfigError(f"knob {self.name!r}: minimum {self.minimum} must be < maximum {self.maximum}")
        if not self.minimum <= self.default <= self.maximum:
            raise ConfigError(
                f"knob {self.name!r}: default {self.default} outside [{self.minimum}, {self.maximum}]"
            )
        if not (math.isfinite(self.model_minimum) and math.isfinite(self.model_maximum)
                and self.model_minimum != self.model_maximum):
            raise ConfigError(f"knob {self.name!r}: model range [{self.model_minimum}, {self.model_maximum}] "
                              "must be two different finite numbers")

    def value_of(self, value) -> float:
        """``value`` as this knob's setting (a float in range), or ConfigError naming the knob: a string,
        None, a bool, an integer too large for a float and NaN are refused like an out-of-range value."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ConfigError(f"knob {self.name!r} takes a number, got {str(value)[:40]!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"knob {self.name!r}: {str(value)[:20]}... is far outside its range "
                              f"[{self.minimum}, {self.maximum}]") from None
        self.normalise(number)
        return number

    def normalise(self, value: float) -> float:
        """Map a knob value to the model's input range (``model_minimum..model_maximum``, by
        default [-1, 1]); out-of-range values raise."""
        if not self.minimum <= value <= self.maximum:
            raise ConfigError(
                f"knob {self.name!r}: value {value} outside [{self.minimum}, {self.maximum}]"
            )
        span = self.model_maximum - self.model_minimum
        return self.model_minimum + span * (value - self.minimum) / (self.maximum - self.minimum)

    def denormalise(self, norm: float) -> float:
        """The inverse of :meth:`normalise`: a model input back to the knob's own units."""
        span = self.model_maximum - self.model_minimum
        return self.minimum + (norm - self.model_minimum) / span * (self.maximum - self.minimum)


DENSE_ACTIVATIONS = ("", "tanh", "relu", "sigmoid", "elu", "softmax", "prelu")
MAX_CONV_HISTORY = 1 << 16


@dataclass(frozen=True)
class Dense:
    """A dense layer applied to every sample: ``units`` outputs, then ``activation`` ("" linear;
    ``prelu`` with a learned slope per unit, ``alpha``; ``softmax`` over the units). Weights
    ``kernel (in, units)``, ``bias (units,)``, and ``alpha (units,)`` for prelu.

    With ``kernel_size`` K > 1 it is a causal 1-D convolution (RTNeural's ``conv1d``, Keras'
    ``Conv1D`` with causal padding): ``y[t] = sum_j kernel[j] . x[t - dilation * (K - 1 - j)]``,
    kernel ``(K, in, units)``; its state is the last ``dilation * (K - 1)`` inputs, ``(batch,
    dilation * (K - 1) * in)`` time-major (oldest first), zeros at the start as in RTNeural."""

    units: int
    activation: str = ""
    kernel_size: int = 1
    dilation: int = 1

    def __post_init__(self) -> None:
        for name in ("units", "kernel_size", "dilation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"a dense/conv layer needs a positive {name}, got {value!r}")
        if self.history > MAX_CONV_HISTORY:
            raise ConfigError(f"a conv1d layer keeps {self.history} samples of history (at most {MAX_CONV_HISTORY})")
        if self.activation not in DENSE_ACTIVATIONS:
            raise ConfigError(f"dense activation {self.activation!r} is not one of {DENSE_ACTIVATIONS}")

    @property
    def history(self) -> int:
        return self.dilation * (self.kernel_size - 1)

    def describe(self) -> str:
        kind = f"conv1d {self.units} k{self.kernel_size} d{self.dilation}" if self.kernel_size > 1 else (
            f"dense {self.units}")
        return kind + (f" {self.activation}" if self.activation else "")


@dataclass(frozen=True)
class Architecture:
    """A recurrent stack: audio (+ conditioning channels) in, one audio channel out.

    ``units``: sizes of the stacked recurrent layers, first to last.
    ``cell``: ``"lstm"`` or ``"gru"`` (every layer of the stack).
    ``head``: a dense ``units_last -> 1`` layer after the last layer; without it the last
    layer must have 1 unit and its hidden state is the output (the original experiment).
    ``skip``: add the audio input to the output (the model learns the residual).
    ``knobs``: conditioning inputs, one extra input channel each, in this order.
    ``initial_state``: the weights hold the state the stack starts from (else zeros).
    ``front``: dense layers applied to the input before the stack (RTNeural's time-distributed
    dense); ``hidden``: dense layers between the stack and the head (RTNeural models' hidden
    layers; they need the head).
    """

    units: tuple[int, ...]
    head: bool = False
    skip: bool = False
    knobs: tuple[Knob, ...] = ()
    cell: Cell = "lstm"
    initial_state: bool = False
    fir_taps: int = 0  # 0: none; else the length of the learned FIR after the head (>= 2)
    family: Literal["recurrent"] = "recurrent"  # the model family (core/families.py)
    front: tuple[Dense, ...] = ()
    hidden: tuple[Dense, ...] = ()

    def __post_init__(self) -> None:
        if self.hidden and not self.head:
            raise ConfigError("hidden dense layers need the dense head after them (the model's one output)")
        if not self.units or any(int(u) < 1 for u in self.units):
            raise ConfigError(f"units must be one or more positive sizes, got {self.units}")
        if self.cell not in GATES:
            raise ConfigError(f"cell must be one of {sorted(GATES)}, got {self.cell!r}")
        if not self.head and self.units[-1] != 1:
            raise ConfigError(
                f"without a dense head the last recurrent layer must have 1 unit, got {self.units[-1]}"
            )
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate knob names in {names}")
        if self.fir_taps == 1 or self.fir_taps < 0:
            raise ConfigError(f"fir_taps must be 0 (no FIR stage) or at least 2, got {self.fir_taps}")

    @property
    def input_channels(self) -> int:
        return 1 + len(self.knobs)

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def state_kinds(self) -> tuple[str, ...]:
        """Names of the per-layer state tensors: ``("h", "c")`` for LSTM, ``("h",)`` for GRU."""
        return STATE_KINDS[self.cell]

    def describe(self) -> str:
        """``LSTM 64-64-1``, ``GRU 12 + dense head + input skip`` (for listings and errors)."""
        text = "".join(f"{d.describe()} + " for d in self.front)
        text += f"{self.cell.upper()} {'-'.join(map(str, self.units))}"
        text += "".join(f" + {d.describe()}" for d in self.hidden)
        text += (" + dense head" if self.head else "") + (f" + FIR {self.fir_taps}" if self.fir_taps else "")
        return text + (" + input skip" if self.skip else "")

    def summary(self) -> dict:
        """What listings and the service's /model show of the architecture."""
        return {"family": self.family, "cell": self.cell, "units": list(self.units), "head": self.head,
                "skip": self.skip, "fir_taps": self.fir_taps, "initial_state": self.initial_state,
                "parameters": self.parameter_count()}

    def load_weights(self, arrays: dict[str, np.ndarray]) -> ModelWeights:
        """The weights of this architecture from ``weights.npz``'s arrays, checked."""
        return ModelWeights.from_arrays(self, arrays)

    def state_sizes(self) -> list[tuple[str, int, int]]:
        """Every recurrent state tensor in graph order: ``(kind, layer, width)``; ``("fir", -1, K - 1)``
        last when there is a FIR stage (its history of head outputs)."""
        sizes = [(kind, i, u) for i, u in enumerate(self.units) for kind in self.state_kinds]
        sizes += [("fir", -1, self.fir_taps - 1)] if self.fir_taps else []
        return sizes + [("conv", g, width) for g, width in enumerate(self.conv_histories())]

    def conv_histories(self) -> list[int]:
        """The state width of every conv1d layer (front, then hidden), in order."""
        out, n_in = [], self.input_channels
        for d in self.front:
            out += [d.history * n_in] if d.history else []
            n_in = d.units
        n_in = self.units[-1]
        for d in self.hidden:
            out += [d.history * n_in] if d.history else []
            n_in = d.units
        return out

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every array in ``weights.npz``, by name."""
        shapes: dict[str, tuple[int, ...]] = {}
        n_in = self.input_channels
        g = self.gates
        for i, d in enumerate(self.front):
            n_in = _dense_shapes(shapes, f"front{i}", n_in, d)
        for i, units in enumerate(self.units):
            p = f"{self.cell}{i}"
            shapes[f"{p}/kernel"] = (n_in, g * units)
            shapes[f"{p}/recurrent_kernel"] = (units, g * units)
            shapes[f"{p}/bias"] = (g * units,) if self.cell == "lstm" else (2, g * units)
            if self.initial_state:
                for kind in self.state_kinds:
                    shapes[f"{p}/{kind}0"] = (units,)
            n_in = units
        for i, d in enumerate(self.hidden):
            n_in = _dense_shapes(shapes, f"dense{i}", n_in, d)
        if self.head:
            shapes["head/kernel"] = (n_in, 1)
            shapes["head/bias"] = (1,)
        if self.fir_taps:
            shapes["fir/taps"] = (self.fir_taps,)
        return shapes

    def parameter_count(self) -> int:
        return int(sum(np.prod(s) for s in self.expected_shapes().values()))

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 per audio sample (matrix products only)."""
        flops = 0
        n_in = self.input_channels
        for d in self.front:
            flops, n_in = flops + 2 * n_in * d.units * d.kernel_size, d.units
        for units in self.units:
            flops += 2 * (n_in + units) * self.gates * units
            n_in = units
        for d in self.hidden:
            flops, n_in = flops + 2 * n_in * d.units * d.kernel_size, d.units
        if self.head:
            flops += 2 * n_in
        return flops + 2 * self.fir_taps


def _dense_shapes(shapes: dict, prefix: str, n_in: int, d: Dense) -> int:
    shapes[f"{prefix}/kernel"] = (n_in, d.units) if d.kernel_size == 1 else (d.kernel_size, n_in, d.units)
    shapes[f"{prefix}/bias"] = (d.units,)
    if d.activation == "prelu":
        shapes[f"{prefix}/alpha"] = (d.units,)
    return d.units


def state_name(kind: str, layer: int, way: str = "") -> str:
    """A state tensor's name in the graphs: ``h_in0``/``c_out1``/``fir_in`` (``way`` "in" or "out"),
    or the stateful IR's variable (``way`` ""): ``h0``, ``c1``, ``fir``."""
    if kind == "fir":
        return f"fir_{way}" if way else "fir"
    return f"{kind}_{way}{layer}" if way else f"{kind}{layer}"


@dataclass(frozen=True)
class LayerWeights:
    """One recurrent layer in Keras layout (see module docstring). ``h0``/``c0``: the stored
    initial state (``None``: zeros; a GRU has no ``c0``)."""

    kernel: np.ndarray  # (in_features, G*U)
    recurrent_kernel: np.ndarray  # (U, G*U)
    bias: np.ndarray  # (G*U,) for LSTM, (2, G*U) for GRU
    h0: np.ndarray | None = None  # (U,)
    c0: np.ndarray | None = None  # (U,)

    @property
    def units(self) -> int:
        return self.recurrent_kernel.shape[0]

    def initial(self, kind: str) -> np.ndarray:
        """The stored initial ``h`` or ``c`` (zeros where none is stored), ``(U,)``."""
        value = self.h0 if kind == "h" else self.c0
        return np.zeros(self.units, np.float32) if value is None else value


@dataclass(frozen=True)
class DenseWeights:
    """One :class:`Dense` layer's weights and its activation."""

    kernel: np.ndarray  # (in, units); (K, in, units) for a conv1d
    bias: np.ndarray  # (units,)
    activation: str = ""
    alpha: np.ndarray | None = None  # (units,), prelu only
    dilation: int = 1

    @property
    def history(self) -> int:
        return 0 if self.kernel.ndim == 2 else self.dilation * (self.kernel.shape[0] - 1)

    def astype(self, dtype: type) -> DenseWeights:
        return DenseWeights(np.asarray(self.kernel, dtype), np.asarray(self.bias, dtype), self.activation,
                            None if self.alpha is None else np.asarray(self.alpha, dtype), self.dilation)


@dataclass(frozen=True)
class ModelWeights:
    """All weights of an :class:`Architecture`, as numpy arrays."""

    layers: tuple[LayerWeights, ...]
    head_kernel: np.ndarray | None = None  # (U_last, 1)
    head_bias: np.ndarray | None = None  # (1,)
    cell: Cell = "lstm"
    fir_taps: np.ndarray | None = None  # (K,): taps[k] multiplies the head output k samples back
    front: tuple[DenseWeights, ...] = ()
    hidden: tuple[DenseWeights, ...] = ()
    family = "recurrent"  # the model family (not a field: the arrays say everything else)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for prefix, dense in (("front", self.front), ("dense", self.hidden)):
            for i, d in enumerate(dense):
                out[f"{prefix}{i}/kernel"], out[f"{prefix}{i}/bias"] = d.kernel, d.bias
                if d.alpha is not None:
                    out[f"{prefix}{i}/alpha"] = d.alpha
        for i, layer in enumerate(self.layers):
            p = f"{self.cell}{i}"
            out[f"{p}/kernel"] = layer.kernel
            out[f"{p}/recurrent_kernel"] = layer.recurrent_kernel
            out[f"{p}/bias"] = layer.bias
            for kind, value in (("h", layer.h0), ("c", layer.c0)):
                if value is not None:
                    out[f"{p}/{kind}0"] = value
        if self.head_kernel is not None:
            out["head/kernel"] = self.head_kernel
            out["head/bias"] = self.head_bias
        if self.fir_taps is not None:
            out["fir/taps"] = self.fir_taps
        return out

    @classmethod
    def from_arrays(cls, arch: Architecture, arrays: dict[str, np.ndarray]) -> ModelWeights:
        """Check names, shapes and finiteness against ``arch``; raise BundleError on mismatch."""
        expected = arch.expected_shapes()
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise BundleError(
                f"weights do not match the architecture {arch.describe()}: "
                f"missing {missing}, unexpected {extra}"
            )
        for name, shape in expected.items():
            arr = np.asarray(arrays[name])
            if arr.shape != shape:
                raise BundleError(f"weight {name!r} has shape {arr.shape}, the architecture needs {shape}")
            if not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise BundleError(f"weight {name!r} holds {bad} NaN/Inf value(s)")

        def get(name: str) -> np.ndarray | None:
            return np.asarray(arrays[name]) if name in expected else None

        layers = tuple(
            LayerWeights(
                kernel=np.asarray(arrays[f"{arch.cell}{i}/kernel"]),
                recurrent_kernel=np.asarray(arrays[f"{arch.cell}{i}/recurrent_kernel"]),
                bias=np.asarray(arrays[f"{arch.cell}{i}/bias"]),
                h0=get(f"{arch.cell}{i}/h0"),
                c0=get(f"{arch.cell}{i}/c0"),
            )
            for i in range(len(arch.units))
        )
        head = (np.asarray(arrays["head/kernel"]), np.asarray(arrays["head/bias"])) if arch.head else (None, None)

        def dense(prefix: str, specs: tuple[Dense, ...]) -> tuple[DenseWeights, ...]:
            return tuple(DenseWeights(np.asarray(arrays[f"{prefix}{i}/kernel"]),
                                      np.asarray(arrays[f"{prefix}{i}/bias"]), d.activation,
                                      get(f"{prefix}{i}/alpha"), d.dilation) for i, d in enumerate(specs))

        return cls(layers, *head, arch.cell, get("fir/taps"), dense("front", arch.front), dense("dense", arch.hidden))

    def astype(self, dtype: type) -> ModelWeights:
        cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
        return ModelWeights(
            tuple(LayerWeights(cast(w.kernel), cast(w.recurrent_kernel), cast(w.bias), cast(w.h0), cast(w.c0))
                  for w in self.layers),
            cast(self.head_kernel),
            cast(self.head_bias),
            self.cell,
            cast(self.fir_taps),
            tuple(d.astype(dtype) for d in self.front),
            tuple(d.astype(dtype) for d in self.hidden),
        )


def random_weights(arch: Architecture, seed: int = 0, scale: float = 0.5) -> ModelWeights:
    """Random weights for tests and benchmarks (uniform in +-scale/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in arch.expected_shapes().items():
        if name == "fir/taps":  # near identity: the current sample, and a small decaying tail
            arrays[name] = np.concatenate([[1.0], 0.3 * rng.uniform(-1, 1, shape[0] - 1)
                                           * np.exp(-np.arange(1, shape[0]) / 8.0)]).astype(np.float32)
            continue
        if name.endswith("/alpha"):
            arrays[name] = rng.uniform(0.05, 0.3, size=shape).astype(np.float32)
            continue
        if name.endswith("kernel"):
            fan_in = shape[0] if len(shape) == 2 else shape[0] * shape[1]
        elif name.startswith(("front", "dense")):  # a dense layer's bias
            fan_in = shape[0]
        else:  # a bias (G*U,) or (2, G*U), or an initial state (U,): scaled by the layer's units
            fan_in = shape[-1] // arch.gates if name.endswith("bias") else shape[0]
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


def ms_to_samples(ms: float, sample_rate: int, *, inexact: str = "refuse", what: str = "hop") -> int:
    """The one rule from milliseconds to samples: the nearest whole number, at least 1. Where ``ms``
    is not a whole number of samples at this rate, ``inexact="refuse"`` raises ConfigError naming the
    nearest choices (what a runtime hop asks for) and ``"round"`` rounds, saying so in a log line
    (a training preset's 10 ms at 22050 Hz is 220 samples)."""
    exact = ms * sample_rate / 1000.0
    whole = max(1, round(exact))
    if math.isclose(exact, whole, abs_tol=1e-6):
        return whole
    if inexact == "round":
        import logging

        logging.getLogger(__name__).info("%s of %g ms at %d Hz is %.3f samples: %d used", what, ms, sample_rate,
                                         exact, whole)
        return whole
    near = [h for h in (math.floor(exact), math.ceil(exact)) if h >= 1]
    options = ", ".join(f"{h} samples = {1000 * h / sample_rate:.4g} ms" for h in near)
    raise ConfigError(f"a {ms:g} ms {what} at {sample_rate} Hz is {exact:.3f} samples, not a whole number; "
                      f"choose e.g. {options} (use --{what}-samples)")


def hop_from_ms(hop_ms: float, sample_rate: int) -> int:
    """Hop length in samples; the hop must be a whole number of samples at this rate."""
    return ms_to_samples(hop_ms, sample_rate)
