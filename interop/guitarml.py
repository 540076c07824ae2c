"""GuitarML / Automated-GuitarAmpModelling JSON (Proteus, NeuralPi, Chameleon, TS-M1N3, PrincePedal,
DarkStar, NeuralSeed, GuitarML's tone library): read only.

Layout (CoreAudioML's ``networks.py``, ``SimpleRNN.save_model`` and ``RecNet.save_model``, which
the GuitarML trainers run; the players read the same keys, e.g. Proteus' ``RTNeuralLSTM.cpp``):

- ``model_data``: ``{"model": "SimpleRNN", "unit_type": "LSTM"|"GRU", "input_size", "hidden_size",
  "num_layers", "output_size": 1, "skip", "bias_fl"}``; ``state_dict``: PyTorch's tensors as
  nested lists, ``rec.weight_ih_l{k} (G*H, in)``, ``rec.weight_hh_l{k} (G*H, H)``,
  ``rec.bias_ih_l{k}``, ``rec.bias_hh_l{k}`` (G*H,) per layer ``k``, then ``lin.weight (1, H)`` and
  ``lin.bias (1,)`` (absent when ``bias_fl`` is false).
- The early ``RecNet`` form: ``model_data {"model": "RecNet", "skip"}`` and ``blocks {"0": {...}}``,
  each block ``{"block_type", "input_size", "hidden_size", "output_size", "num_layers"?, "lin_bias"?,
  "skip"?}`` (a block's ``skip`` defaults to 1, its ``lin_bias`` to false), tensors under
  ``layers.block_1.rec.*`` / ``layers.block_1.lin.*``. One block is a SimpleRNN; a chain of blocks
  (a dense layer and a skip between recurrent layers) has no edgeamp form and is refused.

``forward``: ``y = lin(rec(x)) + x[..., :skip]``: ``skip`` 1 adds the audio channel (channel 0).
Channels after the first are the conditioning parameters the player feeds as they are, 0..1.
PyTorch's gate orders: LSTM i, f, g, o (Keras' i, f, c, o; the two biases are summed); GRU
r, z, n with ``b_hn`` inside the reset product (Keras' ``reset_after`` z, r, h: the blocks are
swapped and the biases kept apart). Every layer starts from zero state. The files say no sample
rate: GuitarML's players run their models at 44100 Hz (Proteus resamples the host's rate to it).
"""

from __future__ import annotations

import numpy as np

from edgeamp.core.errors import ConfigError, ModelFormatError
from edgeamp.core.model import Architecture, Dense, DenseWeights, LayerWeights, ModelWeights
from edgeamp.core.wavenet import LayerArray, WaveNetArchitecture, WaveNetWeights

from .common import Imported, as_array, knobs_for, positive_int

PLAYER_SAMPLE_RATE = 44100  # what Proteus/NeuralPi resample to: the rate their tone packs are recorded at
UNIT_TYPES = {"LSTM": "lstm", "GRU": "gru"}
MAX_HIDDEN = 512  # the largest GuitarML model seen has 96; the bound keeps a hostile header from allocating
MAX_LAYERS = 8
MAX_INPUTS = 8


def detect(doc: object) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("model_data"), dict)


