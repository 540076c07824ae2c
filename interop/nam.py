"""Neural Amp Modeler ``.nam`` files: the LSTM architecture, both ways.

Layout (NAM's ``nam/models/recurrent.py``, ``LSTM._export_weights`` / ``import_weights``; the
``.nam`` specification in NAM's docs): a JSON object with ``version``, ``architecture``
(``"LSTM"``), ``config`` (``input_size``, ``hidden_size``, ``num_layers``: every layer has the
same hidden size), ``weights`` (one flat list), optional ``sample_rate`` and ``metadata``. The
flat list holds, per layer: the PyTorch matrix ``[W_ih | W_hh]`` of shape ``(4H, in + H)``
row-major (gates i, f, g, o: Keras' i, f, c, o), the summed bias ``b_ih + b_hh`` ``(4H,)``, the
initial hidden state ``(H,)`` and the initial cell state ``(H,)``; then the head ``Linear(H, 1)``:
weight ``(1, H)``, bias ``(1,)``. A NAM player starts every layer from the stored state (NAM
writes the state after 48000 samples of silence), so an imported model keeps it as the bundle's
initial state.
"""

from __future__ import annotations

import datetime
import importlib.resources
import logging
import os
import re
from pathlib import Path

import numpy as np

from edgeamp.core.bundle import Bundle
from edgeamp.core.errors import ModelFormatError
from edgeamp.core.model import Architecture, LayerWeights, ModelWeights

from .common import MAX_INPUTS, MAX_LAYERS, MAX_UNITS, Imported, as_array, fold_gains, positive_int, sample_rate_from
from .nam_wavenet import read_wavenet, wavenet_config, wavenet_weights

log = logging.getLogger(__name__)
LOUDNESS_ENV = "EDGEAMP_NAM_LOUDNESS_INPUT"
# .nam versions whose LSTM layout is the one above: 0.5.x (2023) to 0.7.x (NAM 0.13)
READS = ((0, 5), (0, 6), (0, 7))
WRITES = "0.5.4"  # the LSTM layout is unchanged since 0.5; every NAM player reads 0.5.x
METADATA_KEYS = ("name", "modeled_by", "gear_make", "gear_model", "gear_type", "tone_type", "loudness", "gain",
                 "input_level_dbu", "output_level_dbu", "date", "training")


def detect(doc: object) -> bool:
    return isinstance(doc, dict) and "architecture" in doc and "weights" in doc


def _version(doc: dict, source: str) -> str:
    version = doc.get("version")
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", str(version)) if isinstance(version, str) else None
    if m is None:
        raise ModelFormatError(f"{source}: .nam version {version!r} is not a version string like '0.5.4'")
    if (int(m[1]), int(m[2])) not in READS:
        known = ", ".join(f"{a}.{b}.x" for a, b in READS)
        raise ModelFormatError(f"{source}: .nam version {version} is not one edgeamp reads ({known}); a newer NAM "
                               "may have changed the layout: upgrade edgeamp")
    return version


def read_nam(doc: object, source: str) -> Imported:
    """An :class:`Imported` from a parsed ``.nam`` document; every problem raises ModelFormatError."""
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{source}: a .nam file holds a JSON object, this one holds {type(doc).__name__}")
    version = _version(doc, source)
    arch_name = doc.get("architecture")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    kept = {k: meta[k] for k in METADATA_KEYS if k in meta}
    if arch_name == "WaveNet":
        arch, weights = read_wavenet(doc, source)
        return Imported("nam", arch, weights, sample_rate_from(doc.get("sample_rate"), source), kept, version)
    if arch_name in ("PackedWaveNet", "SlimmableWaveNet", "SlimmableContainer"):
        raise ModelFormatError(f"{source}: architecture {arch_name!r} is NAM's A2 (slimmable/packed WaveNet); "
                               "edgeamp imports NAM's A1 WaveNet and LSTM")
    if arch_name != "LSTM":
        raise ModelFormatError(f"{source}: architecture {str(arch_name)[:40]!r} is not one edgeamp imports (NAM's "
                               "WaveNet and LSTM)")
    config = doc.get("config")
    if not isinstance(config, dict):
        raise ModelFormatError(f"{source}: 'config' must be an object with input_size, hidden_size, num_layers")
    n_in = positive_int(config.get("input_size", 1), "config.input_size", source, MAX_INPUTS)
    hidden = positive_int(config.get("hidden_size"), "config.hidden_size", source, MAX_UNITS)
    layers_n = positive_int(config.get("num_layers", 1), "config.num_layers", source, MAX_LAYERS)
    if n_in != 1:
        raise ModelFormatError(f"{source}: config.input_size {n_in}: a parametric NAM LSTM names no parameters or "
                               "ranges; edgeamp imports input_size 1")
    flat = doc.get("weights")
    if not isinstance(flat, list):
        raise ModelFormatError(f"{source}: 'weights' must be a list of numbers")
    per_layer = [4 * hidden * (i + hidden) + 4 * hidden + 2 * hidden
                 for i in [n_in] + [hidden] * (layers_n - 1)]
    expected = sum(per_layer) + hidden + 1
    if len(flat) != expected:
        raise ModelFormatError(f"{source}: {len(flat)} weights, but an LSTM of {layers_n} layer(s) x {hidden} "
                               f"units with input_size {n_in} and a linear head has {expected}")
    w = as_array(flat, (expected,), "weights", source)
    layers, pos, n_prev = [], 0, n_in

    def take(count: int) -> np.ndarray:
        nonlocal pos
        out = w[pos : pos + count]
        pos += count
        return out

    for _ in range(layers_n):
        matrix = take(4 * hidden * (n_prev + hidden)).reshape(4 * hidden, n_prev + hidden)
        bias = take(4 * hidden)
        h0, c0 = take(hidden), take(hidden)
        layers.append(LayerWeights(np.ascontiguousarray(matrix[:, :n_prev].T),
                                   np.ascontiguousarray(matrix[:, n_prev:].T), bias.copy(), h0.copy(), c0.copy()))
        n_prev = hidden
    head_kernel = take(hidden).reshape(hidden, 1).copy()
    head_bias = take(1).copy()
    arch = Architecture(tuple([hidden] * layers_n), head=True, initial_state=True)
    weights = ModelWeights(tuple(layers), head_kernel, head_bias)
    return Imported("nam", arch, weights, sample_rate_from(doc.get("sample_rate"), source), kept, version)


