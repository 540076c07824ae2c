"""RTNeural JSON (what AIDA-X loads as ``.aidax``/``.json``, and GuitarML's Proteus/NeuralPi and
Guitarix too), both ways.

Layout (RTNeural's ``model_loader.h`` ``parseJson`` and its Python writer ``save_model``, which
AIDA-X ships as ``model_utils.py`` and feeds from ``modelToKeras.py``): ``in_shape``
``[null, null, channels]`` (channel 0 the audio, the others an AIDA-X model's parameters, fed
as they are, 0..1), optional ``in_skip`` (1: AIDA-X adds the input to the output), ``layers``:
each ``{"type", "activation", "shape": [null, null, units], "weights"}`` with Keras' weight
lists: ``lstm`` ``[kernel (in, 4U), recurrent (U, 4U), bias (4U,)]`` (gates i, f, c, o),
``gru`` ``[kernel (in, 3U), recurrent (U, 3U), bias (2, 3U)]`` (gates z, r, h, ``reset_after``),
``dense`` ``[kernel (in, out), bias (out,)]``. RTNeural ignores an LSTM/GRU layer's
``activation`` (its cells are tanh/sigmoid) and applies a dense layer's. Every layer starts from
zero state.

What AIDA-X adds around the model (``aidadsp-plugin.cpp``, ``loadModelFromStream`` and
``applyModel``): top-level ``in_gain``/``out_gain`` in dB (absent: 0 dB); the input is scaled by
``in_gain`` before the model (and before the skip adds it); ``out_gain`` scales the model's output
only when there is no ``in_skip`` (with a skip AIDA-X ignores it, and so does edgeamp). Its files
state ``metadata.samplerate`` as a string (``"48000"``); older ones a number, or a top-level
``samplerate``. ``input_batch``/``output_batch``: 2048 samples of the model's own test, run from
zero state with both gains at 1 and every parameter at 0 (AIDA-X checks it within 1e-5 on load).
"""

from __future__ import annotations

import logging

import numpy as np

from edgeamp.core.bundle import Bundle
from edgeamp.core.errors import ModelFormatError
from edgeamp.core.model import Architecture, Dense, DenseWeights, LayerWeights, ModelWeights

from .common import (
    MAX_INPUTS,
    MAX_LAYERS,
    MAX_UNITS,
    Imported,
    as_array,
    fold_gains,
    fold_knob_ranges,
    gain_from_db,
    gain_to_db,
    knobs_for,
    positive_int,
    sample_rate_from,
)

# RTNeural's activation names (model_loader.h createActivation); "" is none
ACTIVATIONS = ("", "tanh", "relu", "sigmoid", "softmax", "elu")
RECURRENT = ("lstm", "gru")
OTHER_TYPES = ("conv1d", "conv2d", "batchnorm2d")  # read by RTNeural, not (yet) by edgeamp
AIDAX_SAMPLE_RATE = 48000
MAX_CHECK_SAMPLES = 1 << 16


# what AIDA-X's player compiles in (AIDA-X src/model_variant.hpp, the same list in aidadsp-lv2's
# rt-neural-generic): one lstm or gru layer of these sizes, then dense(units -> 1), 1 to 3 inputs.
# Any other file is refused by the player ("Unable to identify a known model architecture!").
AIDAX_PLAYER_UNITS = (8, 12, 16, 20, 24, 32, 40, 64, 80)
AIDAX_PLAYER_INPUTS = (1, 2, 3)
log = logging.getLogger(__name__)


def aidax_player_problem(arch: Architecture) -> str | None:
    """Why AIDA-X's player would refuse this architecture (None: it runs it)."""
    if len(arch.units) != 1:
        return (f"AIDA-X's player runs one recurrent layer; this model has {len(arch.units)} "
                f"({'-'.join(map(str, arch.units))})")
    if not arch.head or arch.front or arch.hidden:
        return ("AIDA-X's player runs one recurrent layer followed by one dense output layer; this model is "
                f"{arch.describe()}")
    if arch.input_channels not in AIDAX_PLAYER_INPUTS:
        return f"AIDA-X's player takes audio and at most 2 parameters; this model has {len(arch.knobs)} knobs"
    units = arch.units[0]
    if units not in AIDAX_PLAYER_UNITS:
        near = min(AIDAX_PLAYER_UNITS, key=lambda u: (abs(u - units), u))
        return (f"AIDA-X's player compiles {arch.cell.upper()} sizes {', '.join(map(str, AIDAX_PLAYER_UNITS))}; "
                f"this model's is {units} (nearest: {near}, retrain at that size)")
    return None


