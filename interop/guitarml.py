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

from edgeamp.core.errors import ModelFormatError
from edgeamp.core.model import Architecture, LayerWeights, ModelWeights

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


# GuitarML's convolutional formats: recognised, so that the refusal names them
def detect_convolutional(doc: object) -> bool:
    return isinstance(doc, dict) and (
        {"residual_channels", "dilations", "variables"} <= set(doc)  # SmartGuitarAmp / SmartGuitarPedal WaveNet
        or {"conv1d", "conv1d_1", "dense"} <= set(doc))  # SmartAmpPro (Conv1D front end + LSTM)


def read_convolutional(doc: dict, source: str, knob_names=None) -> Imported:
    kind = ("SmartGuitarAmp/SmartGuitarPedal WaveNet" if "residual_channels" in doc
            else "SmartAmpPro Conv1D + LSTM")
    raise ModelFormatError(f"{source}: a GuitarML {kind} model; edgeamp does not import this format yet (NAM "
                           "WaveNet .nam, NAM LSTM, AIDA-X/RTNeural and GuitarML LSTM/GRU JSON import)")
