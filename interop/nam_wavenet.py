"""NAM ``.nam`` WaveNet (A1), both ways, and NAM's older model directory (``config.json`` +
``weights.npy``).

Config (NAM 0.5.x ``nam/models/wavenet.py`` ``export_config``): ``{"layers": [{"input_size",
"condition_size", "head_size", "channels", "kernel_size", "dilations", "activation", "gated",
"head_bias"}, ...], "head": null, "head_scale"}``. Newer files (0.6/0.7) state a layer array's head
as ``"head": {"out_channels", "kernel_size", "bias"}`` and may add ``kernel_sizes``, per-layer
``activation`` lists and A2 options (bottleneck, layer1x1, head1x1, groups, FiLM, gating modes,
condition_dsp): the A1-equivalent values are read, anything else is refused naming it.

Weights, one flat list in NAM's export order: per layer array the rechannel ``(C, in, 1)`` (no
bias); per layer the dilated conv ``(mid, C, K)`` and its bias ``(mid,)``, the input mixer
``(mid, cond, 1)`` (no bias), the 1x1 ``(C, C, 1)`` and its bias ``(C,)``; the head rechannel
``(head, C, 1)`` and its bias ``(head,)`` when ``head_bias``; after every array, the head scale (one
number: NAM reads it from the weights, not the config). PyTorch tensors flattened row-major. The
bundle stores the prewarmed start state NAM Core runs from (receptive field of silence).
"""

from __future__ import annotations

import numpy as np

from edgeamp.core.errors import ConfigError, ModelFormatError
from edgeamp.core.wavenet import ACTIVATIONS, LayerArray, WaveNetArchitecture, WaveNetWeights, prewarmed_state

from .common import as_array

MAX_WEIGHTS = 4_000_000  # NAM's largest A1 (standard is 13 802; "custom" sizes a few 10^4); a bound
MAX_ARRAYS = 64  # NAM writes 1-3; a SmartGuitarAmp WaveNet is one array per layer (up to 18 in the wild)
MAX_LAYERS = 64
A1_KEYS = {"input_size", "condition_size", "head_size", "channels", "kernel_size", "dilations", "activation", "gated",
           "head_bias"}
# newer keys whose A1-equivalent values are accepted (anything else in them is refused)
NEWER_KEYS = {"head", "kernel_sizes", "bottleneck", "head1x1", "layer1x1", "groups_input", "groups_input_mixin",
              "gating_mode", "secondary_activation", "slimmable", "conv_pre_film", "conv_post_film",
              "input_mixin_pre_film", "input_mixin_post_film", "activation_pre_film", "activation_post_film",
              "layer1x1_post_film", "head1x1_post_film"}


