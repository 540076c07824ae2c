"""Keras 3 model builders for an :class:`~edgeamp.core.model.Architecture`.

Every LSTM or GRU layer keeps Keras's cuDNN conditions (tanh, sigmoid recurrent activation,
no recurrent dropout, ``unroll=False``, ``use_bias=True``; GRU also ``reset_after=True``) so
that on a GPU Keras runs it through cuDNN; :func:`check_cudnn_compatible` asserts it from the
layer configs. Layers are named ``{cell}{i}`` like the bundle's weight arrays.
"""

from __future__ import annotations

import numpy as np

from edgeamp.core.errors import ConfigError
from edgeamp.core.model import Architecture, LayerWeights, ModelWeights

CUDNN_REQUIREMENTS = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "recurrent_dropout": 0.0,
    "unroll": False,
    "use_bias": True,
}
GRU_CUDNN_REQUIREMENTS = {**CUDNN_REQUIREMENTS, "reset_after": True}


def recurrent_layer(keras, arch: Architecture, units: int, index: int, **kwargs):
    """The Keras layer of ``arch.cell`` for stack position ``index``, with the cuDNN settings."""
    if arch.cell == "gru":
        return keras.layers.GRU(units, name=f"gru{index}", **GRU_CUDNN_REQUIREMENTS, **kwargs)
    return keras.layers.LSTM(units, name=f"lstm{index}", **CUDNN_REQUIREMENTS, **kwargs)


def build_keras_model(arch: Architecture, *, batch_size: int | None = None, stateful: bool = False, name="amp"):
    """Functional Keras model ``(batch, time, channels) -> (batch, time, 1)``.

    Layers are named ``lstm0..`` (``gru0..``), ``head``; channel 0 of the input is the audio.
    With ``stateful=True`` the recurrent layers carry state between calls (needs ``batch_size``).
    """
    import keras

    inp = keras.Input(shape=(None, arch.input_channels), batch_size=batch_size, name="audio_and_knobs")
    h = inp
    for i, units in enumerate(arch.units):
        h = recurrent_layer(keras, arch, units, i, return_sequences=True, stateful=stateful)(h)
    if arch.head:
        h = keras.layers.Dense(1, name="head")(h)
    if arch.fir_taps:  # each window starts from zeros, as in the window semantics
        h = fir_layer(keras, arch, padding="causal")(h)
    if arch.skip:
        audio = keras.layers.Lambda(lambda t: t[..., :1], name="audio")(inp)
        h = keras.layers.Add(name="skip")([h, audio])
    return keras.Model(inp, h, name=name)


def fir_layer(keras, arch: Architecture, padding: str = "valid"):
    """The FIR stage as a one-channel Conv1D named ``fir`` (no bias), starting as the identity so that
    a model with it trains from where one without it would. Keras' kernel is the taps reversed."""
    k = arch.fir_taps
    identity = np.zeros((k, 1, 1), np.float32)
    identity[-1] = 1.0
    return keras.layers.Conv1D(1, k, padding=padding, use_bias=False, name="fir",
                               kernel_initializer=keras.initializers.Constant(identity))


def check_cudnn_compatible(model) -> None:
    """Raise ConfigError naming the layer and setting if any LSTM or GRU would miss cuDNN."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("LSTM", "GRU"):
            continue
        cfg = layer.get_config()
        for key, want in (GRU_CUDNN_REQUIREMENTS if kind == "GRU" else CUDNN_REQUIREMENTS).items():
            got = cfg.get(key)
            if got != want:
                raise ConfigError(f"layer {layer.name}: {key}={got!r} rules out cuDNN (needs {want!r})")
        if cfg.get("use_cudnn", "auto") is False:
            raise ConfigError(f"layer {layer.name}: use_cudnn=False")


def set_keras_weights(model, arch: Architecture, weights: ModelWeights) -> None:
    for i, w in enumerate(weights.layers):
        model.get_layer(f"{arch.cell}{i}").set_weights([w.kernel, w.recurrent_kernel, w.bias])
    if arch.head:
        model.get_layer("head").set_weights([weights.head_kernel, weights.head_bias])
    if arch.fir_taps:
        model.get_layer("fir").set_weights([np.ascontiguousarray(weights.fir_taps[::-1]).reshape(-1, 1, 1)])


def weights_from_keras(model, arch: Architecture, initial: ModelWeights | None = None) -> ModelWeights:
    """Read the canonical weights back out of a model built by :func:`build_keras_model`.
    ``initial``: where ``arch`` stores an initial state (Keras layers hold none), take it from these."""
    layers = []
    for i, units in enumerate(arch.units):
        name = f"{arch.cell}{i}"
        k, r, b = (np.asarray(a, dtype=np.float32) for a in model.get_layer(name).get_weights())
        if r.shape != (units, arch.gates * units):
            raise ConfigError(f"layer {name} has recurrent kernel {r.shape}, expected {(units, arch.gates * units)}")
        h0 = c0 = None
        if arch.initial_state:
            if initial is None:
                raise ConfigError(f"{arch.describe()} stores an initial state: pass the weights it comes from")
            h0, c0 = initial.layers[i].h0, initial.layers[i].c0
        layers.append(LayerWeights(k, r, b, h0, c0))
    head = (None, None)
    if arch.head:
        head = tuple(np.asarray(a, dtype=np.float32) for a in model.get_layer("head").get_weights())
    taps = None
    if arch.fir_taps:
        taps = np.ascontiguousarray(np.asarray(model.get_layer("fir").get_weights()[0], np.float32)[::-1, 0, 0])
    return ModelWeights(tuple(layers), *head, arch.cell, taps)


def build_training_model(arch: Architecture, keras):
    """Keras model ``[x, h0, c0, h1, c1, ..., fir] -> [y, h0', c0', ..., fir']`` (GRU: ``h`` only per
    layer; ``fir``: a FIR stage's history of head outputs, ``(batch, K - 1)``); layer names match
    :func:`edgeamp.train.models.build_keras_model` so weights move by name."""
    inp = keras.Input(shape=(None, arch.input_channels), name="audio_and_knobs")
    state_inputs, state_outputs = [], []
    h = inp
    for i, units in enumerate(arch.units):
        states = [keras.Input(shape=(units,), name=f"{kind}{i}") for kind in arch.state_kinds]
        state_inputs += states
        h, *new_states = recurrent_layer(keras, arch, units, i, return_sequences=True, return_state=True)(
            h, initial_state=states if len(states) > 1 else states[0])
        state_outputs += new_states
    if arch.head:
        h = keras.layers.Dense(1, name="head")(h)
    if arch.fir_taps:
        k = arch.fir_taps
        history = keras.Input(shape=(k - 1,), name="fir_history")
        state_inputs.append(history)
        full = keras.layers.Concatenate(axis=1, name="fir_full")(
            [keras.layers.Reshape((k - 1, 1), name="fir_past")(history), h])  # (batch, K - 1 + T, 1)
        h = fir_layer(keras, arch)(full)
        state_outputs.append(keras.layers.Lambda(lambda t: t[:, -(k - 1):, 0], name="fir_next")(full))
    if arch.skip:
        h = keras.layers.Add(name="skip")([h, keras.layers.Lambda(lambda t: t[..., :1], name="audio")(inp)])
    return keras.Model([inp, *state_inputs], [h, *state_outputs], name="amp_train")
