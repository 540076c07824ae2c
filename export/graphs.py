"""Hand-built OpenVINO inference graphs from a bundle's numpy weights (opset API).

``openvino.convert_model`` on a Keras LSTM yields a ``Loop`` graph (slow, and a Myriad VPU
cannot run it), so the graph is built here from ``LSTMSequence`` / ``GRUSequence`` ops. Keras
stores LSTM gates i, f, c, o with kernels ``(in, 4U)``; ``LSTMSequence`` wants f, i, c, o with
``W (dirs, 4U, in)``, ``R (dirs, 4U, U)``, ``B (dirs, 4U)`` and state ``(batch, dirs, U)``.
Keras' GRU (``reset_after=True``) and ``GRUSequence`` share the gate order z, r, h; the reset
gate acting after the recurrent product is ``linear_before_reset=True``, whose ``B (dirs, 4U)`` is
``[b_z + b'_z, b_r + b'_r, b_h, b'_h]`` (input and recurrent bias of the candidate kept apart).
A GRU layer has only ``h`` state (no ``c_in``/``c_out``, no ``c`` variable). A model with a
stored initial state starts from it: the ``ReadValue`` initial values of ``stateful``, the
constants of ``window``; ``explicit_state`` and ``batched`` get it from the engine. A FIR stage
(``arch.fir_taps``) is a ``Convolution`` over its history of head outputs and the hop, its
history carried like the recurrent state: variable ``fir`` (stateful), ``fir_in``/``fir_out``
``(B, K - 1)`` (explicit_state, batched), zeros (window).

Variants (all batch 1, static shapes):

- ``stateful``: input one hop; LSTM state lives in the graph (``ReadValue``/``Assign``,
  variables ``h{l}``/``c{l}``), cleared by ``InferRequest.reset_state()``;
- ``explicit_state``: input one hop plus ``h_in{l}``/``c_in{l}``; outputs ``h_out{l}``/``c_out{l}``
  (GRU: ``h`` only).
  Only ops that OpenVINO 2022.3 reads: the Myriad VPU target;
- ``window``: stateless; ``window_samples`` in, the last ``hop_samples`` out (original experiment);
- ``batched``: ``explicit_state`` with a dynamic batch dimension: ``audio`` ``(B, hop)``,
  ``knobs`` ``(B, hop, n_knobs)``, ``h_in{l}``/``c_in{l}`` ``(B, 1, U)``; one inference serves many
  streams, each in its own row (edge_runtime.batching). Current OpenVINO only (not the Myriad).

Inputs: ``audio`` ``(1, T)`` float32 and, when the model has knobs, ``knobs`` ``(1, T, n_knobs)``
(normalised values, per sample so that a knob change can ramp across a hop). Output ``output``
``(1, hop)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgeamp.core.errors import ConfigError
from edgeamp.core.model import Architecture, ModelWeights, state_name
from edgeamp.edge_runtime import ov_compat

from .variants import VARIANTS

ov, ops, ops6 = ov_compat.ov(), ov_compat.opset8(), ov_compat.opset6()  # openvino through its one door

KERAS_TO_OV_GATES = (1, 0, 2, 3)  # i,f,c,o -> f,i,c,o


@dataclass(frozen=True)
class GraphSpec:
    variant: str
    hop_samples: int
    window_samples: int = 0
    input_gain: float = 1.0
    output_gain: float = 1.0


def ov_lstm_weights(kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray):
    """Keras layout -> LSTMSequence ``W (1, 4U, in)``, ``R (1, 4U, U)``, ``B (1, 4U)``, float32."""
    units = recurrent_kernel.shape[0]

    def reorder(a: np.ndarray) -> np.ndarray:  # a: (..., 4U) -> gates reordered on the last axis
        blocks = np.split(a, 4, axis=-1)
        return np.concatenate([blocks[g] for g in KERAS_TO_OV_GATES], axis=-1)

    w = reorder(kernel).T[None].astype(np.float32)
    r = reorder(recurrent_kernel).T[None].astype(np.float32)
    b = reorder(bias)[None].astype(np.float32)
    assert w.shape[1] == 4 * units  # internal invariant, not user input
    return w, r, b


def ov_gru_weights(kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray):
    """Keras ``reset_after`` GRU -> GRUSequence (``linear_before_reset``) ``W (1, 3U, in)``,
    ``R (1, 3U, U)``, ``B (1, 4U)``, float32 (the gate order z, r, h is the same)."""
    units = recurrent_kernel.shape[0]
    b_in, b_rec = bias[0], bias[1]
    b = np.concatenate([b_in[: 2 * units] + b_rec[: 2 * units], b_in[2 * units :], b_rec[2 * units :]])
    return (kernel.T[None].astype(np.float32), recurrent_kernel.T[None].astype(np.float32),
            b[None].astype(np.float32))


def _recurrent(arch: Architecture, y, states: list, seq_len, layer, layer_index: int):
    """One recurrent layer: the op (outputs Y ``(B, 1, T, U)``, then one per state kind)."""
    units = layer.units
    if arch.cell == "gru":
        w, r, b = ov_gru_weights(layer.kernel, layer.recurrent_kernel, layer.bias)
        return ops.gru_sequence(y, states[0], seq_len, _const(w), _const(r), _const(b), units, "forward",
                                linear_before_reset=True, name=f"gru{layer_index}")
    w, r, b = ov_lstm_weights(layer.kernel, layer.recurrent_kernel, layer.bias)
    return ops.lstm_sequence(y, states[0], states[1], seq_len, _const(w), _const(r), _const(b), units,
                             "forward", name=f"lstm{layer_index}")


def _fir(y, history, taps: np.ndarray, time: int):
    """The FIR stage over ``y`` ``(B, T, 1)`` with ``history`` ``(B, K - 1)``: ``(B, T, 1)`` out and the
    new history. Convolution is a cross-correlation, so the kernel is the taps reversed."""
    k = taps.shape[0]
    full = ops.concat([history, ops.squeeze(y, _i64([2]))], axis=1)  # (B, K - 1 + T), oldest first
    kernel = _const(np.ascontiguousarray(taps[::-1]).reshape(1, 1, k))
    out = ops.convolution(ops.unsqueeze(full, _i64([1])), kernel, [1], [0], [0], [1])  # (B, 1, T)
    new_history = ops.slice(full, _i64([time]), _i64([time + k - 1]), _i64([1]), _i64([1]))
    return ops.unsqueeze(ops.squeeze(out, _i64([1])), _i64([2])), new_history


def _layer(y, d, io, index: list):
    """A dense layer over ``y`` ``(B, T, in)``, or a conv1d one with its history from ``io(g, width)``
    (which returns the history node and a function taking the new one); ``index`` counts convs."""
    if not d.history:
        return _dense(y, d)
    k, n_in, units = d.kernel.shape
    length = d.history
    history, done = io(index[0], length * n_in)
    index[0] += 1
    hist = ops.reshape(history, _i64([0, length, n_in]), special_zero=True)
    full = ops.concat([hist, y], axis=1)  # (B, L + T, in), oldest first
    time = y.get_output_partial_shape(0)[1].get_length()  # static in every variant: the hop or the window
    new = ops.slice(full, _i64([time]), _i64([time + length]), _i64([1]), _i64([1]))
    done(ops.reshape(new, _i64([0, length * n_in]), special_zero=True))
    # Convolution is a cross-correlation over (B, in, L + T): Keras' kernel (K, in, units) as (units, in, K)
    z = ops.convolution(ops.transpose(full, _i64([0, 2, 1])), _const(np.transpose(d.kernel, (2, 1, 0))), [1], [0],
                        [0], [d.dilation])
    return _activate(ops.add(ops.transpose(z, _i64([0, 2, 1])), _const(d.bias)), d)


def _state_port(g: int, shape: list, params: list, results: list):
    """A conv1d history as a graph input ``conv_in{g}`` and output ``conv_out{g}`` (explicit_state,
    batched): the input node, and the function that makes the new history the output."""
    p = ops.parameter(shape, np.float32, name=state_name("conv", g, "in"))
    p.output(0).get_tensor().set_names({state_name("conv", g, "in")})
    params.append(p)

    def done(new):
        results.append(ops.result(new, name=state_name("conv", g, "out")))
        new.output(0).get_tensor().set_names({state_name("conv", g, "out")})

    return p, done


def _dense(y, d):
    """A dense layer (``model.DenseWeights``) over ``y`` ``(B, T, in)``: MatMul, bias, activation."""
    return _activate(ops.add(ops.matmul(y, _const(d.kernel), False, False), _const(d.bias)), d)


def _activate(y, d):
    if d.activation == "tanh":
        return ops.tanh(y)
    if d.activation == "relu":
        return ops.relu(y)
    if d.activation == "sigmoid":
        return ops.sigmoid(y)
    if d.activation == "elu":
        return ops.elu(y, 1.0)
    if d.activation == "softmax":
        return ops.softmax(y, 2)
    if d.activation == "prelu":  # max(y, 0) + alpha * min(y, 0), alpha per unit (the last axis)
        alpha = _const(np.asarray(d.alpha).reshape(1, 1, -1))
        return ops.add(ops.relu(y), ops.multiply(alpha, ops.minimum(y, _const(0.0))))
    return y


def _start(arch: Architecture, layer, kind: str) -> np.ndarray:
    """The ``(1, 1, U)`` state a stream starts from (the stored initial state, else zeros)."""
    value = layer.initial(kind) if arch.initial_state else np.zeros(layer.units)
    return np.asarray(value, np.float32).reshape(1, 1, layer.units)


def _const(a) -> ov.Node:
    return ops.constant(np.asarray(a, dtype=np.float32))


def build_batched_graph(arch: Architecture, weights: ModelWeights, spec: GraphSpec) -> ov.Model:
    """The ``batched`` variant: every shape op is batch-agnostic (unsqueeze/squeeze, a sequence-
    length vector broadcast to the batch), so one compiled model runs any number of streams."""
    hop = spec.hop_samples
    audio = ops.parameter([-1, hop], np.float32, name="audio")
    audio.output(0).get_tensor().set_names({"audio"})
    params = [audio]
    x = ops.unsqueeze(audio, _i64([2]))  # (B, T, 1)
    if spec.input_gain != 1.0:
        x = ops.multiply(x, _const(spec.input_gain))
    x_audio = x
    if arch.knobs:
        knobs = ops.parameter([-1, hop, len(arch.knobs)], np.float32, name="knobs")
        knobs.output(0).get_tensor().set_names({"knobs"})
        params.append(knobs)
        x = ops.concat([x, knobs], axis=2)
    batch = ops.gather(ops.shape_of(audio, "i64"), _i64([0]), _i64(0))  # (1,): B
    seq_len = ops.broadcast(ops.constant(np.array(hop, dtype=np.int32)), batch)
    results = []

    def conv_io(g: int, width: int):
        return _state_port(g, [-1, width], params, results)
    y = x
    convs = [0]
    for d in weights.front:
        y = _layer(y, d, conv_io, convs)
    for layer_index, layer in enumerate(weights.layers):
        states = []
        for kind in arch.state_kinds:
            p = ops.parameter([-1, 1, layer.units], np.float32, name=f"{kind}_in{layer_index}")
            p.output(0).get_tensor().set_names({p.get_friendly_name()})
            states.append(p)
        params += states
        rnn = _recurrent(arch, y, states, seq_len, layer, layer_index)
        y = ops.squeeze(rnn.output(0), _i64([1]))  # (B, 1, T, U) -> (B, T, U)
        for port, kind in enumerate(arch.state_kinds, start=1):
            results.append(ops.result(rnn.output(port), name=f"{kind}_out{layer_index}"))
            rnn.output(port).get_tensor().set_names({f"{kind}_out{layer_index}"})
    for d in weights.hidden:
        y = _layer(y, d, conv_io, convs)
    if arch.head:
        y = ops.add(ops.matmul(y, _const(weights.head_kernel), False, False), _const(weights.head_bias))
    if arch.fir_taps:
        history = ops.parameter([-1, arch.fir_taps - 1], np.float32, name="fir_in")
        history.output(0).get_tensor().set_names({"fir_in"})
        params.append(history)
        y, new_history = _fir(y, history, weights.fir_taps, hop)
        results.append(ops.result(new_history, name="fir_out"))
        new_history.output(0).get_tensor().set_names({"fir_out"})
    if arch.skip:
        y = ops.add(y, x_audio)
    y = ops.squeeze(y, _i64([2]))  # (B, T)
    if spec.output_gain != 1.0:
        y = ops.multiply(y, _const(spec.output_gain))
    out = ops.result(y, name="output")
    y.output(0).get_tensor().set_names({"output"})
    model = ov.Model([out, *results], params, "edgeamp_batched")
    return model


def build_graph(arch, weights, spec: GraphSpec) -> ov.Model:
    """The ``spec.variant`` graph of a model of any family (the family's builder from BUILDERS)."""
    model = BUILDERS[arch.family](arch, weights, spec)
    _stable_names(model)
    return model


def build_recurrent_graph(arch: Architecture, weights: ModelWeights, spec: GraphSpec) -> ov.Model:
    if spec.variant == "batched":
        return build_batched_graph(arch, weights, spec)
    if spec.variant not in VARIANTS:
        raise ConfigError(f"unknown graph variant {spec.variant!r}; known: {list(VARIANTS)}")
    time = spec.window_samples if spec.variant == "window" else spec.hop_samples
    if time < 1 or spec.hop_samples < 1:
        raise ConfigError(f"hop_samples must be >= 1 (got {spec.hop_samples})")
    if spec.variant == "window" and spec.window_samples < spec.hop_samples:
        raise ConfigError(f"window_samples {spec.window_samples} < hop_samples {spec.hop_samples}")

    params = []
    audio = ops.parameter([1, time], np.float32, name="audio")
    audio.output(0).get_tensor().set_names({"audio"})
    params.append(audio)
    x = ops.reshape(audio, _i64([1, time, 1]), special_zero=False)
    if spec.input_gain != 1.0:
        x = ops.multiply(x, _const(spec.input_gain))
    x_audio = x
    if arch.knobs:
        knobs = ops.parameter([1, time, len(arch.knobs)], np.float32, name="knobs")
        knobs.output(0).get_tensor().set_names({"knobs"})
        params.append(knobs)
        x = ops.concat([x, knobs], axis=2)

    results = []
    sinks = []

    def conv_io(g: int, width: int):
        zeros = np.zeros((1, width), np.float32)
        if spec.variant == "stateful":
            node = ops6.read_value(_const(zeros), state_name("conv", g), name=f"read_conv{g}")
            return node, lambda new: sinks.append(ops6.assign(new, state_name("conv", g), name=f"assign_conv{g}"))
        if spec.variant == "explicit_state":
            return _state_port(g, [1, width], params, results)
        return _const(zeros), lambda new: None  # window: every window starts from zeros
    seq_len = ops.constant(np.array([time], dtype=np.int32))
    y = x
    convs = [0]
    for d in weights.front:
        y = _layer(y, d, conv_io, convs)
    for layer_index, layer in enumerate(weights.layers):
        units = layer.units
        states = []
        for kind in arch.state_kinds:
            start = _start(arch, layer, kind)
            if spec.variant == "stateful":
                states.append(ops6.read_value(_const(start), f"{kind}{layer_index}", name=f"read_{kind}{layer_index}"))
            elif spec.variant == "explicit_state":
                p = ops.parameter([1, 1, units], np.float32, name=f"{kind}_in{layer_index}")
                p.output(0).get_tensor().set_names({p.get_friendly_name()})
                params.append(p)
                states.append(p)
            else:
                states.append(_const(start))
        rnn = _recurrent(arch, y, states, seq_len, layer, layer_index)
        y = ops.squeeze(rnn.output(0), _i64([1]))  # (1, 1, T, U) -> (1, T, U)
        for port, kind in enumerate(arch.state_kinds, start=1):
            if spec.variant == "stateful":
                # assign() takes a single-output node, not one of the sequence op's outputs: a
                # same-shape reshape (removed by the plugin) hands it over
                state = ops.reshape(rnn.output(port), _i64([1, 1, units]), special_zero=False)
                sinks.append(ops6.assign(state, f"{kind}{layer_index}", name=f"assign_{kind}{layer_index}"))
            elif spec.variant == "explicit_state":
                results.append(ops.result(rnn.output(port), name=f"{kind}_out{layer_index}"))
                rnn.output(port).get_tensor().set_names({f"{kind}_out{layer_index}"})
    for d in weights.hidden:
        y = _layer(y, d, conv_io, convs)
    if arch.head:
        y = ops.add(ops.matmul(y, _const(weights.head_kernel), False, False), _const(weights.head_bias))
    if arch.fir_taps:
        zeros = np.zeros((1, arch.fir_taps - 1), np.float32)
        if spec.variant == "stateful":
            history = ops6.read_value(_const(zeros), "fir", name="read_fir")
        elif spec.variant == "explicit_state":
            history = ops.parameter([1, arch.fir_taps - 1], np.float32, name="fir_in")
            history.output(0).get_tensor().set_names({"fir_in"})
            params.append(history)
        else:
            history = _const(zeros)
        y, new_history = _fir(y, history, weights.fir_taps, time)
        if spec.variant == "stateful":
            sinks.append(ops6.assign(new_history, "fir", name="assign_fir"))
        elif spec.variant == "explicit_state":
            results.append(ops.result(new_history, name="fir_out"))
            new_history.output(0).get_tensor().set_names({"fir_out"})
    if arch.skip:
        y = ops.add(y, x_audio)
    if spec.variant == "window":
        start = spec.window_samples - spec.hop_samples
        y = ops.slice(y, _i64([start]), _i64([spec.window_samples]), _i64([1]), _i64([1]))
    y = ops.reshape(y, _i64([1, spec.hop_samples]), special_zero=False)
    if spec.output_gain != 1.0:
        y = ops.multiply(y, _const(spec.output_gain))
    out = ops.result(y, name="output")
    y.output(0).get_tensor().set_names({"output"})
    model = ov.Model([out, *results], params, f"edgeamp_{spec.variant}")
    for sink in sinks:
        model.add_sinks([sink])
    return model


def _stable_names(model: ov.Model) -> None:
    """Replace OpenVINO's process-global auto names (``Constant_73``) by ones that depend only on
    the graph, so that exporting the same bundle twice writes byte-identical IR."""
    for index, node in enumerate(model.get_ordered_ops()):
        name = node.get_friendly_name()
        kind = node.get_type_name()
        if re.fullmatch(rf"{kind}_\d+", name):
            node.set_friendly_name(f"{kind.lower()}_{index}")


def _i64(values) -> ov.Node:
    return ops.constant(np.array(values, dtype=np.int64))


def _wavenet(arch, weights, spec):
    from .wavenet_graph import build_wavenet_graph

    return build_wavenet_graph(arch, weights, spec)


# each model family's graph builder (core/families.py lists the families)
BUILDERS = {"recurrent": build_recurrent_graph, "wavenet": _wavenet}