def loudness_input_path() -> Path | None:
    """NAM's standard loudness input (``loudness_input.wav``, shipped in NAM's Python package): from
    ``$EDGEAMP_NAM_LOUDNESS_INPUT``, else the installed ``nam`` package; None when neither has it."""
    env = os.environ.get(LOUDNESS_ENV)
    if env:
        return Path(env)
    try:
        path = importlib.resources.files("nam").joinpath("models/_resources/loudness_input.wav")
    except (ModuleNotFoundError, TypeError):
        return None
    return Path(str(path)) if path.is_file() else None


def nam_levels(bundle: Bundle, loudness_input: Path | str) -> dict[str, float]:
    """NAM's ``loudness`` and ``gain`` metadata, computed as NAM's ``nam/models/base.py`` does:
    loudness is the RMS in dB of the model's output (from its start state) on the standard input;
    gain (0..1) compares the summed RMS output at input gains 0, 0.1, ..., 1 with the straight line
    (no compression: 0) and the square (full compression: 1)."""
    import soundfile as sf

    from edgeamp.core import reference

    x, _ = sf.read(str(loudness_input), dtype="float64", always_2d=True)
    x = x[:, 0]
    m = bundle.manifest
    gains = np.linspace(0.0, 1.0, 11)
    batch = (gains[:, None] * x[None, :] * m.input_gain)[:, :, None]
    y, _ = reference.run_stateful(m.architecture, bundle.weights, batch)
    rms = np.sqrt(np.mean(np.square(y * m.output_gain), axis=1))
    loudness = float(20.0 * np.log10(max(rms[-1], 1e-30)))
    max_gain = rms[-1] * len(gains)
    min_gain = 0.5 * max_gain
    gain = float(np.clip((rms.sum() - min_gain) / max(max_gain - min_gain, 1e-30), 0.0, 1.0))
    return {"loudness": loudness, "gain": gain}