def _simple_config(doc: dict, source: str) -> tuple[dict, str]:
    """The SimpleRNN settings of ``doc`` (a RecNet of one block read as one) and the key prefix of
    its tensors."""
    md = doc["model_data"]
    model = md.get("model")
    if model == "SimpleRNN":
        return md, ""
    if model == "RecNet":
        blocks = doc.get("blocks")
        if not isinstance(blocks, dict) or not blocks:
            raise ModelFormatError(f"{source}: a RecNet model needs a 'blocks' object (block '0' ...)")
        if len(blocks) != 1 or "0" not in blocks:
            raise ModelFormatError(f"{source}: this RecNet chains {len(blocks)} blocks, each with its own dense layer "
                                   "and skip; edgeamp deploys one recurrent stack with one output layer")
        block = blocks["0"]
        if not isinstance(block, dict):
            raise ModelFormatError(f"{source}: RecNet block '0' is not an object")
        if md.get("skip", 0):
            raise ModelFormatError(f"{source}: a RecNet skip around its block adds a second input skip; "
                                   "edgeamp adds the input once")
        config = {"unit_type": block.get("block_type"), "input_size": block.get("input_size"),
                  "hidden_size": block.get("hidden_size"), "num_layers": block.get("num_layers", 1),
                  "output_size": block.get("output_size"), "skip": block.get("skip", 1),
                  "bias_fl": block.get("lin_bias", False)}
        return config, "layers.block_1."
    if model == "GatedConvNet":
        raise ModelFormatError(f"{source}: a CoreAudioML GatedConvNet is convolutional (WaveNet-like); edgeamp "
                               "deploys LSTM/GRU models")
    raise ModelFormatError(f"{source}: model_data.model {model!r} is not one CoreAudioML writes (SimpleRNN, RecNet)")


def read_guitarml(doc: object, source: str, knob_names: list[str] | None = None) -> Imported:
    """An :class:`Imported` from a parsed GuitarML JSON document; every problem raises
    ModelFormatError naming the field."""
    if not detect(doc):
        raise ModelFormatError(f"{source}: a GuitarML model is a JSON object with 'model_data' and 'state_dict'")
    md, prefix = _simple_config(doc, source)
    unit = md.get("unit_type")
    if unit not in UNIT_TYPES:
        raise ModelFormatError(f"{source}: model_data.unit_type {unit!r}: edgeamp deploys "
                               f"{' and '.join(UNIT_TYPES)} (an Elman 'RNN' has no OpenVINO sequence op here)")
    cell = UNIT_TYPES[unit]
    n_in = positive_int(md.get("input_size", 1), "model_data.input_size", source)
    hidden = positive_int(md.get("hidden_size"), "model_data.hidden_size", source)
    layers_n = positive_int(md.get("num_layers", 1), "model_data.num_layers", source)
    out = positive_int(md.get("output_size", 1), "model_data.output_size", source)
    for value, limit, what in ((n_in, MAX_INPUTS, "input_size"), (hidden, MAX_HIDDEN, "hidden_size"),
                               (layers_n, MAX_LAYERS, "num_layers")):
        if value > limit:
            raise ModelFormatError(f"{source}: model_data.{what} {value} is beyond any GuitarML model (at most "
                                   f"{limit}); refused before reading the weights")
    if out != 1:
        raise ModelFormatError(f"{source}: model_data.output_size {out}: edgeamp models have one audio output")
    skip = md.get("skip", 0)
    if isinstance(skip, bool) or skip not in (0, 1):
        raise ModelFormatError(f"{source}: model_data.skip {skip!r}: with one output only 0 or 1 (the audio "
                               "channel) can be added")
    bias_fl = md.get("bias_fl", True)
    if not isinstance(bias_fl, bool):
        raise ModelFormatError(f"{source}: model_data.bias_fl {bias_fl!r} must be true or false")
    state = doc.get("state_dict")
    if not isinstance(state, dict):
        raise ModelFormatError(f"{source}: 'state_dict' must be an object of the model's tensors (the file was "
                               "saved without its weights?)")
    gates = 4 if cell == "lstm" else 3
    expected = {}
    for k in range(layers_n):
        expected[f"{prefix}rec.weight_ih_l{k}"] = (gates * hidden, n_in if k == 0 else hidden)
        expected[f"{prefix}rec.weight_hh_l{k}"] = (gates * hidden, hidden)
        expected[f"{prefix}rec.bias_ih_l{k}"] = (gates * hidden,)
        expected[f"{prefix}rec.bias_hh_l{k}"] = (gates * hidden,)
    expected[f"{prefix}lin.weight"] = (1, hidden)
    if bias_fl:
        expected[f"{prefix}lin.bias"] = (1,)
    missing = [k for k in expected if k not in state]
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelFormatError(f"{source}: state_dict does not match model_data ({unit} {layers_n} x {hidden}, "
                               f"input_size {n_in}, bias_fl {str(bias_fl).lower()}): missing {missing}, "
                               f"unexpected {extra}")
    t = {name: as_array(state[name], shape, f"state_dict[{name!r}]", source) for name, shape in expected.items()}
    layers = []
    for k in range(layers_n):
        w_ih, w_hh = t[f"{prefix}rec.weight_ih_l{k}"], t[f"{prefix}rec.weight_hh_l{k}"]
        b_ih, b_hh = t[f"{prefix}rec.bias_ih_l{k}"], t[f"{prefix}rec.bias_hh_l{k}"]
        if cell == "lstm":  # i, f, g, o is Keras' i, f, c, o
            layers.append(LayerWeights(np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T),
                                       (b_ih.astype(np.float64) + b_hh).astype(np.float32)))
        else:  # r, z, n -> z, r, h
            order = np.r_[hidden : 2 * hidden, 0:hidden, 2 * hidden : 3 * hidden]
            layers.append(LayerWeights(np.ascontiguousarray(w_ih[order].T), np.ascontiguousarray(w_hh[order].T),
                                       np.stack([b_ih[order], b_hh[order]]).astype(np.float32)))
    head_kernel = np.ascontiguousarray(t[f"{prefix}lin.weight"].T)
    head_bias = t[f"{prefix}lin.bias"] if bias_fl else np.zeros(1, np.float32)
    described = doc.get("metadata", {}).get("parameters") if isinstance(doc.get("metadata"), dict) else None
    knobs = knobs_for(n_in - 1, knob_names, described, source) if n_in > 1 else ()
    arch = Architecture(tuple([hidden] * layers_n), head=True, skip=bool(skip), knobs=knobs, cell=cell)
    weights = ModelWeights(tuple(layers), head_kernel, head_bias, cell=cell)
    meta = {"model": doc["model_data"].get("model"), "unit_type": unit}
    return Imported("guitarml", arch, weights, None, meta)