def detect(doc: object) -> bool:
    return isinstance(doc, dict) and "layers" in doc and "in_shape" in doc


def _units(layer: dict, index: int, source: str) -> int:
    shape = layer.get("shape")
    if not isinstance(shape, list) or not shape:
        raise ModelFormatError(f"{source}: layer {index} has no 'shape' list (expected [null, null, units])")
    return positive_int(shape[-1], f"layer {index} shape[-1] (units)", source)


def read_rtneural(doc: object, source: str, knob_names: list[str] | None = None) -> Imported:
    """An :class:`Imported` from a parsed RTNeural JSON document (``knob_names`` for a model with
    parameter inputs); every problem raises ModelFormatError naming the layer."""
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{source}: an RTNeural model is a JSON object, this one holds {type(doc).__name__}")
    in_shape = doc.get("in_shape")
    if not isinstance(in_shape, list) or not in_shape:
        raise ModelFormatError(f"{source}: 'in_shape' must be a list like [null, null, 1]")
    channels = positive_int(in_shape[-1], "in_shape[-1] (input channels)", source)
    if channels > MAX_INPUTS:
        raise ModelFormatError(f"{source}: in_shape declares {channels} input channels; RTNeural models take audio "
                               f"and a few parameters (at most {MAX_INPUTS} here); refused before reading weights")
    skip = doc.get("in_skip", 0)
    if skip not in (0, 1) or isinstance(skip, bool):
        raise ModelFormatError(f"{source}: in_skip {skip!r}: edgeamp adds the audio channel only (in_skip 0 or 1)")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ModelFormatError(f"{source}: 'layers' must be a non-empty list")
    if len(layers) > MAX_LAYERS:
        raise ModelFormatError(f"{source}: {len(layers)} layers; edgeamp reads at most {MAX_LAYERS}")
    cells, parsed = set(), []
    front: list[list] = []  # dense layers before the stack: [kernel, bias, activation, alpha]
    after: list[list] = []  # dense layers after the last recurrent layer so far
    n_prev = channels
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise ModelFormatError(f"{source}: layer {index} is not an object")
        kind = layer.get("type")
        activation = layer.get("activation", "")
        if activation not in ACTIVATIONS:
            raise ModelFormatError(f"{source}: layer {index} ({kind}) has activation {activation!r}, which RTNeural "
                                   f"does not know (it knows {', '.join(repr(a) for a in ACTIVATIONS)})")
        weights = layer.get("weights")
        if not isinstance(weights, list):
            raise ModelFormatError(f"{source}: layer {index} ({kind}) has no 'weights' list")
        dense_kinds = ("dense", "time-distributed-dense")
        units = _units(layer, index, source) if kind in (*RECURRENT, *dense_kinds) else n_prev
        if units > MAX_UNITS:
            raise ModelFormatError(f"{source}: layer {index} ({kind}) declares {units} units (at most {MAX_UNITS} "
                                   "here); refused before reading weights")
        where = f"layer {index} ({kind}, {units} units)"
        stage = after if parsed else front
        if kind in RECURRENT:
            cells.add(kind)
            gates = 4 if kind == "lstm" else 3
            if len(weights) != 3:
                raise ModelFormatError(f"{source}: {where} has {len(weights)} weight arrays, expected 3 "
                                       "(kernel, recurrent kernel, bias)")
            bias_shape = (gates * units,) if kind == "lstm" else (2, gates * units)
            kernel = as_array(weights[0], (n_prev, gates * units), f"{where} kernel", source)
            bias = as_array(weights[2], bias_shape, f"{where} bias", source)
            if after:  # dense layers between recurrent layers: exact only when linear (folded into the kernel)
                if any(d[2] or d[0].ndim == 3 for d in after):
                    raise ModelFormatError(f"{source}: {where} follows a dense layer with an activation (or a conv1d); "
                                           "edgeamp runs those before the first and after the last recurrent layer")
                for d in reversed(after):
                    bias = bias + (d[1] @ kernel if bias.ndim == 1 else np.stack([d[1] @ kernel, np.zeros_like(
                        bias[1])]))
                    kernel = d[0] @ kernel
                after.clear()
                kernel, bias = kernel.astype(np.float32), bias.astype(np.float32)
            parsed.append(LayerWeights(kernel, as_array(weights[1], (units, gates * units),
                                                        f"{where} recurrent kernel", source), bias))
        elif kind in dense_kinds:
            if len(weights) not in (1, 2):
                raise ModelFormatError(f"{source}: {where} has {len(weights)} weight arrays, expected 2 (kernel, "
                                       "bias) or 1 (kernel, no bias)")
            if activation == "softmax" and units == 1:
                raise ModelFormatError(f"{source}: {where}: a softmax over one unit is constant")
            bias = as_array(weights[1], (units,), f"{where} bias", source) if len(weights) == 2 else (
                np.zeros(units, np.float32))
            stage.append([as_array(weights[0], (n_prev, units), f"{where} kernel", source), bias, activation, None, 1])
        elif kind == "conv1d":
            size, dilation, groups = (layer.get(key) for key in ("kernel_size", "dilation", "groups"))
            size = size[-1] if isinstance(size, list) and size else size
            dilation = dilation[-1] if isinstance(dilation, list) and dilation else dilation
            size = positive_int(size, f"layer {index} kernel_size", source)
            dilation = positive_int(dilation, f"layer {index} dilation", source)
            if groups not in (None, 1):
                raise ModelFormatError(f"{source}: layer {index} (conv1d) has groups {str(groups)[:20]}; edgeamp runs "
                                       "conv1d layers with groups 1")
            if (size - 1) * dilation > 1 << 16:
                raise ModelFormatError(f"{source}: layer {index} (conv1d) keeps {(size - 1) * dilation} samples of "
                                       "history (at most 65536 here)")
            if len(weights) != 2:
                raise ModelFormatError(f"{source}: layer {index} (conv1d) has {len(weights)} weight arrays, expected 2 "
                                       "(kernel, bias)")
            units = _units(layer, index, source)
            where = f"layer {index} (conv1d, {units} filters)"
            stage.append([as_array(weights[0], (size, n_prev, units), f"{where} kernel", source),
                          as_array(weights[1], (units,), f"{where} bias", source), activation, None, dilation])
        elif kind in ("activation", "prelu"):
            alpha = None
            if kind == "prelu":
                if len(weights) != 1:
                    raise ModelFormatError(f"{source}: {where} has {len(weights)} weight arrays, expected 1 (alpha)")
                try:  # RTNeural reads weights[0][0]: Keras' alpha, (1, units) or (units,)
                    flat = np.asarray(weights[0], dtype=np.float64).reshape(-1).tolist()
                except (TypeError, ValueError) as exc:
                    raise ModelFormatError(f"{source}: {where} alpha is not an array of numbers ({exc})") from exc
                alpha = as_array(flat, (n_prev,), f"{where} alpha", source)
            act = "prelu" if kind == "prelu" else activation
            if not act:
                continue  # an activation layer of none
            if not stage or stage[-1][2]:  # on a recurrent layer's output, or after another activation
                stage.append([np.eye(n_prev, dtype=np.float32), np.zeros(n_prev, np.float32), "", None, 1])
            stage[-1][2], stage[-1][3] = act, alpha
        elif kind == "batchnorm":
            eps = layer.get("epsilon")
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
                raise ModelFormatError(f"{source}: {where} needs an 'epsilon' number, got {str(eps)[:40]!r}")
            if len(weights) not in (2, 4):
                raise ModelFormatError(f"{source}: {where} has {len(weights)} weight arrays, expected 4 (gamma, beta, "
                                       "mean, variance) or 2 (mean, variance)")
            arrays = [as_array(w, (n_prev,), f"{where} weights[{i}]", source).astype(np.float64)
                      for i, w in enumerate(weights)]
            gamma, beta = (arrays[0], arrays[1]) if len(arrays) == 4 else (np.ones(n_prev), np.zeros(n_prev))
            mean, var = arrays[-2], arrays[-1]
            if np.any(var + eps <= 0):
                raise ModelFormatError(f"{source}: {where} has a variance + epsilon that is not positive")
            scale = gamma / np.sqrt(var + eps)
            shift = beta - mean * scale
            if stage and not stage[-1][2]:  # after a linear dense or conv1d layer: folded into it, exactly
                stage[-1][0] = (stage[-1][0].astype(np.float64) * scale).astype(np.float32)
                stage[-1][1] = (stage[-1][1].astype(np.float64) * scale + shift).astype(np.float32)
            else:  # a per-unit affine map of its own: a diagonal dense layer
                stage.append([np.diag(scale).astype(np.float32), shift.astype(np.float32), "", None, 1])
        elif kind in OTHER_TYPES:
            raise ModelFormatError(f"{source}: layer {index} is {kind!r}; edgeamp runs RTNeural's lstm, gru, dense, "
                                   "activation, prelu and batchnorm layers")
        else:
            raise ModelFormatError(f"{source}: layer {index} has unknown type {str(kind)[:40]!r}")
        n_prev = units
    if not parsed:
        raise ModelFormatError(f"{source}: no lstm or gru layer; edgeamp deploys LSTM/GRU models")
    if len(cells) > 1:
        raise ModelFormatError(f"{source}: the stack mixes lstm and gru layers; edgeamp deploys one cell type per "
                               "model")
    head = None
    if after:
        last = after[-1]
        if last[0].shape[-1] != 1:
            raise ModelFormatError(f"{source}: the last layer has {last[0].shape[-1]} units: the model has no single "
                                   "audio output")
        if last[0].ndim == 3:
            raise ModelFormatError(f"{source}: the output layer is a conv1d; edgeamp's output layer is a linear dense")
        if last[2]:
            raise ModelFormatError(f"{source}: the output layer (dense, 1 unit) has activation {last[2]!r}; edgeamp's "
                                   "output layer is linear")
        head = (last[0], last[1])
        after.pop()
    elif n_prev != 1:
        raise ModelFormatError(f"{source}: the last layer has {n_prev} units and no dense layer follows: the model "
                               "has no single audio output")
    cell = cells.pop()
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    knobs = knobs_for(channels - 1, knob_names, meta.get("parameters"), source) if channels > 1 else ()
    arch = Architecture(tuple(layer.units for layer in parsed), head=head is not None, skip=bool(skip),
                        knobs=knobs, cell=cell, front=tuple(_spec(d) for d in front),
                        hidden=tuple(_spec(d) for d in after))
    weights = ModelWeights(tuple(parsed), *(head or (None, None)), cell=cell,
                           front=tuple(DenseWeights(*d) for d in front), hidden=tuple(DenseWeights(*d) for d in after))
    rate = None
    for where, holder in (("metadata", meta), ("", doc)):
        for key in ("samplerate", "sample_rate"):
            if holder.get(key) is not None and rate is None:
                rate = sample_rate_from(holder[key], source, f"{where + '.' if where else ''}{key}")
    input_gain = gain_from_db(doc.get("in_gain"), "in_gain", source)
    output_gain = 1.0 if skip else gain_from_db(doc.get("out_gain"), "out_gain", source)
    return Imported("rtneural", arch, weights, rate, dict(meta), input_gain=input_gain, output_gain=output_gain,
                    check=_check_pair(doc, channels, source))


