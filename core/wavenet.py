"""The WaveNet family (NAM's A1 WaveNet): description, weights, state and the numpy reference.

A model is a chain of *layer arrays*; each array is a 1x1 ``rechannel`` (no bias) followed by
layers of one dilated causal convolution each, and a 1x1 ``head rechannel``. Per layer, with
``C`` channels, kernel ``K`` and dilation ``d`` (NAM's ``nam/models/wavenet.py`` as of 0.5.x,
what NAM Core runs):

    z   = conv_d(x) + conv_b + mixer @ c          (mid = 2C channels when gated, else C)
    p   = act(z)                  or act(z[:C]) * sigmoid(z[C:]) when gated
    x'  = x + out_w @ p + out_b                  (the next layer's input)
    h  += p                                      (the array's head sum)

``c`` is the model's input (the "input mixin", ``condition_size`` channels: the audio). The
first array's head sum starts from nothing, each later array's from the previous array's
``head_w @ h + head_b`` (so a head size equals the next array's channels). The output is
``head_scale * (head_w @ h + head_b)`` of the last array (one channel). ``conv_d`` is PyTorch's
cross-correlation: tap ``j`` of ``K`` multiplies the input ``d * (K - 1 - j)`` samples back.

Weights (``weights.npz``, names ``wavenet/a{i}/...`` and ``wavenet/a{i}/l{j}/...``):
``rechannel (C, in)``, per layer ``conv_w (mid, C, K)``, ``conv_b (mid,)``, ``mixer (mid, cond)``,
``out_w (C, C)``, ``out_b (C,)``, then ``head_w (head, C)`` and ``head_b (head,)`` (when
``head_bias``), and ``wavenet/head_scale (1,)``.

State: what a hop carries to the next is each layer's input history, its last ``d * (K - 1)``
samples per channel, ``(batch, d * (K - 1) * C)`` (time-major: oldest sample first, its C
channels together, the layout the CPU plugin runs convolutions in), named
``h{g}`` for the g-th layer with a history. A NAM player prewarms a WaveNet on reset with its
receptive field of silence, so it starts from the response to silence, not zeros: the bundle
stores that state (``wavenet/a{i}/l{j}/h0``) and every stream starts and resets to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import BundleError, ConfigError
from .model import Knob

# NAM's A1 activations (torch.nn class names; NAM Core's activations.cpp): numpy forms
ACTIVATIONS = {
    "Tanh": np.tanh,
    "Hardtanh": lambda x: np.clip(x, -1.0, 1.0),
    "ReLU": lambda x: np.maximum(x, 0.0),
    "LeakyReLU": lambda x: np.where(x >= 0, x, 0.01 * x),
    "Sigmoid": lambda x: 0.5 * (np.tanh(0.5 * x) + 1.0),
    "SiLU": lambda x: x * (0.5 * (np.tanh(0.5 * x) + 1.0)),
    "Softsign": lambda x: x / (1.0 + np.abs(x)),
    "Hardswish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "Hardsigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "ELU": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}
MAX_HISTORY = 1 << 16  # samples of history one layer may keep (NAM's largest dilation is 512; a bound, not a norm)
MAX_CHANNELS = 256


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


@dataclass(frozen=True)
class LayerArray:
    """One layer array (NAM's ``_Layers``): sizes as NAM's config names them."""

    input_size: int
    condition_size: int
    head_size: int
    channels: int
    kernel_size: int
    dilations: tuple[int, ...]
    activation: str = "Tanh"
    gated: bool = False
    head_bias: bool = True

    def __post_init__(self) -> None:
        for name in ("input_size", "condition_size", "head_size", "channels", "kernel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"wavenet layer array: {name} must be a positive whole number, got {value!r}")
        if self.channels > MAX_CHANNELS or self.head_size > MAX_CHANNELS:
            raise ConfigError(f"wavenet layer array: {self.channels} channels / head {self.head_size}: at most "
                              f"{MAX_CHANNELS} here")
        if not self.dilations or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dilations):
            raise ConfigError(f"wavenet layer array: dilations must be positive whole numbers, got {self.dilations}")
        worst = max(self.dilations) * (self.kernel_size - 1)
        if worst > MAX_HISTORY:
            raise ConfigError(f"wavenet layer array: dilation {max(self.dilations)} with kernel {self.kernel_size} "
                              f"keeps {worst} samples of history per channel (at most {MAX_HISTORY})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"wavenet layer array: activation {self.activation!r} is not one edgeamp runs "
                              f"({', '.join(ACTIVATIONS)})")

    @property
    def mid(self) -> int:
        return 2 * self.channels if self.gated else self.channels

    def history(self, dilation: int) -> int:
        return dilation * (self.kernel_size - 1)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)


@dataclass(frozen=True)
class WaveNetArchitecture:
    """A WaveNet: ``arrays`` in order, audio in (channel 0, also the input mixin), one channel out."""

    arrays: tuple[LayerArray, ...]
    family: Literal["wavenet"] = "wavenet"
    initial_state: bool = True  # the weights hold the start state (NAM's prewarm on silence)
    knobs: tuple[Knob, ...] = ()
    skip: bool = False
    fir_taps: int = 0

    def __post_init__(self) -> None:
        if not self.arrays:
            raise ConfigError("a WaveNet needs at least one layer array")
        if self.knobs or self.skip or self.fir_taps:
            raise ConfigError("a WaveNet here has no knobs, input skip or FIR stage")
        first = self.arrays[0]
        if first.input_size != 1:
            raise ConfigError(f"wavenet: the first layer array takes {first.input_size} input channels; the model's "
                              "input is one audio channel")
        for i, (a, b) in enumerate(zip(self.arrays, self.arrays[1:])):
            if b.input_size != a.channels:
                raise ConfigError(f"wavenet: layer array {i + 1} takes {b.input_size} channels, array {i} gives "
                                  f"{a.channels}")
            if b.channels != a.head_size:
                raise ConfigError(f"wavenet: layer array {i} has head size {a.head_size}, which must equal layer "
                                  f"array {i + 1}'s channels ({b.channels}): its head sum continues there")
        for i, a in enumerate(self.arrays):
            if a.condition_size != 1:
                raise ConfigError(f"wavenet: layer array {i} has condition_size {a.condition_size}; the input mixin "
                                  "is the audio (1)")
        if self.arrays[-1].head_size != 1:
            raise ConfigError(f"wavenet: the last layer array's head size is {self.arrays[-1].head_size}; the output "
                              "is one channel")

    # -- what the runtime asks of every model family -------------------------------------------
    @property
    def input_channels(self) -> int:
        return 1

    @property
    def knob_names(self) -> tuple[str, ...]:
        return ()

    @property
    def receptive_field(self) -> int:
        return 1 + sum(a.receptive_field - 1 for a in self.arrays)

    def layers(self) -> list[tuple[int, int, LayerArray, int]]:
        """Every layer: ``(array index, layer index, its array, dilation)``."""
        return [(i, j, a, d) for i, a in enumerate(self.arrays) for j, d in enumerate(a.dilations)]

    def describe(self) -> str:
        sizes = "/".join(f"{a.channels}x{len(a.dilations)}" for a in self.arrays)
        extra = {a.activation for a in self.arrays} - {"Tanh"}
        gated = " gated" if any(a.gated for a in self.arrays) else ""
        return f"WaveNet {sizes}{gated}{' ' + ','.join(sorted(extra)) if extra else ''} (receptive field " \
               f"{self.receptive_field})"

    def summary(self) -> dict:
        return {"family": "wavenet", "channels": [a.channels for a in self.arrays],
                "layers": [len(a.dilations) for a in self.arrays], "receptive_field": self.receptive_field,
                "initial_state": self.initial_state, "parameters": self.parameter_count()}

    def state_sizes(self) -> list[tuple[str, int, int]]:
        out, g = [], 0
        for _, _, a, d in self.layers():
            if a.history(d):
                out.append(("h", g, a.channels * a.history(d)))
                g += 1
        return out

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for i, a in enumerate(self.arrays):
            p = f"wavenet/a{i}"
            shapes[f"{p}/rechannel"] = (a.channels, a.input_size)
            for j, d in enumerate(a.dilations):
                q = f"{p}/l{j}"
                shapes[f"{q}/conv_w"] = (a.mid, a.channels, a.kernel_size)
                shapes[f"{q}/conv_b"] = (a.mid,)
                shapes[f"{q}/mixer"] = (a.mid, a.condition_size)
                shapes[f"{q}/out_w"] = (a.channels, a.channels)
                shapes[f"{q}/out_b"] = (a.channels,)
                if self.initial_state and a.history(d):
                    shapes[f"{q}/h0"] = (a.channels, a.history(d))
            shapes[f"{p}/head_w"] = (a.head_size, a.channels)
            if a.head_bias:
                shapes[f"{p}/head_b"] = (a.head_size,)
        shapes["wavenet/head_scale"] = (1,)
        return shapes

    def parameter_count(self) -> int:
        return int(sum(np.prod(s) for n, s in self.expected_shapes().items() if not n.endswith("/h0")))

    def flops_per_sample(self) -> int:
        flops = 0
        for a in self.arrays:
            flops += 2 * a.channels * a.input_size + 2 * a.head_size * a.channels
            flops += len(a.dilations) * 2 * (a.mid * a.channels * a.kernel_size + a.mid * a.condition_size
                                             + a.channels * a.channels)
        return flops

    def load_weights(self, arrays: dict[str, np.ndarray]) -> WaveNetWeights:
        return WaveNetWeights.from_arrays(self, arrays)


@dataclass(frozen=True)
class WaveNetWeights:
    """All weights of a :class:`WaveNetArchitecture` by their ``weights.npz`` names (module docstring)."""

    arch: WaveNetArchitecture
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    family = "wavenet"

    def to_arrays(self) -> dict[str, np.ndarray]:
        return dict(self.arrays)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @classmethod
    def from_arrays(cls, arch: WaveNetArchitecture, arrays: dict[str, np.ndarray]) -> WaveNetWeights:
        expected = arch.expected_shapes()
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        if missing or extra:
            raise BundleError(f"weights do not match the architecture {arch.describe()}: missing {missing[:6]}, "
                              f"unexpected {extra[:6]}")
        out = {}
        for name, shape in expected.items():
            arr = np.asarray(arrays[name])
            if arr.shape != shape:
                raise BundleError(f"weight {name!r} has shape {arr.shape}, the architecture needs {shape}")
            if not np.all(np.isfinite(arr)):
                raise BundleError(f"weight {name!r} holds NaN/Inf value(s)")
            out[name] = arr
        return cls(arch, out)

    def astype(self, dtype: type) -> WaveNetWeights:
        return WaveNetWeights(self.arch, {k: np.asarray(v, dtype) for k, v in self.arrays.items()})


# ---- the numpy reference ---------------------------------------------------------------------
def zero_state(arch: WaveNetArchitecture, batch: int = 1, dtype: type = np.float64) -> tuple:
    return tuple((np.zeros((batch, width), dtype),) for _, _, width in arch.state_sizes())


def initial_state(arch: WaveNetArchitecture, weights: WaveNetWeights, batch: int = 1,
                  dtype: type = np.float64) -> tuple:
    """The stored start state (each layer's history after the receptive field of silence), or zeros."""
    if not arch.initial_state:
        return zero_state(arch, batch, dtype)
    out = []
    for i, j, a, d in arch.layers():
        if a.history(d):
            h0 = np.asarray(weights[f"wavenet/a{i}/l{j}/h0"], dtype).T.reshape(1, -1)  # (C, L) -> time-major
            out.append((np.tile(h0, (batch, 1)),))
    return tuple(out)


def forward(weights: WaveNetWeights, x: np.ndarray, state: tuple) -> tuple[np.ndarray, tuple]:
    """``x`` ``(batch, time, 1)`` from ``state``: returns ``(batch, time)`` and the new state."""
    arch = weights.arch
    dtype = state[0][0].dtype if state else np.float64
    w = {k: np.asarray(v, dtype) for k, v in weights.arrays.items()}
    batch, time = x.shape[0], x.shape[1]
    cond = np.asarray(x, dtype).transpose(0, 2, 1)  # (B, 1, T)
    y, head = cond, None
    new_state, g = [], 0
    for i, a in enumerate(arch.arrays):
        p = f"wavenet/a{i}"
        z = np.einsum("oc,bct->bot", w[f"{p}/rechannel"], y)
        for j, d in enumerate(a.dilations):
            q = f"{p}/l{j}"
            hist_len = a.history(d)
            if hist_len:
                hist = state[g][0].reshape(batch, hist_len, a.channels).transpose(0, 2, 1)
                full = np.concatenate([hist, z], axis=2)
                new_state.append((full[:, :, full.shape[2] - hist_len :].transpose(0, 2, 1).reshape(batch, -1).copy(),))
                g += 1
            else:
                full = z
            conv_w = w[f"{q}/conv_w"]
            pre = np.zeros((batch, a.mid, time), dtype)
            for k in range(a.kernel_size):
                pre += np.einsum("oc,bct->bot", conv_w[:, :, k], full[:, :, k * d : k * d + time])
            pre += w[f"{q}/conv_b"][None, :, None] + np.einsum("oc,bct->bot", w[f"{q}/mixer"], cond)
            act = ACTIVATIONS[a.activation]
            post = act(pre[:, : a.channels]) * _sigmoid(pre[:, a.channels :]) if a.gated else act(pre)
            z = z + np.einsum("oc,bct->bot", w[f"{q}/out_w"], post) + w[f"{q}/out_b"][None, :, None]
            head = post if head is None else head + post
        head = np.einsum("oc,bct->bot", w[f"{p}/head_w"], head)
        if a.head_bias:
            head = head + w[f"{p}/head_b"][None, :, None]
        y = z
    return w["wavenet/head_scale"][0] * head[:, 0, :], tuple(new_state)


def prewarmed_state(arch: WaveNetArchitecture, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The start-state arrays (``.../h0``) NAM's prewarm leaves: the receptive field of silence from
    zero histories (after that many samples every history holds the steady response to silence)."""
    zero_arch = WaveNetArchitecture(arch.arrays, initial_state=False)
    weights = WaveNetWeights.from_arrays(zero_arch, {k: v for k, v in arrays.items() if not k.endswith("/h0")})
    silence = np.zeros((1, arch.receptive_field, 1))
    _, state = forward(weights, silence, zero_state(zero_arch))
    out, g = {}, 0
    for i, j, a, d in arch.layers():
        if a.history(d):
            out[f"wavenet/a{i}/l{j}/h0"] = state[g][0].reshape(a.history(d), a.channels).T.astype(np.float32)
            g += 1
    return out


def random_weights(arch: WaveNetArchitecture, seed: int = 0, scale: float = 1.0) -> WaveNetWeights:
    """Random weights at NAM's initial scale (for tests, sweeps and benchmarks), with the prewarmed
    start state."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in arch.expected_shapes().items():
        if name.endswith("/h0"):
            continue
        if name == "wavenet/head_scale":
            arrays[name] = np.array([0.02], np.float32)
            continue
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        arrays[name] = (rng.uniform(-1, 1, size=shape) * scale / np.sqrt(max(fan_in, 1))).astype(np.float32)
    if arch.initial_state:
        arrays.update(prewarmed_state(arch, arrays))
    return WaveNetWeights.from_arrays(arch, arrays)


# NAM's standard sizes (nam/train/core.py), as `edgeamp bench --arch wavenet:NAME` names them
def nam_preset(name: str) -> WaveNetArchitecture:
    sizes = {"standard": (16, 8), "lite": (12, 6), "feather": (8, 4), "nano": (4, 2)}
    if name not in sizes:
        raise ConfigError(f"unknown WaveNet size {name!r}; choose {', '.join(sizes)}")
    c1, c2 = sizes[name]
    if name == "standard":
        d1 = d2 = tuple(2**k for k in range(10))
    else:
        d1, d2 = (1, 2, 4, 8, 16, 32, 64), (128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    return WaveNetArchitecture((LayerArray(1, 1, c2, c1, 3, d1, "Tanh", False, False),
                                LayerArray(c1, 1, 1, c2, 3, d2, "Tanh", False, True)))