def _int(value, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelFormatError(f"{source}: {what} must be a positive whole number, got {str(value)[:40]!r}")
    return value


def _one(values, what: str, source: str):
    """A per-layer list that must hold one value for every layer (edgeamp's layer arrays share it)."""
    if isinstance(values, list):
        if not values:
            raise ModelFormatError(f"{source}: {what} is an empty list")
        if any(v != values[0] for v in values):
            raise ModelFormatError(f"{source}: {what} differs between layers ({values[:6]}); edgeamp's layer arrays "
                                   "share one value")
        return values[0]
    return values


def _activation(value, where: str, source: str) -> str:
    if isinstance(value, dict):  # an A2 activation object: plain ones only
        extra = set(value) - {"type", "name"}
        if extra:
            raise ModelFormatError(f"{source}: {where} activation {value} has parameters {sorted(extra)}; edgeamp runs "
                                   f"plain activations ({', '.join(ACTIVATIONS)})")
        value = value.get("type", value.get("name"))
    if value not in ACTIVATIONS:
        raise ModelFormatError(f"{source}: {where} activation {str(value)[:40]!r} is not one edgeamp runs "
                               f"({', '.join(ACTIVATIONS)})")
    return value


def _inactive(cfg: dict, key: str, where: str, source: str, ok) -> None:
    if key in cfg and not ok(cfg[key]):
        raise ModelFormatError(f"{source}: {where} uses {key} = {str(cfg[key])[:80]}; edgeamp imports NAM's A1 WaveNet "
                               "(plain layer arrays): this A2 feature is not supported")


def _layer_array(cfg: object, index: int, source: str) -> LayerArray:
    where = f"config.layers[{index}]"
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{source}: {where} is not an object")
    unknown = set(cfg) - A1_KEYS - NEWER_KEYS
    if unknown:
        raise ModelFormatError(f"{source}: {where} has keys edgeamp does not know: {sorted(unknown)[:6]}")
    head = cfg.get("head")
    if isinstance(head, dict):
        if head.get("kernel_size", 1) != 1:
            raise ModelFormatError(f"{source}: {where} head rechannel has kernel_size {head.get('kernel_size')}; "
                                   "edgeamp runs NAM's 1x1 head rechannel (A1)")
        head_size, head_bias = head.get("out_channels"), head.get("bias", True)
    else:
        head_size, head_bias = cfg.get("head_size"), cfg.get("head_bias", True)
    channels = _int(cfg.get("channels"), f"{where}.channels", source)
    for key, ok in (("bottleneck", lambda v: v == channels), ("groups_input", lambda v: v == 1),
                    ("groups_input_mixin", lambda v: v == 1), ("slimmable", lambda v: not v or not v.get("method")),
                    ("head1x1", lambda v: not isinstance(v, dict) or not v.get("active")),
                    ("layer1x1", lambda v: isinstance(v, dict) and v.get("active", True) and v.get("groups", 1) == 1),
                    ("secondary_activation", lambda v: all(s in (None, "Sigmoid", {"type": "Sigmoid"})
                                                           for s in (v if isinstance(v, list) else [v])))):
        _inactive(cfg, key, where, source, ok)
    for key in NEWER_KEYS:
        if key.endswith("_film"):
            _inactive(cfg, key, where, source, lambda v: not isinstance(v, dict) or not v.get("active"))
    gated = cfg.get("gated")
    if "gating_mode" in cfg:
        mode = _one(cfg["gating_mode"], f"{where}.gating_mode", source)
        if mode not in ("none", "gated"):
            raise ModelFormatError(f"{source}: {where}.gating_mode {mode!r}: edgeamp runs 'none' and 'gated' (A1)")
        gated = mode == "gated"
    if not isinstance(gated, bool):
        raise ModelFormatError(f"{source}: {where}.gated must be true or false, got {str(gated)[:40]!r}")
    if not isinstance(head_bias, bool):
        raise ModelFormatError(f"{source}: {where} head bias must be true or false, got {str(head_bias)[:40]!r}")
    kernel = cfg.get("kernel_size", cfg.get("kernel_sizes"))
    kernel = _int(_one(kernel, f"{where}.kernel_sizes", source), f"{where}.kernel_size", source)
    dilations = cfg.get("dilations")
    if not isinstance(dilations, list) or not dilations or len(dilations) > MAX_LAYERS:
        raise ModelFormatError(f"{source}: {where}.dilations must be a list of 1 to {MAX_LAYERS} whole numbers")
    dilations = tuple(_int(d, f"{where}.dilations", source) for d in dilations)
    activation = _activation(_one(cfg.get("activation"), f"{where}.activation", source), where, source)
    try:
        return LayerArray(_int(cfg.get("input_size"), f"{where}.input_size", source),
                          _int(cfg.get("condition_size"), f"{where}.condition_size", source),
                          _int(head_size, f"{where} head size", source), channels, kernel, dilations, activation,
                          gated, head_bias)
    except ConfigError as exc:
        raise ModelFormatError(f"{source}: {where}: {str(exc).removeprefix('wavenet layer array: ')}") from exc


def weight_layout(arch: WaveNetArchitecture) -> list[tuple[str, tuple[int, ...]]]:
    """``(weights.npz name, PyTorch shape)`` in NAM's export order (the head scale last)."""
    out = []
    for i, a in enumerate(arch.arrays):
        p = f"wavenet/a{i}"
        out.append((f"{p}/rechannel", (a.channels, a.input_size, 1)))
        for j in range(len(a.dilations)):
            q = f"{p}/l{j}"
            out += [(f"{q}/conv_w", (a.mid, a.channels, a.kernel_size)), (f"{q}/conv_b", (a.mid,)),
                    (f"{q}/mixer", (a.mid, a.condition_size, 1)), (f"{q}/out_w", (a.channels, a.channels, 1)),
                    (f"{q}/out_b", (a.channels,))]
        out.append((f"{p}/head_w", (a.head_size, a.channels, 1)))
        if a.head_bias:
            out.append((f"{p}/head_b", (a.head_size,)))
    out.append(("wavenet/head_scale", (1,)))
    return out


def read_wavenet_config(config: object, source: str) -> WaveNetArchitecture:
    if not isinstance(config, dict):
        raise ModelFormatError(f"{source}: 'config' must be an object with 'layers'")
    for key in ("condition_dsp",):
        if config.get(key) is not None:
            raise ModelFormatError(f"{source}: config.{key} is set: a WaveNet conditioned by another network (NAM A2) "
                                   "is not supported")
    if config.get("head") is not None:
        raise ModelFormatError(f"{source}: config.head is set (a post-network head, which NAM Core's A1 does not run "
                               "either); edgeamp imports head: null")
    layers = config.get("layers", config.get("layers_configs"))
    if not isinstance(layers, list) or not layers or len(layers) > MAX_ARRAYS:
        raise ModelFormatError(f"{source}: config.layers must be a list of 1 to {MAX_ARRAYS} layer arrays")
    arrays = tuple(_layer_array(cfg, i, source) for i, cfg in enumerate(layers))
    try:
        return WaveNetArchitecture(arrays)
    except ConfigError as exc:
        raise ModelFormatError(f"{source}: {exc}") from exc


def read_wavenet(doc: dict, source: str) -> tuple[WaveNetArchitecture, WaveNetWeights]:
    """Architecture and weights (with the prewarmed start state) of a parsed WaveNet ``.nam``."""
    arch = read_wavenet_config(doc.get("config"), source)
    flat = doc.get("weights")
    if not isinstance(flat, list) and not isinstance(flat, np.ndarray):
        raise ModelFormatError(f"{source}: 'weights' must be a list of numbers")
    layout = weight_layout(arch)
    expected = sum(int(np.prod(shape)) for _, shape in layout)
    if expected > MAX_WEIGHTS:
        raise ModelFormatError(f"{source}: the config needs {expected} weights (at most {MAX_WEIGHTS} here)")
    if len(flat) != expected:
        raise ModelFormatError(f"{source}: {len(flat)} weights, but this WaveNet ({arch.describe()}) has {expected} "
                               "in NAM's layout")
    w = as_array(flat, (expected,), "weights", source)
    arrays, pos = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape))
        value = w[pos : pos + n].reshape(shape)
        pos += n
        one_by_one = name.endswith(("rechannel", "mixer", "out_w", "head_w"))  # (out, in, 1) -> (out, in)
        arrays[name] = value[..., 0].copy() if one_by_one else value.copy()
    arrays.update(prewarmed_state(arch, arrays))
    return arch, WaveNetWeights.from_arrays(arch, arrays)


