"""The WaveNet family's OpenVINO graphs (core/wavenet.py has the equations and layout).

Every dilated layer is a ``Convolution`` (dilation ``d``, no padding) over ``concat(history, hop)``
of its input, ``(B, C, d*(K-1) + T)``; its new history is the last ``d*(K-1)`` samples, carried
time-major as ``(B, d*(K-1)*C)`` like the recurrent family's state: variable ``h{g}``
(``stateful``, starting from the stored prewarmed state), inputs/outputs ``h_in{g}``/``h_out{g}``
(``explicit_state`` at batch 1, ``batched`` with a dynamic batch). The 1x1 convolutions, the input
mixin (one audio channel) among them, are ``Convolution`` with kernel 1 (a broadcast ``Multiply``
for the mixin cost a reorder per layer). Only opset 1-8 ops, which OpenVINO 2022.3 (the Myriad
plugin) reads. A WaveNet has no window semantics: ``window`` is not built.
"""

from __future__ import annotations

import numpy as np

from edgeamp.core.errors import ConfigError
from edgeamp.core.model import state_name
from edgeamp.core.wavenet import WaveNetArchitecture, WaveNetWeights
from edgeamp.edge_runtime import ov_compat

ov, ops, ops6 = ov_compat.ov(), ov_compat.opset8(), ov_compat.opset6()  # openvino through its one door


def _c(a) -> ov.Node:
    return ops.constant(np.asarray(a, dtype=np.float32))


def _i64(values) -> ov.Node:
    return ops.constant(np.array(values, dtype=np.int64))


def _activation(name: str, x):
    if name == "Tanh":
        return ops.tanh(x)
    if name == "Hardtanh":
        return ops.clamp(x, -1.0, 1.0)
    if name == "ReLU":
        return ops.relu(x)
    if name == "LeakyReLU":
        return ops.prelu(x, _c([0.01]))
    if name == "Sigmoid":
        return ops.sigmoid(x)
    if name == "SiLU":
        return ops.multiply(x, ops.sigmoid(x))
    if name == "Softsign":
        return ops.divide(x, ops.add(ops.abs(x), _c(1.0)))
    if name == "Hardswish":
        return ops.multiply(x, ops.multiply(ops.clamp(ops.add(x, _c(3.0)), 0.0, 6.0), _c(1.0 / 6.0)))
    if name == "Hardsigmoid":
        return ops.multiply(ops.clamp(ops.add(x, _c(3.0)), 0.0, 6.0), _c(1.0 / 6.0))
    if name == "ELU":
        return ops.elu(x, 1.0)
    raise ConfigError(f"no graph for activation {name!r}")  # LayerArray refuses it first


def _conv1x1(x, w: np.ndarray):
    """``(B, in, T)`` -> ``(B, out, T)`` through ``w (out, in)``."""
    return ops.convolution(x, _c(w[:, :, None]), [1], [0], [0], [1])


def build_wavenet_graph(arch: WaveNetArchitecture, weights: WaveNetWeights, spec) -> ov.Model:
    """The ``stateful``, ``explicit_state`` or ``batched`` graph of a WaveNet (``spec``: a GraphSpec)."""
    if spec.variant == "window":
        raise ConfigError("a WaveNet streams statefully; it has no window variant")
    hop = spec.hop_samples
    batched = spec.variant == "batched"
    batch = -1 if batched else 1
    audio = ops.parameter([batch, hop], np.float32, name="audio")
    audio.output(0).get_tensor().set_names({"audio"})
    params, results, sinks = [audio], [], []
    x = ops.unsqueeze(audio, _i64([1]))  # (B, 1, T)
    if spec.input_gain != 1.0:
        x = ops.multiply(x, _c(spec.input_gain))
    cond = x
    w = weights.arrays
    y, head, g = x, None, 0
    for i, a in enumerate(arch.arrays):
        p = f"wavenet/a{i}"
        z = _conv1x1(y, w[f"{p}/rechannel"])
        for j, d in enumerate(a.dilations):
            q = f"{p}/l{j}"
            length = a.history(d)
            if length:
                width = a.channels * length
                if spec.variant == "stateful":
                    start = w[f"{q}/h0"].T.reshape(1, width) if arch.initial_state else np.zeros((1, width))
                    state = ops6.read_value(_c(start), state_name("h", g), name=f"read_h{g}")
                else:
                    state = ops.parameter([batch, width], np.float32, name=state_name("h", g, "in"))
                    state.output(0).get_tensor().set_names({state_name("h", g, "in")})
                    params.append(state)
                # the history is kept time-major, (B, L, C) flattened: the layout the plugin runs the
                # convolutions in (channels last), so that no reorder is needed around the concat
                hist = ops.reshape(state, _i64([0, length, a.channels]), special_zero=True)
                hist = ops.transpose(hist, _i64([0, 2, 1]))
                full = ops.concat([hist, z], axis=2)  # (B, C, L + T), oldest first
                new = ops.slice(full, _i64([hop]), _i64([hop + length]), _i64([1]), _i64([2]))
                new = ops.reshape(ops.transpose(new, _i64([0, 2, 1])), _i64([0, width]), special_zero=True)
                if spec.variant == "stateful":
                    sinks.append(ops6.assign(new, state_name("h", g), name=f"assign_h{g}"))
                else:
                    results.append(ops.result(new, name=state_name("h", g, "out")))
                    new.output(0).get_tensor().set_names({state_name("h", g, "out")})
                g += 1
            else:
                full = z
            pre = ops.convolution(full, _c(w[f"{q}/conv_w"]), [1], [0], [0], [d])  # (B, mid, T)
            mixin = _conv1x1(cond, w[f"{q}/mixer"])  # (B, 1, T) -> (B, mid, T)
            pre = ops.add(ops.add(pre, _c(w[f"{q}/conv_b"][None, :, None])), mixin)
            if a.gated:
                c = a.channels
                left = ops.slice(pre, _i64([0]), _i64([c]), _i64([1]), _i64([1]))
                right = ops.slice(pre, _i64([c]), _i64([2 * c]), _i64([1]), _i64([1]))
                post = ops.multiply(_activation(a.activation, left), ops.sigmoid(right))
            else:
                post = _activation(a.activation, pre)
            z = ops.add(z, ops.add(_conv1x1(post, w[f"{q}/out_w"]), _c(w[f"{q}/out_b"][None, :, None])))
            head = post if head is None else ops.add(head, post)
        head = _conv1x1(head, w[f"{p}/head_w"])
        if a.head_bias:
            head = ops.add(head, _c(w[f"{p}/head_b"][None, :, None]))
        y = z
    scale = float(w["wavenet/head_scale"][0]) * spec.output_gain
    out = ops.multiply(ops.squeeze(head, _i64([1])), _c(scale))  # (B, T)
    result = ops.result(out, name="output")
    out.output(0).get_tensor().set_names({"output"})
    model = ov.Model([result, *results], params, f"edgeamp_wavenet_{spec.variant}")
    for sink in sinks:
        model.add_sinks([sink])
    return model