# GuitarML's convolutional formats
def detect_convolutional(doc: object) -> bool:
    return isinstance(doc, dict) and (
        {"residual_channels", "dilations", "variables"} <= set(doc)  # SmartGuitarAmp / SmartGuitarPedal WaveNet
        or {"conv1d", "conv1d_1", "dense"} <= set(doc))  # SmartAmpPro (Conv1D front end + LSTM)


def read_convolutional(doc: dict, source: str, knob_names=None) -> Imported:
    if knob_names:
        raise ModelFormatError(f"{source}: a SmartGuitarAmp/SmartAmpPro model has no knobs to name")
    if "residual_channels" not in doc:
        return read_smartamppro(doc, source)
    return read_smartguitar_wavenet(doc, source)


# SmartAmpPro JSON (GuitarML/SmartAmpPro: resources/train.py writes the model, Source/ModelLoader.cpp and
# Source/lstm.cpp run it)
MAX_PRO_WINDOW = 4096
MAX_PRO_FILTERS = 64
MAX_PRO_HIDDEN = 256
FORGET_OFF = -1.0e4  # a forget gate bias that makes sigmoid(f) exactly 0: the LSTM forgets every sample


def _same_padding(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """lstm.cpp's pad_init: 'same' padding of ``n`` rows for a kernel and stride (left, right)."""
    rest = n % stride
    width = max(kernel - (stride if rest == 0 else rest), 0)
    return width // 2, width - width // 2


def read_smartamppro(doc: dict, source: str) -> Imported:
    """A SmartAmpPro model as edgeamp's recurrent family, exactly.

    The plugin (``lstm.cpp``) computes each output sample from the window of the last ``input_size``
    input samples (oldest first, zeros before the start): ``conv1d`` (kernel, stride, 'same'
    padding) over the window, ``conv1d_1`` over that (its padded rows are one kernel: one frame out),
    then an LSTM run one step from zero state (``h = sigmoid(o) * tanh(sigmoid(i) * tanh(g))``, Keras
    gate order i, f, c, o) and a dense layer. Both convolutions are linear, so together they are one
    causal FIR bank of ``input_size`` taps per channel: edgeamp's front conv1d layer (composed here
    frame by frame with the plugin's padding and strides). The LSTM step becomes an LSTM
    layer whose recurrent kernel is zero and whose forget gate is held shut (bias -1e4: sigmoid
    gives exactly 0, so nothing carries from one sample to the next). Drive and master are the
    plugin's knobs around the model, not part of it; the files say no rate (the tone library: 44.1 kHz).
    """
    try:
        window = positive_int(doc.get("input_size"), "input_size", source, MAX_PRO_WINDOW)
        s1 = positive_int(doc.get("conv1d_stride"), "conv1d_stride", source, MAX_PRO_WINDOW)
        s2 = positive_int(doc.get("conv1d_1_stride"), "conv1d_1_stride", source, MAX_PRO_WINDOW)
        layers = {name: doc.get(name) for name in ("conv1d", "conv1d_1", "lstm", "dense")}
        for name, layer in layers.items():
            if not isinstance(layer, dict) or "kernel:0" not in layer or "bias:0" not in layer:
                raise ModelFormatError(f"{source}: '{name}' needs 'kernel:0' and 'bias:0'")
        shape = _nested_shape(layers["conv1d"]["kernel:0"])
        if len(shape) != 3 or shape[1] != 1:
            raise ModelFormatError(f"{source}: conv1d kernel:0 must be (kernel, 1, filters), got {shape}")
        k1 = positive_int(shape[0], "the conv1d kernel size", source, MAX_PRO_WINDOW)
        f1 = positive_int(shape[2], "conv1d filters", source, MAX_PRO_FILTERS)
        shape2 = _nested_shape(layers["conv1d_1"]["kernel:0"])
        if len(shape2) != 3 or shape2[1] != f1:
            raise ModelFormatError(f"{source}: conv1d_1 kernel:0 must be (kernel, {f1}, filters), got {shape2}")
        k2 = positive_int(shape2[0], "the conv1d_1 kernel size", source, MAX_PRO_WINDOW)
        f2 = positive_int(shape2[2], "conv1d_1 filters", source, MAX_PRO_FILTERS)
        lshape = _nested_shape(layers["lstm"]["kernel:0"])
        if len(lshape) != 2 or lshape[0] != f2 or lshape[1] % 4:
            raise ModelFormatError(f"{source}: lstm kernel:0 must be ({f2}, 4 x units), got {lshape}")
        hidden = positive_int(lshape[1] // 4, "LSTM units", source, MAX_PRO_HIDDEN)
        K1 = as_array(layers["conv1d"]["kernel:0"], (k1, 1, f1), "conv1d kernel", source).astype(np.float64)
        B1 = as_array(layers["conv1d"]["bias:0"], (f1,), "conv1d bias", source).astype(np.float64)
        K2 = as_array(layers["conv1d_1"]["kernel:0"], (k2, f1, f2), "conv1d_1 kernel", source).astype(np.float64)
        B2 = as_array(layers["conv1d_1"]["bias:0"], (f2,), "conv1d_1 bias", source).astype(np.float64)
        W = as_array(layers["lstm"]["kernel:0"], (f2, 4 * hidden), "lstm kernel", source)
        b = as_array(layers["lstm"]["bias:0"], (4 * hidden,), "lstm bias", source)
        D = as_array(layers["dense"]["kernel:0"], (hidden, 1), "dense kernel", source)
        db = as_array(layers["dense"]["bias:0"], (1,), "dense bias", source)
    except ConfigError as exc:
        raise ModelFormatError(f"{source}: {exc}") from exc
    left1, right1 = _same_padding(window, k1, s1)
    frames = (window + left1 + right1) // s1
    left2, right2 = _same_padding(frames, k2, s2)
    if frames + left2 + right2 != k2:
        raise ModelFormatError(f"{source}: conv1d_1 gives {(frames + left2 + right2 - k2) // s2 + 1} frames from "
                               f"input_size {window}; the plugin computes one (its lstm.cpp is right for input_size "
                               "up to about 140, the trainer's 120), so this file has no defined output")

    if (frames - 1) * s1 + k1 > window + left1 + right1:
        raise ModelFormatError(f"{source}: conv1d's last frame reaches past its padded window (kernel {k1}, stride "
                               f"{s1}, input_size {window}): the plugin's code has no defined output there")
    # the composite of the plugin's two linear convolutions: conv1d_1's padded row i + left2 holds frame
    # i, whose tap m reads window sample i * s1 + m - left1 (outside the window: the zero padding)
    taps, offset = np.zeros((window, f2)), B2.copy()
    for i in range(frames):
        row = K2[i + left2]  # (f1, f2)
        offset += B1 @ row
        pos = i * s1 + np.arange(k1) - left1
        inside = (pos >= 0) & (pos < window)
        taps[pos[inside]] += K1[inside, 0, :] @ row  # distinct positions within one frame
    bias = np.asarray(b, np.float64).copy()
    bias[hidden : 2 * hidden] = FORGET_OFF
    arch = Architecture((hidden,), head=True, front=(Dense(f2, kernel_size=window),))
    weights = ModelWeights(
        (LayerWeights(W.astype(np.float32), np.zeros((hidden, 4 * hidden), np.float32), bias.astype(np.float32)),),
        D.astype(np.float32), db.astype(np.float32), front=(DenseWeights(taps[:, None, :].astype(np.float32),
                                                                          offset.astype(np.float32)),))
    meta = {"model": "SmartAmpPro", "input_size": window, "conv1d": [k1, s1, f1], "conv1d_1": [k2, s2, f2],
            "lstm_units": hidden}
    return Imported("guitarml-conv", arch, weights, None, meta)


def _nested_shape(value, depth: int = 0) -> tuple[int, ...]:
    """The shape of nested lists (checked rectangular by as_array afterwards); () for a number."""
    if not isinstance(value, list) or depth > 4:
        return ()
    if not value:
        return (0,)
    return (len(value), *_nested_shape(value[0], depth + 1))


# SmartGuitarAmp / SmartGuitarPedal WaveNet JSON (WaveNetVA's format, written by PedalNetRT's export.py)
SMART_ACTIVATIONS = {"gated": ("Tanh", True), "tanh": ("Tanh", False), "relu": ("ReLU", False),
                     "softsign": ("Softsign", False)}  # act(0) = 0 each: the carry channel stays silent
MAX_SMART_CHANNELS = 64
MAX_SMART_LAYERS = 64
MAX_SMART_KERNEL = 16
MAX_SMART_DILATION = 4096


def read_smartguitar_wavenet(doc: dict, source: str) -> Imported:
    """A SmartGuitarAmp/SmartGuitarPedal WaveNet as edgeamp's (NAM A1) WaveNet, exactly.

    The players' engine (``Convolution.cpp``, ``ConvolutionLayer.cpp``, ``ConvolutionStack.cpp``,
    ``WaveNet.cpp`` in GuitarML/SmartGuitarAmp; PedalNetRT's ``model.py`` is the same network) runs,
    with ``C`` residual channels::

        x0  = W_in x + b_in                                     (input layer, 1 -> C)
        z_i = conv_{d_i}(x_i) + b_conv_i ;  p_i = tanh(z_i[:C]) * sigmoid(z_i[C:])   ("gated")
        x_{i+1} = x_i + W_out_i p_i + b_out_i
        y   = W_mix [p_0; p_1; ...] + b_mix                    (every layer's p, concatenated)

    Kernels are TensorFlow-ordered flat lists, ``(kernel, in, out)``; tap ``k`` multiplies the input
    ``d * (K - 1 - k)`` samples back, as NAM's. Each layer's ``p_i`` reaches the output through its
    own slice of ``W_mix``, where NAM's layer array sums ``p`` and applies one head, so each layer
    becomes a layer array of its own with ``C + 1`` channels: channel ``C`` carries the running sum
    ``sum_k W_mix_k p_k`` through the arrays' heads (its weights are zero elsewhere, so its ``p`` is 0:
    the activations are those with ``act(0) = 0``). ``b_in`` is folded into each layer's conv bias
    (``sum_k K_k b_in``) and the start state holds ``-b_in``, which is the players' zero history after
    a load. ``level_adjust`` (a gain SmartGuitarAmp applies after its EQ and master volume, and
    SmartGuitarPedal ignores) is kept in the metadata, not in the model. No sample rate is stated:
    the players run at the host's rate; the tone library's captures are 44.1 kHz.
    """
    for key in ("input_channels", "output_channels"):
        if positive_int(doc.get(key), key, source, 1) != 1:
            raise ModelFormatError(f"{source}: {key} must be 1")
    c = positive_int(doc.get("residual_channels"), "residual_channels", source, MAX_SMART_CHANNELS)
    k = positive_int(doc.get("filter_width"), "filter_width", source, MAX_SMART_KERNEL)
    act = doc.get("activation")
    if act not in SMART_ACTIVATIONS:
        raise ModelFormatError(f"{source}: activation {str(act)[:40]!r}: edgeamp imports "
                               f"{', '.join(SMART_ACTIVATIONS)} (softgated, sigmoid and linear have no exact form)")
    activation, gated = SMART_ACTIVATIONS[act]
    dil = doc.get("dilations")
    if not isinstance(dil, list) or not 1 <= len(dil) <= MAX_SMART_LAYERS:
        raise ModelFormatError(f"{source}: dilations must be a list of 1 to {MAX_SMART_LAYERS} whole numbers")
    dilations = [positive_int(d, "dilation", source, MAX_SMART_DILATION) for d in dil]
    n = len(dilations)
    mid = 2 * c if gated else c
    sizes = {(-1, "W"): c, (-1, "b"): c, (n, "W"): c * n, (n, "b"): 1}
    for i in range(n):
        sizes.update({(i, "W_conv"): k * c * mid, (i, "b_conv"): mid, (i, "W_out"): c * c, (i, "b_out"): c})
    flat = _smart_variables(doc.get("variables"), sizes, source)
    w_in, b_in = flat[(-1, "W")], flat[(-1, "b")].astype(np.float64)
    w_mix, b_mix = flat[(n, "W")], flat[(n, "b")]
    e = c + 1  # the carry channel is the last
    arrays, weights = [], {}
    for i, d in enumerate(dilations):
        last = i == n - 1
        arrays.append(LayerArray(input_size=1 if i == 0 else e, condition_size=1, head_size=1 if last else e,
                                 channels=e, kernel_size=k, dilations=(d,), activation=activation, gated=gated,
                                 head_bias=last))
        p, q = f"wavenet/a{i}", f"wavenet/a{i}/l0"
        rechannel = np.zeros((e, 1 if i == 0 else e))
        if i == 0:
            rechannel[:c, 0] = w_in
        else:
            rechannel[:, :] = np.eye(e)
        conv = flat[(i, "W_conv")].astype(np.float64).reshape(k, c, mid).transpose(2, 1, 0)  # (mid, C, K)
        conv_w = np.zeros((2 * e if gated else e, e, k))
        conv_b = np.zeros(conv_w.shape[0])
        rows = [*range(c), *range(e, e + c)] if gated else list(range(c))  # each half skips its carry row
        conv_w[rows, :c, :] = conv
        conv_b[rows] = flat[(i, "b_conv")] + conv.sum(axis=2) @ b_in  # the input layer's bias, folded
        out_w = np.zeros((e, e))
        out_w[:c, :c] = flat[(i, "W_out")].astype(np.float64).reshape(c, c).T
        out_b = np.zeros(e)
        out_b[:c] = flat[(i, "b_out")]
        head_w = np.zeros((1 if last else e, e))
        head_w[-1, :c] = w_mix[i * c : (i + 1) * c]  # this layer's slice, added to the carried sum
        head_w[-1, c] = 1.0
        history = d * (k - 1)
        weights.update({f"{p}/rechannel": rechannel, f"{q}/conv_w": conv_w, f"{q}/conv_b": conv_b,
                        f"{q}/mixer": np.zeros((conv_w.shape[0], 1)), f"{q}/out_w": out_w, f"{q}/out_b": out_b,
                        f"{p}/head_w": head_w})
        if history:
            h0 = np.zeros((e, history))
            h0[:c] = -b_in[:, None]  # the players' history after a load is x = 0, i.e. -b_in without the bias
            weights[f"{q}/h0"] = h0
        if last:
            weights[f"{p}/head_b"] = np.asarray(b_mix, np.float64).reshape(1)
    weights["wavenet/head_scale"] = np.ones(1)
    try:
        arch = WaveNetArchitecture(tuple(arrays))
        model = WaveNetWeights.from_arrays(arch, {name: v.astype(np.float32) for name, v in weights.items()})
    except ConfigError as exc:
        raise ModelFormatError(f"{source}: {exc}") from exc
    meta = {"model": "SmartGuitarAmp WaveNet", "activation": act, "residual_channels": c, "filter_width": k,
            "dilations": dilations}
    if doc.get("level_adjust") is not None:
        meta["level_adjust"] = doc["level_adjust"] if isinstance(doc["level_adjust"], (int, float)) else \
            str(doc["level_adjust"])[:40]
    return Imported("guitarml-conv", arch, model, None, meta)


def _smart_variables(variables, sizes: dict, source: str) -> dict:
    """The ``variables`` list (``{"layer_idx", "name", "data"}``, data as numbers or strings of them, as
    PedalNetRT writes) by (layer, name), each exactly its size, every one present once."""
    if not isinstance(variables, list):
        raise ModelFormatError(f"{source}: 'variables' must be a list of {{layer_idx, name, data}}")
    if len(variables) != len(sizes):
        raise ModelFormatError(f"{source}: {len(variables)} variables; this WaveNet has {len(sizes)} "
                               "(W and b of the input and output layers, W_conv, b_conv, W_out, b_out per layer)")
    out = {}
    for v in variables:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or isinstance(v.get("layer_idx"), bool) \
                or not isinstance(v.get("layer_idx"), int):
            raise ModelFormatError(f"{source}: each variable needs an integer layer_idx, a name and data")
        layer, name = v["layer_idx"], v["name"]
        if (layer, "W_conv") in sizes:  # a hidden layer: the players read W/b as W_conv/b_conv too
            name = {"W": "W_conv", "b": "b_conv"}.get(name, name)
        key = (layer, name)
        if key not in sizes:
            raise ModelFormatError(f"{source}: unexpected variable {key[1][:20]!r} of layer {key[0]}")
        if key in out:
            raise ModelFormatError(f"{source}: variable {key[1]!r} of layer {key[0]} appears twice")
        data = v.get("data")
        if not isinstance(data, list) or len(data) != sizes[key]:
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise ModelFormatError(f"{source}: variable {key[1]!r} of layer {key[0]} has {got} values; "
                                   f"this WaveNet needs {sizes[key]}")
        try:
            values = [float(x) if isinstance(x, str) and len(x) < 64 else x for x in data]
        except ValueError:
            raise ModelFormatError(f"{source}: variable {key[1]!r} of layer {key[0]} holds a value that is not a "
                                   "number") from None
        out[key] = as_array(values, (sizes[key],), f"{key[1]} of layer {key[0]}", source)
    return out
