"""The numpy reference: the ground truth every other backend is compared with.

Kept small and obvious on purpose. Arrays are ``(batch, time, channels)``; channel 0 is
the audio, channels 1.. are the normalised knob values. The state of a stack is a tuple
with one entry per layer: ``(h, c)`` for LSTM, ``(h,)`` for GRU, each ``(batch, units)``; a model
with a FIR stage has one more entry last, ``(history,)``: its last ``K - 1`` inputs, ``(batch, K - 1)``.

Two streaming semantics (docs/DESIGN.md):

- :func:`run_stateful`: one pass over the sequence, state carried in and out;
- :func:`run_window`: the original experiment: output hop ``k`` is the last ``hop``
  outputs of a fresh (initial-state) run over the ``window`` inputs that end with hop ``k``
  (zeros before the start of the signal).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .families import REFERENCES
from .model import Architecture, ModelWeights

LayerState = tuple[np.ndarray, ...]
State = tuple[LayerState, ...]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # exact identity, no overflow warnings


def zero_state(arch: Architecture, batch: int = 1, dtype: type = np.float64) -> State:
    if arch.family in REFERENCES:
        return REFERENCES[arch.family][2](arch, batch, dtype)
    layers = tuple(tuple(np.zeros((batch, u), dtype) for _ in arch.state_kinds) for u in arch.units)
    return layers + _fir_state(arch, batch, dtype)


def _fir_state(arch: Architecture, batch: int, dtype: type) -> State:
    """The FIR stage's history, then every conv1d layer's (all start from zeros)."""
    fir = ((np.zeros((batch, arch.fir_taps - 1), dtype),),) if arch.fir_taps else ()
    return fir + tuple((np.zeros((batch, width), dtype),) for width in arch.conv_histories())


def initial_state(arch: Architecture, weights: ModelWeights, batch: int = 1, dtype: type = np.float64) -> State:
    """The state a stream starts from and ``reset()`` returns to: the stored initial state of a
    model that has one (``arch.initial_state``, e.g. an imported NAM LSTM), else zeros."""
    if arch.family in REFERENCES:
        return REFERENCES[arch.family][1](arch, weights, batch, dtype)
    if not arch.initial_state:
        return zero_state(arch, batch, dtype)
    return tuple(
        tuple(np.tile(np.asarray(layer.initial(kind), dtype), (batch, 1)) for kind in arch.state_kinds)
        for layer in weights.layers
    ) + _fir_state(arch, batch, dtype)


def conv1d(d, y: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A causal conv1d layer (``DenseWeights`` with a ``(K, in, units)`` kernel) over ``y`` ``(B, T,
    in)``, the inputs before it from ``history`` ``(B, L * in)`` (time-major, oldest first): the
    output ``(B, T, units)`` and the new history."""
    k, n_in, _ = d.kernel.shape
    length = d.history
    full = np.concatenate([history.reshape(y.shape[0], length, n_in), y], axis=1)  # (B, L + T, in)
    time = y.shape[1]
    z = d.bias.astype(y.dtype) + sum(full[:, j * d.dilation : j * d.dilation + time] @ d.kernel[j].astype(y.dtype)
                                     for j in range(k))
    return _activate(d, z), full[:, full.shape[1] - length :].reshape(y.shape[0], -1).copy()


def dense(d, y: np.ndarray) -> np.ndarray:
    """A :class:`~edgeamp.core.model.DenseWeights` layer over ``y`` ``(..., in)``."""
    return _activate(d, y @ d.kernel.astype(y.dtype) + d.bias.astype(y.dtype))


def _activate(d, z: np.ndarray) -> np.ndarray:
    if d.activation == "tanh":
        return np.tanh(z)
    if d.activation == "relu":
        return np.maximum(z, 0.0)
    if d.activation == "sigmoid":
        return _sigmoid(z)
    if d.activation == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    if d.activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if d.activation == "prelu":
        return np.where(z >= 0, z, d.alpha.astype(z.dtype) * z)
    return z


