"""Keras 3 model builders for an :class:`~edgeamp.edge_runtime.model.Architecture`.

Every LSTM layer keeps Keras's cuDNN conditions (tanh, sigmoid recurrent activation,
no recurrent dropout, ``unroll=False``, ``use_bias=True``) so that on a GPU Keras runs it
through cuDNN; :func:`check_cudnn_compatible` asserts it from the layer configs.
"""

from __future__ import annotations

import numpy as np

from edgeamp.edge_runtime.errors import ConfigError
from edgeamp.edge_runtime.model import Architecture, LSTMLayerWeights, ModelWeights

CUDNN_REQUIREMENTS = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "recurrent_dropout": 0.0,
    "unroll": False,
    "use_bias": True,
}


def build_keras_model(arch: Architecture, *, batch_size: int | None = None, stateful: bool = False, name="amp"):
    """Functional Keras model ``(batch, time, channels) -> (batch, time, 1)``.

    Layers are named ``lstm0..``, ``head``; channel 0 of the input is the audio.
    With ``stateful=True`` the LSTMs carry state between calls (needs ``batch_size``).
    """
    import keras

    inp = keras.Input(shape=(None, arch.input_channels), batch_size=batch_size, name="audio_and_knobs")
    h = inp
    for i, units in enumerate(arch.lstm_units):
        h = keras.layers.LSTM(
            units, return_sequences=True, stateful=stateful, name=f"lstm{i}", **CUDNN_REQUIREMENTS
        )(h)
    if arch.head:
        h = keras.layers.Dense(1, name="head")(h)
    if arch.skip:
        audio = keras.layers.Lambda(lambda t: t[..., :1], name="audio")(inp)
        h = keras.layers.Add(name="skip")([h, audio])
    return keras.Model(inp, h, name=name)


def check_cudnn_compatible(model) -> None:
    """Raise ConfigError naming the layer and setting if any LSTM would miss cuDNN."""
    for layer in model.layers:
        if type(layer).__name__ != "LSTM":
            continue
        cfg = layer.get_config()
        for key, want in CUDNN_REQUIREMENTS.items():
            got = cfg.get(key)
            if got != want:
                raise ConfigError(f"layer {layer.name}: {key}={got!r} rules out cuDNN (needs {want!r})")
        if cfg.get("use_cudnn", "auto") is False:
            raise ConfigError(f"layer {layer.name}: use_cudnn=False")


def set_keras_weights(model, arch: Architecture, weights: ModelWeights) -> None:
    for i, w in enumerate(weights.lstm):
        model.get_layer(f"lstm{i}").set_weights([w.kernel, w.recurrent_kernel, w.bias])
    if arch.head:
        model.get_layer("head").set_weights([weights.head_kernel, weights.head_bias])


def weights_from_keras(model, arch: Architecture) -> ModelWeights:
    """Read the canonical weights back out of a model built by :func:`build_keras_model`."""
    layers = []
    for i, units in enumerate(arch.lstm_units):
        k, r, b = (np.asarray(a, dtype=np.float32) for a in model.get_layer(f"lstm{i}").get_weights())
        if r.shape != (units, 4 * units):
            raise ConfigError(f"layer lstm{i} has recurrent kernel {r.shape}, expected {(units, 4 * units)}")
        layers.append(LSTMLayerWeights(k, r, b))
    if arch.head:
        hk, hb = (np.asarray(a, dtype=np.float32) for a in model.get_layer("head").get_weights())
        return ModelWeights(tuple(layers), hk, hb)
    return ModelWeights(tuple(layers))
