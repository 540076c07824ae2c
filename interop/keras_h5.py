"""Import the original experiment's Keras-2 / TF1 ``.h5`` models (``CuDNNLSTM`` layers).

Keras 2 wrote ``model.save()`` files as::

    /                       attrs: keras_version, backend, model_config (JSON), training_config
    /model_weights          attrs: layer_names [bytes], backend, keras_version
    /model_weights/<layer>  attrs: weight_names [b"<layer>/kernel:0", ...]
    /model_weights/<layer>/<layer>/kernel:0   dataset

and ``model.save_weights()`` files the same without the ``model_weights`` level and
without ``model_config``.

``CuDNNLSTM`` weights are ``kernel (in, 4U)``, ``recurrent_kernel (U, 4U)``, ``bias (8U,)``,
gate blocks i, f, c, o. The layer hands each gate block to cuDNN *flattened row-major as
cuDNN's own* ``(U, in)`` matrix (no transpose), so the equivalent standard-LSTM kernel of a
gate block ``k (in, U)`` is ``k.reshape(U, in).T`` (== ``k.T.reshape((in, U), order="F")``)
and of a recurrent block ``r (U, U)`` is ``r.T``. The bias is the input biases followed by
the recurrent biases: they are summed. Summing the biases alone, without the per-gate
transposes, gives a wrong model whenever ``in != 1`` or ``U > 1`` (it is right only by
accident for a 1x1 block).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeamp.core.errors import LegacyImportError
from edgeamp.core.model import Architecture, Knob, LayerWeights, ModelWeights

log = logging.getLogger(__name__)

RECURRENT_CLASSES = {"CuDNNLSTM", "LSTM"}
IGNORED_CLASSES = {"InputLayer", "Dropout", "GaussianNoise", "Activation"}


def cudnn_lstm_to_canonical(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CuDNNLSTM weights -> Keras-3 ``LSTM`` weights (see the module docstring)."""
    units = recurrent_kernel.shape[0]
    n_in = kernel.shape[0]
    if kernel.shape != (n_in, 4 * units) or recurrent_kernel.shape != (units, 4 * units) or bias.shape != (8 * units,):
        raise LegacyImportError(
            f"CuDNNLSTM weights have shapes kernel {kernel.shape}, recurrent_kernel {recurrent_kernel.shape}, "
            f"bias {bias.shape}; expected (in, 4U), (U, 4U), (8U,) with U={units}"
        )
    k = np.hstack([g.reshape(units, n_in).T for g in np.hsplit(kernel, 4)])
    r = np.hstack([g.T for g in np.hsplit(recurrent_kernel, 4)])
    b = bias[: 4 * units] + bias[4 * units :]
    return k, r, b


@dataclass(frozen=True)
class LegacyLayer:
    name: str
    class_name: str
    arrays: tuple[np.ndarray, ...]
    config: dict


@dataclass(frozen=True)
class LegacyModel:
    layers: tuple[LegacyLayer, ...]
    keras_version: str | None
    window_samples: int | None  # fixed time dimension of the model's input, if the file has one


MAX_H5_VALUES = 4 << 20  # numbers in one weight array (a CuDNNLSTM 1024 holds 8.4 M; the experiment's 64 has 17 k)
MAX_H5_TOTAL = 16 << 20  # numbers in the whole file
MAX_H5_LAYERS = 64
MAX_CONFIG_CHARS = 1 << 20


def _text(value, what: str = "a name") -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LegacyImportError(f"{what} is not UTF-8 text (byte {exc.start})") from None
    return str(value)


def _layer_configs(model_config: str | None) -> dict[str, dict]:
    """name -> {"class_name", "config"} from the model_config attribute (Sequential or functional)."""
    if not model_config:
        return {}
    if len(model_config) > MAX_CONFIG_CHARS:
        raise LegacyImportError(f"model_config attribute is {len(model_config) >> 10} KiB: not a Keras model's")
    try:
        cfg = json.loads(model_config)
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise LegacyImportError(f"model_config attribute is not valid JSON ({str(exc)[:120]})") from exc
    except RecursionError:
        raise LegacyImportError("model_config attribute is nested too deeply to be a Keras model's") from None
    if not isinstance(cfg, dict):
        raise LegacyImportError(f"model_config attribute is a JSON {type(cfg).__name__}, not a Keras model's object")
    layers = cfg.get("config", {})
    if isinstance(layers, dict):
        layers = layers.get("layers", [])
    out = {}
    for entry in layers if isinstance(layers, list) else []:
        if not isinstance(entry, dict):
            continue
        conf = entry.get("config", {})
        conf = conf if isinstance(conf, dict) else {}
        name = conf.get("name") or entry.get("name")
        if isinstance(name, str):
            out[name] = {"class_name": entry.get("class_name"), "config": conf}
    return out