def fir(taps: np.ndarray, y: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``out[t] = sum_k taps[k] * y[t - k]`` over ``y`` ``(batch, time)``, the samples before it from
    ``history`` ``(batch, K - 1)`` (oldest first); returns the output and the new history."""
    k = taps.shape[0]
    full = np.concatenate([history, y], axis=1)
    out = np.zeros_like(y)
    for lag in range(k):
        out += taps[lag] * full[:, k - 1 - lag : k - 1 - lag + y.shape[1]]
    return out, full[:, full.shape[1] - (k - 1) :]


def lstm_layer(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray, x: np.ndarray, state: LayerState
) -> tuple[np.ndarray, LayerState]:
    """One Keras-layout LSTM layer over a sequence.

    x: ``(batch, time, in_features)``; returns ``(batch, time, units)`` and the final ``(h, c)``.
    """
    h, c = state
    units = recurrent_kernel.shape[0]
    z_in = x @ kernel + bias  # (batch, time, 4U): input part of all steps at once
    out = np.empty(x.shape[:2] + (units,), dtype=z_in.dtype)
    for t in range(x.shape[1]):
        z = z_in[:, t] + h @ recurrent_kernel
        i = _sigmoid(z[:, :units])
        f = _sigmoid(z[:, units : 2 * units])
        g = np.tanh(z[:, 2 * units : 3 * units])
        o = _sigmoid(z[:, 3 * units :])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[:, t] = h
    return out, (h, c)


def gru_layer(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray, x: np.ndarray, state: LayerState
) -> tuple[np.ndarray, LayerState]:
    """One Keras-layout GRU layer (``reset_after=True``: gates z, r, h; bias rows input, recurrent)."""
    (h,) = state
    units = recurrent_kernel.shape[0]
    z_in = x @ kernel + bias[0]
    out = np.empty(x.shape[:2] + (units,), dtype=z_in.dtype)
    for t in range(x.shape[1]):
        zr = h @ recurrent_kernel + bias[1]
        z = _sigmoid(z_in[:, t, :units] + zr[:, :units])
        r = _sigmoid(z_in[:, t, units : 2 * units] + zr[:, units : 2 * units])
        cand = np.tanh(z_in[:, t, 2 * units :] + r * zr[:, 2 * units :])
        h = z * h + (1.0 - z) * cand
        out[:, t] = h
    return out, (h,)


LAYERS = {"lstm": lstm_layer, "gru": gru_layer}


def forward(
    weights: ModelWeights, x: np.ndarray, state: State, *, skip: bool = False
) -> tuple[np.ndarray, State]:
    """The whole model over ``x`` ``(batch, time, channels)``: returns ``(batch, time)`` and the new state.
    A model of another family than the recurrent one runs its own reference (``families.py``)."""
    if weights.family in REFERENCES:
        return REFERENCES[weights.family][0](weights, x, state)
    dtype = state[0][0].dtype
    y = np.asarray(x, dtype=dtype)
    n = len(weights.layers)
    convs = list(state[n + (weights.fir_taps is not None) :])  # the conv1d histories, in order
    new_convs = []

    def layer(d, y):
        if not d.history:
            return dense(d, y)
        out, history = conv1d(d, y, convs[len(new_convs)][0])
        new_convs.append((history,))
        return out

    for d in weights.front:
        y = layer(d, y)
    new_state = []
    layer_fn = LAYERS[weights.cell]
    for w, layer_state in zip(weights.layers, state[: len(weights.layers)]):
        y, s = layer_fn(
            w.kernel.astype(dtype), w.recurrent_kernel.astype(dtype), w.bias.astype(dtype), y, layer_state
        )
        new_state.append(s)
    for d in weights.hidden:
        y = layer(d, y)
    if weights.head_kernel is not None:
        y = y @ weights.head_kernel.astype(dtype) + weights.head_bias.astype(dtype)
    out = y[..., 0]
    if weights.fir_taps is not None:
        out, history = fir(weights.fir_taps.astype(dtype), out, state[n][0])
        new_state.append((history,))
    if skip:
        out = out + np.asarray(x[..., 0], dtype=dtype)
    return out, tuple(new_state + new_convs)


def _check_input(arch: Architecture, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1 and arch.input_channels == 1:
        x = x[None, :, None]
    elif x.ndim == 2 and arch.input_channels == 1:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[2] != arch.input_channels:
        raise InputError(
            f"reference input must be (batch, time, {arch.input_channels}) "
            f"[audio + {len(arch.knobs)} knob channel(s)], got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise InputError("reference input holds NaN or Inf")
    return x


def run_stateful(
    arch: Architecture,
    weights: ModelWeights,
    x: np.ndarray,
    state: State | None = None,
    *,
    dtype: type = np.float64,
) -> tuple[np.ndarray, State]:
    """Stateful semantics: ``x`` ``(batch, time, channels)`` (or 1-D audio without knobs).

    Returns ``(batch, time)`` output and the state after the last sample.
    """
    x = _check_input(arch, x)
    if state is None:
        state = initial_state(arch, weights, x.shape[0], dtype)
    return forward(weights, x, state, skip=arch.skip)


def run_window(
    arch: Architecture,
    weights: ModelWeights,
    x: np.ndarray,
    window_samples: int,
    hop_samples: int,
    *,
    dtype: type = np.float64,
    max_batch: int = 256,
) -> np.ndarray:
    """Window semantics over a whole signal: ``x`` ``(batch, time, channels)`` -> ``(batch, time)``.

    Time must be a multiple of ``hop_samples``; all windows run as one batch (in chunks
    of ``max_batch`` windows to bound memory).
    """
    x = _check_input(arch, x)
    batch, time, channels = x.shape
    if time % hop_samples:
        raise InputError(f"window semantics needs a multiple of hop_samples={hop_samples}, got {time} samples")
    n_hops = time // hop_samples
    padded = np.concatenate([np.zeros((batch, window_samples - hop_samples, channels), x.dtype), x], axis=1)
    # windows[b, k] = padded[b, k*hop : k*hop + window]
    starts = np.arange(n_hops) * hop_samples
    idx = starts[:, None] + np.arange(window_samples)[None, :]
    windows = padded[:, idx].reshape(batch * n_hops, window_samples, channels)
    outs = []
    for lo in range(0, windows.shape[0], max_batch):
        chunk = windows[lo : lo + max_batch]
        y, _ = forward(weights, chunk, initial_state(arch, weights, chunk.shape[0], dtype), skip=arch.skip)
        outs.append(y[:, -hop_samples:])
    return np.concatenate(outs, axis=0).reshape(batch, time)