def wavenet_config(arch: WaveNetArchitecture, head_scale: float) -> dict:
    """NAM's 0.5.x config of ``arch`` (what every NAM player reads)."""
    layers = [{"input_size": a.input_size, "condition_size": a.condition_size, "head_size": a.head_size,
               "channels": a.channels, "kernel_size": a.kernel_size, "dilations": list(a.dilations),
               "activation": a.activation, "gated": a.gated, "head_bias": a.head_bias} for a in arch.arrays]
    return {"layers": layers, "head": None, "head_scale": float(head_scale)}


def wavenet_weights(arch: WaveNetArchitecture, weights: WaveNetWeights, input_gain: float = 1.0,
                    output_gain: float = 1.0) -> list[float]:
    """The flat weight list in NAM's order; gains fold exactly into the model (the input gain
    scales the first rechannel and every input mixer, the output gain the head scale)."""
    flat = []
    for name, shape in weight_layout(arch):
        value = np.asarray(weights[name], np.float64)
        if input_gain != 1.0 and (name == "wavenet/a0/rechannel" or name.endswith("/mixer")):
            value = value * input_gain
        if name == "wavenet/head_scale":
            value = value * output_gain
        flat.append(value.reshape(shape).ravel())
    return [float(v) for v in np.concatenate(flat)]