def _dataset(group, name: str, path: Path, budget: list[int]):
    """A weight array read after checking it: stored in this file (no external link), numeric, and
    within MAX_H5_VALUES numbers and the file's MAX_H5_TOTAL."""
    import h5py

    parts = name.split("/")
    for i in range(1, len(parts) + 1):  # every step of the path, before it is followed
        link = group.get("/".join(parts[:i]), getlink=True)
        if link is None:
            raise LegacyImportError(f"{path}: layer {group.name!r} lists weight {name!r} that is not stored")
        if isinstance(link, h5py.ExternalLink):
            raise LegacyImportError(f"{path}: weight {name!r} links to another file ({link.filename!r}); refused")
    ds = group[name]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiu":
        raise LegacyImportError(f"{path}: weight {name!r} is not an array of numbers")
    budget[0] += ds.size
    if ds.size > MAX_H5_VALUES or budget[0] > MAX_H5_TOTAL:
        raise LegacyImportError(f"{path}: weight {name!r} declares shape {ds.shape} ({ds.size:,} numbers); far "
                                "larger than any LSTM model's weights, refused unread")
    return np.asarray(ds, dtype=np.float64)


def read_legacy_h5(path: Path | str) -> LegacyModel:
    """Read the layers of a Keras-2 ``.h5`` model or weights file, in file order. Sizes, links and
    texts are checked before anything is read (a 7 KB compressed dataset can declare gigabytes)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise LegacyImportError(f"no such file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise LegacyImportError(f"{path}: not an HDF5 file ({exc})") from exc
    with f:
        if isinstance(f.get("model_weights", getlink=True), h5py.ExternalLink):
            raise LegacyImportError(f"{path}: model_weights links to another file; refused")
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise LegacyImportError(
                f"{path}: no 'layer_names' attribute: not a Keras-2 model.save() or save_weights() file"
            )
        try:
            configs = _layer_configs(_text(f.attrs["model_config"], "model_config") if "model_config" in f.attrs
                                     else None)
            keras_version = _text(f.attrs.get("keras_version", group.attrs.get("keras_version", "")),
                                  "keras_version")[:40] or None
            names = [_text(n, "a layer name") for n in group.attrs["layer_names"][:MAX_H5_LAYERS + 1]]
        except LegacyImportError as exc:
            raise LegacyImportError(f"{path}: {exc}") from None
        if len(names) > MAX_H5_LAYERS:
            raise LegacyImportError(f"{path}: more than {MAX_H5_LAYERS} layers; not an LSTM amp model")
        layers, budget = [], [0]
        window = None
        for name in names:
            link = group.get(name, getlink=True)
            if link is None:
                raise LegacyImportError(f"{path}: layer {name[:60]!r} is listed in layer_names but has no group")
            if isinstance(link, h5py.ExternalLink):
                raise LegacyImportError(f"{path}: layer {name[:60]!r} links to another file; refused")
            g = group[name]
            try:
                weight_names = [_text(w, "a weight name") for w in g.attrs.get("weight_names", [])[:16]]
            except LegacyImportError as exc:
                raise LegacyImportError(f"{path}: layer {name[:60]!r}: {exc}") from None
            arrays = tuple(_dataset(g, w, path, budget) for w in weight_names)
            info = configs.get(name, {})
            conf = info.get("config", {})
            shape = conf.get("batch_input_shape") or conf.get("batch_shape")
            if (window is None and isinstance(shape, list) and len(shape) == 3 and isinstance(shape[1], int)
                    and 0 < shape[1] <= 1 << 20):
                window = int(shape[1])
            class_name = info.get("class_name") or _guess_class(weight_names, arrays)
            layers.append(LegacyLayer(name, str(class_name)[:60], arrays, conf))
    return LegacyModel(tuple(layers), keras_version, window)


def _guess_class(weight_names: list[str], arrays: tuple[np.ndarray, ...]) -> str:
    """Class of a layer in a weights-only file, from its weights."""
    short = [w.split("/")[-1].split(":")[0] for w in weight_names]
    if short == ["kernel", "recurrent_kernel", "bias"]:
        units = arrays[1].shape[0]
        return "CuDNNLSTM" if arrays[2].shape == (8 * units,) else "LSTM"
    if short == ["kernel", "bias"]:
        return "Dense"
    if not short:
        return "InputLayer"
    return "unknown(" + ",".join(short) + ")"


def legacy_to_weights(model: LegacyModel, source: str = "model") -> tuple[Architecture, ModelWeights]:
    """Convert the layers to the canonical architecture and weights."""
    classes = [layer.class_name for layer in model.layers]
    first_rnn = next((i for i, c in enumerate(classes) if c in RECURRENT_CLASSES), None)
    if first_rnn is not None and any(c in ("Conv1D", "SeparableConv1D") for c in classes[:first_rnn]):
        frames = model.window_samples
        for layer in model.layers[:first_rnn]:
            stride = layer.config.get("strides", [1])
            stride = stride[0] if isinstance(stride, list) and stride else stride
            if frames and isinstance(stride, int) and stride > 0:
                frames = -(-frames // stride)  # 'same' padding: ceil(n / stride) frames out
        runs = f" (this one: {frames} frames of its {model.window_samples}-sample window)" if frames else ""
        raise LegacyImportError(
            f"{source}: a Conv1D front end before an LSTM (GuitarML's GuitarLSTM / SmartAmpPro shape: strided "
            "convolutions over a window of past samples, then an LSTM run from zero state over the window's frames "
            f"for every output sample{runs}). Only the one-frame form has a streaming form here, and edgeamp reads it "
            "from SmartAmpPro's JSON (the plugin's own format); an LSTM over several frames per output sample is "
            "not imported. edgeamp imports Keras .h5 LSTM stacks with a linear Dense(1) head")
    lstm: list[LayerWeights] = []
    head = None
    for layer in model.layers:
        if layer.class_name in IGNORED_CLASSES and not layer.arrays:
            continue
        if head is not None:
            raise LegacyImportError(f"{source}: layer {layer.name!r} ({layer.class_name}) after the dense head")
        if layer.class_name in RECURRENT_CLASSES:
            if len(layer.arrays) != 3:
                raise LegacyImportError(
                    f"{source}: {layer.class_name} layer {layer.name!r} has {len(layer.arrays)} weights, expected 3"
                )
            if layer.config.get("return_sequences") is False:
                raise LegacyImportError(
                    f"{source}: layer {layer.name!r} has return_sequences=False: it outputs one value per "
                    "window, not audio; edgeamp imports sample-per-sample models only"
                )
            k, r, b = layer.arrays
            if layer.class_name == "CuDNNLSTM":
                k, r, b = cudnn_lstm_to_canonical(k, r, b)
            elif b.shape != (4 * r.shape[0],):
                raise LegacyImportError(f"{source}: LSTM layer {layer.name!r} has bias {b.shape}, expected (4U,)")
            expected_in = lstm[-1].units if lstm else k.shape[0]
            if k.shape[0] != expected_in:
                raise LegacyImportError(
                    f"{source}: layer {layer.name!r} takes {k.shape[0]} inputs but the layer before gives {expected_in}"
                )
            lstm.append(LayerWeights(k.astype(np.float32), r.astype(np.float32), b.astype(np.float32)))
        elif layer.class_name == "Dense":
            if not lstm:
                raise LegacyImportError(f"{source}: Dense layer {layer.name!r} before any LSTM layer")
            if len(layer.arrays) != 2 or layer.arrays[0].shape != (lstm[-1].units, 1):
                shapes = [a.shape for a in layer.arrays]
                raise LegacyImportError(
                    f"{source}: Dense layer {layer.name!r} has weights {shapes}; only a ({lstm[-1].units}, 1) "
                    "output head is supported"
                )
            act = layer.config.get("activation", "linear")
            if act != "linear":
                raise LegacyImportError(f"{source}: Dense layer {layer.name!r} has activation {act!r}; only linear")
            head = (layer.arrays[0].astype(np.float32), layer.arrays[1].astype(np.float32))
        else:
            raise LegacyImportError(
                f"{source}: layer {layer.name!r} of class {layer.class_name} is not supported "
                f"(supported: {sorted(RECURRENT_CLASSES)} then an optional linear Dense(1))"
            )
    if not lstm:
        raise LegacyImportError(f"{source}: no LSTM or CuDNNLSTM layer found")
    n_in = lstm[0].kernel.shape[0]
    knobs = tuple(Knob(f"knob{i}", -1.0, 1.0, 0.0) for i in range(1, n_in))
    if knobs:
        log.info("%s: %d extra input channel(s) imported as knobs %s with range -1..1", source, len(knobs),
                 [k.name for k in knobs])
    try:
        arch = Architecture(tuple(w.units for w in lstm), head=head is not None, skip=False, knobs=knobs)
    except ValueError as exc:
        raise LegacyImportError(f"{source}: {exc}") from exc
    weights = ModelWeights(tuple(lstm), *(head if head else (None, None)))
    return arch, weights