def _spec(d: list) -> Dense:
    """The Dense (or conv1d) description of a parsed ``[kernel, bias, activation, alpha, dilation]``."""
    kernel = d[0]
    return Dense(int(kernel.shape[-1]), d[2], int(kernel.shape[0]) if kernel.ndim == 3 else 1, int(d[4]))


def _check_pair(doc: dict, channels: int, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The file's ``input_batch``/``output_batch`` as model input ``(T, channels)`` (parameters at 0,
    as AIDA-X's own check runs) and output ``(T,)``; None when the file has none."""
    x, y = doc.get("input_batch"), doc.get("output_batch")
    if x is None and y is None:
        return None
    if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x:
        raise ModelFormatError(f"{source}: input_batch and output_batch must be two lists of the same length")
    if len(x) > MAX_CHECK_SAMPLES:
        raise ModelFormatError(f"{source}: input_batch holds {len(x)} samples (at most {MAX_CHECK_SAMPLES} here)")
    audio = as_array(x, (len(x),), "input_batch", source)
    out = as_array(y, (len(y),), "output_batch", source)
    model_in = np.zeros((len(x), channels), np.float32)
    model_in[:, 0] = audio
    return model_in, out


def _dense_layers(d: DenseWeights) -> list[dict]:
    """A dense layer as RTNeural JSON: one ``dense`` with its activation, or ``dense`` + ``prelu``."""
    units = int(d.kernel.shape[1])
    units = int(d.kernel.shape[-1])
    out = [{"type": "dense", "activation": "" if d.activation == "prelu" else d.activation,
            "shape": [None, None, units], "weights": [d.kernel.tolist(), d.bias.tolist()]}]
    if d.kernel.ndim == 3:  # a conv1d: Keras' kernel layout, as RTNeural's writer stores it
        out[0].update(type="conv1d", kernel_size=[int(d.kernel.shape[0])], dilation=[int(d.dilation)])
    if d.activation == "prelu":
        out.append({"type": "prelu", "activation": "", "shape": [None, None, units],
                    "weights": [[np.asarray(d.alpha).tolist()]]})
    return out


def to_rtneural(bundle: Bundle, *, strict: bool = False) -> dict:
    """The RTNeural JSON (AIDA-X ``.aidax``) of a bundle; refuses, naming the feature, what AIDA-X
    cannot run. Knob ranges are rewritten exactly into AIDA-X's 0..1 parameters. A model RTNeural
    runs but AIDA-X's player does not compile in (:func:`aidax_player_problem`) is written with a
    warning, or refused with ``strict``."""
    m = bundle.manifest
    arch = m.architecture
    fmt = "AIDA-X/RTNeural JSON"
    if arch.family != "recurrent":
        raise ModelFormatError(f"{fmt}: this is a {arch.describe()}; edgeamp writes recurrent models (LSTM/GRU) as "
                               "RTNeural JSON (export it with --format nam)")
    problem = aidax_player_problem(arch)
    if problem and strict:
        raise ModelFormatError(f"{fmt}: {problem} (--strict)")
    if problem:
        log.warning("%s: %s; RTNeural itself and other players load the file", fmt, problem)
    if m.sample_rate != AIDAX_SAMPLE_RATE:
        raise ModelFormatError(f"{fmt}: AIDA-X runs models at {AIDAX_SAMPLE_RATE} Hz; this model is "
                               f"{m.sample_rate} Hz (the file has no sample-rate field to say otherwise)")
    if arch.fir_taps:
        raise ModelFormatError(f"{fmt}: RTNeural JSON has no layer AIDA-X would run as this model's "
                               f"{arch.fir_taps}-tap FIR stage")
    if m.streaming.mode != "stateful":
        raise ModelFormatError(f"{fmt}: this is a window-mode model (each hop restarts from zero state over a "
                               f"{m.streaming.window_samples}-sample window); RTNeural runs one continuous state")
    if arch.initial_state and any(
            float(abs(layer.initial(kind)).max()) > 0 for layer in bundle.weights.layers for kind in arch.state_kinds):
        raise ModelFormatError(f"{fmt}: RTNeural starts every layer from zero state; this model stores an initial "
                               "state (an imported NAM LSTM does)")
    # AIDA-X applies in_gain (dB) before the model and the skip, and out_gain after the model when there
    # is no skip: where the bundle's gains fit that, they are written as levels; else folded into weights
    in_gain, out_gain, levels = m.input_gain, m.output_gain, {}
    if in_gain > 0 and (out_gain > 0 and not arch.skip or out_gain == 1.0):
        levels = {k: round(gain_to_db(g), 9) for k, g in (("in_gain", in_gain), ("out_gain", out_gain)) if g != 1.0}
        in_gain = out_gain = 1.0
    weights = fold_gains(arch, bundle.weights, in_gain, out_gain, fmt)
    arch, weights = fold_knob_ranges(arch, weights, 0.0, 1.0)
    layers = [entry for d in weights.front for entry in _dense_layers(d)]
    for layer in weights.layers:
        layers.append({"type": arch.cell, "activation": "tanh", "shape": [None, None, layer.units],
                       "weights": [layer.kernel.tolist(), layer.recurrent_kernel.tolist(), layer.bias.tolist()]})
    layers += [entry for d in weights.hidden for entry in _dense_layers(d)]
    if arch.head:
        layers.append({"type": "dense", "activation": "", "shape": [None, None, 1],
                       "weights": [weights.head_kernel.tolist(), weights.head_bias.tolist()]})
    doc = {"in_shape": [None, None, arch.input_channels], "layers": layers}
    if arch.skip:
        doc["in_skip"] = 1
    doc.update(levels)
    doc["metadata"] = {"samplerate": m.sample_rate, "exported_by": "edgeamp",
                       "parameters": [{"name": k.name, "minimum": k.minimum, "maximum": k.maximum,
                                       "default": k.default} for k in arch.knobs]}
    return doc