def to_nam(bundle: Bundle, *, loudness_input: Path | str | None = None) -> dict:
    """The ``.nam`` document of a bundle; refuses, naming the feature, what NAM's LSTM cannot express.
    The metadata is NAM's: name, date, input/output levels where the bundle knows them, and
    ``loudness``/``gain`` computed on NAM's standard input (``loudness_input``, default
    :func:`loudness_input_path`; without it they are left out, with a log line)."""
    m = bundle.manifest
    arch = m.architecture
    fmt = "NAM .nam"
    if m.streaming.mode != "stateful":
        raise ModelFormatError(f"{fmt}: this is a window-mode model (each hop restarts from zero state over a "
                               f"{m.streaming.window_samples}-sample window); NAM runs one continuous state")
    if arch.family == "wavenet":
        scale = np.float32(bundle.weights["wavenet/head_scale"][0] * m.output_gain)
        config = wavenet_config(arch, float(str(scale)))  # the shortest decimal of the stored float32 (0.02)
        doc = {"version": WRITES, "architecture": "WaveNet", "config": config,
               "weights": wavenet_weights(arch, bundle.weights, m.input_gain, m.output_gain),
               "sample_rate": m.sample_rate}
        doc["metadata"] = _metadata(bundle, loudness_input)
        return doc
    if arch.cell != "lstm":
        raise ModelFormatError(f"{fmt}: NAM's recurrent architecture is an LSTM; this model is a GRU "
                               "(export it as --format aidax)")
    if arch.knobs:
        raise ModelFormatError(f"{fmt}: the format has no knobs; this model is conditioned on "
                               f"{', '.join(arch.knob_names)}")
    if arch.skip:
        raise ModelFormatError(f"{fmt}: NAM's LSTM has no input skip (y = head(h)); this model adds its input "
                               "to the output")
    if arch.fir_taps:
        raise ModelFormatError(f"{fmt}: NAM's LSTM has nothing to hold this model's {arch.fir_taps}-tap FIR stage")
    if arch.front or arch.hidden:
        raise ModelFormatError(f"{fmt}: NAM's LSTM is the recurrent stack and a linear head; this model has dense "
                               "layers around its stack (export it as --format aidax)")
    if len(set(arch.units)) != 1:
        raise ModelFormatError(f"{fmt}: NAM's LSTM has one hidden size for every layer; this model has "
                               f"{'-'.join(map(str, arch.units))}")
    weights = fold_gains(arch, bundle.weights, m.input_gain, m.output_gain, fmt)
    hidden = arch.units[0]
    flat = []
    for layer in weights.layers:
        matrix = np.concatenate([layer.kernel.T, layer.recurrent_kernel.T], axis=1)  # (4H, in + H)
        flat += [matrix.ravel(), layer.bias, layer.initial("h") if arch.initial_state else np.zeros(hidden),
                 layer.initial("c") if arch.initial_state else np.zeros(hidden)]
    if arch.head:
        flat += [weights.head_kernel[:, 0], weights.head_bias]
    else:  # the last layer has 1 unit (so all do) and is the output: a head of weight 1, bias 0 is exact
        flat += [np.ones(1), np.zeros(1)]
    return {
        "version": WRITES,
        "architecture": "LSTM",
        "config": {"input_size": 1, "hidden_size": hidden, "num_layers": len(arch.units)},
        "weights": [float(v) for v in np.concatenate([np.asarray(a, np.float64).ravel() for a in flat])],
        "sample_rate": m.sample_rate,
        "metadata": _metadata(bundle, loudness_input),
    }


def _metadata(bundle: Bundle, loudness_input) -> dict:
    m = bundle.manifest
    meta = dict(m.provenance.get("source_metadata", {})) if m.provenance.get("source_format") == "nam" else {}
    meta.setdefault("name", bundle.path.name.removesuffix(".bundle") if bundle.path else "edgeamp model")
    now = datetime.datetime.now()
    meta["date"] = {k: getattr(now, k) for k in ("year", "month", "day", "hour", "minute", "second")}
    source = loudness_input or loudness_input_path()
    if source is not None:
        meta.update(nam_levels(bundle, source))  # the model's own, not the imported file's
    else:
        meta.pop("loudness", None)
        meta.pop("gain", None)
        log.info("NAM's loudness input was not found (install NAM's Python package, or set %s): the .nam has no "
                 "loudness/gain metadata, so NAM players will not normalise its level", LOUDNESS_ENV)
    meta["exported_by"] = "edgeamp"
    return meta


def is_nam_directory(path: Path) -> bool:
    """NAM's model directory from before the .nam file (NAM 0.2-0.4): ``config.json`` + ``weights.npy``."""
    return path.is_dir() and (path / "config.json").is_file() and (path / "weights.npy").is_file()


def read_nam_directory(path: Path) -> Imported:
    """A WaveNet from NAM's older model directory; its ``inputs.npy``/``outputs.npy`` (NAM's own test
    pair, made with the start padding NAM's prewarm matches) become the import's check."""
    from .common import MAX_MODEL_BYTES, read_json

    source = str(path)
    doc = read_json(path / "config.json")
    if not isinstance(doc, dict) or doc.get("architecture") != "WaveNet":
        found = doc.get("architecture") if isinstance(doc, dict) else type(doc).__name__
        raise ModelFormatError(f"{source}: a NAM model directory of architecture {str(found)[:40]!r}; edgeamp reads "
                               "WaveNet directories (later NAM LSTMs come as .nam files)")

    def load(name: str) -> np.ndarray:
        f = path / name
        if f.stat().st_size > MAX_MODEL_BYTES:
            raise ModelFormatError(f"{f}: {f.stat().st_size >> 20} MiB; refused")
        try:
            arr = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ModelFormatError(f"{f}: not a numpy array file ({exc})") from exc
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
            raise ModelFormatError(f"{f}: expected a flat array of floats, got {arr.dtype} {arr.shape}")
        return arr

    weights = load("weights.npy")
    arch, w = read_wavenet({"config": doc.get("config"), "weights": weights.tolist()}, source)
    check = None
    if (path / "inputs.npy").is_file() and (path / "outputs.npy").is_file():
        x, y = load("inputs.npy"), load("outputs.npy")
        if x.shape == y.shape:
            check = (x.astype(np.float32)[:, None], y.astype(np.float32))
    return Imported("nam", arch, w, None, {}, str(doc.get("version")), check=check)
