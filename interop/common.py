"""What the format modules share: the imported model, reading a JSON model file safely, and the
exact rewrites (gains, knob ranges) that let a bundle be written in a format without those features."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeamp.core.errors import ModelFormatError
from edgeamp.core.model import Architecture, Knob, LayerWeights, ModelWeights

MAX_MODEL_BYTES = 16 << 20  # the largest capture seen is 0.4 MB; MAX_WEIGHTS as JSON text is about 8 MB
# Every weight of these models is used once per sample: a model of more than this many weights needs
# over 14 G multiply-adds per second at 48 kHz, more than one CPU core, and takes minutes to verify.
# The largest captures in the collections surveyed (benchmarks/capture_survey.py) have under 60 000.
MAX_WEIGHTS = 300_000
# declared sizes, bounded before any weight is read (AIDA-X's largest compiled size is 80 units)
MAX_UNITS = 1024
MAX_LAYERS = 16
MAX_INPUTS = 16  # AIDA-X takes at most 3 (audio + 2 parameters)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Imported:
    """A model read from another tool's file: what a bundle needs, and what the file said."""

    format: str  # a name in interop/formats.py: "nam", "rtneural", "guitarml"
    architecture: Architecture
    weights: ModelWeights
    sample_rate: int | None  # None: the file does not say
    metadata: dict = field(default_factory=dict)  # what the file carries (name, gear, loudness...)
    version: str | None = None
    input_gain: float = 1.0  # linear levels the file's player applies around the model (AIDA-X in_gain/out_gain)
    output_gain: float = 1.0
    # the file's own test pair (AIDA-X input_batch/output_batch): model input (T, channels) and output (T,)
    check: tuple[np.ndarray, np.ndarray] | None = None


def read_json(path: Path) -> object:
    """The JSON document in ``path``; empty, oversized, binary, truncated and non-JSON files raise
    ModelFormatError saying which."""
    size = path.stat().st_size
    if size == 0:
        raise ModelFormatError(f"{path}: the file is empty")
    if size > MAX_MODEL_BYTES:
        raise ModelFormatError(f"{path}: {size / 2**20:.0f} MiB is far larger than any LSTM/GRU model file; refused")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{path}: not a text file (byte {exc.start} is not UTF-8); expected a .nam or "
                               "RTNeural JSON model") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ModelFormatError(f"{path}: the JSON is nested too deeply to be a model file") from None
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
            raise ModelFormatError(f"{path}: a web page (HTML), not a model file: a repository's page saved under "
                                   "the model's name? Download the raw file") from exc
        end = "the file ends early (truncated?)" if exc.pos >= len(text.rstrip()) else exc.msg
        raise ModelFormatError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {end}") from exc
    except ValueError as exc:  # an integer of over 4300 digits
        raise ModelFormatError(f"{path}: not a model file ({str(exc)[:120]})") from exc


def _reject_constant(name: str):
    raise ModelFormatError(f"the file holds {name}: a model's weights must be finite numbers")


def as_array(values, shape: tuple[int, ...], what: str, source: str) -> np.ndarray:
    """``values`` (nested lists of numbers) as a float32 array of exactly ``shape``; finite."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{source}: {what} is not an array of numbers ({exc})") from exc
    if arr.shape != tuple(shape):
        raise ModelFormatError(f"{source}: {what} has shape {arr.shape}, its declared sizes need {tuple(shape)}")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ModelFormatError(f"{source}: {what} holds {bad} NaN/Inf value(s)")
    return arr.astype(np.float32)


MAX_METADATA_TEXT = 500  # characters of one metadata string kept (a name, a gear model)


def bounded_metadata(value, depth: int = 0):
    """A file's metadata as kept in the bundle and printed: strings cut to MAX_METADATA_TEXT characters,
    at most 64 entries per object or list, 4 levels deep (a 10 MB name is not a name)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_METADATA_TEXT else value[:MAX_METADATA_TEXT] + "..."
    if depth >= 4:
        return None
    if isinstance(value, dict):
        return {str(k)[:MAX_METADATA_TEXT]: bounded_metadata(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, list):
        return [bounded_metadata(v, depth + 1) for v in value[:64]]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 18:
        return None
    return value


def check_cost(arch, source: str, sample_rate: int = 48000) -> None:
    """Refuse, before any export or verification, a model too large to run in real time anywhere
    edgeamp runs (:data:`MAX_WEIGHTS`), naming its size and what it would cost."""
    weights = arch.parameter_count()
    if weights > MAX_WEIGHTS:
        raise ModelFormatError(
            f"{source}: {arch.describe()} has {weights:,} weights, about {weights * sample_rate / 1e9:.0f} G "
            f"multiply-adds per second at {sample_rate} Hz; edgeamp imports models of up to {MAX_WEIGHTS:,} "
            "weights (real time on one CPU core)")


def positive_int(value, what: str, source: str, maximum: int | None = None) -> int:
    """A size the file declares: a whole number from 1 to ``maximum`` (checked before anything of
    that size is read or allocated); infinities and 5000-digit integers are refused like any other."""
    shown = str(value)[:40] + ("..." if len(str(value)) > 40 else "") if isinstance(value, (int, float)) else (
        repr(value)[:40])
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or value < 1):
        raise ModelFormatError(f"{source}: {what} must be a positive whole number, got {shown}")
    if maximum is not None and value > maximum:
        raise ModelFormatError(f"{source}: {what} is {shown}; edgeamp imports at most {maximum}")
    return int(value)


def sample_rate_from(value, source: str, what: str = "sample_rate") -> int | None:
    """A sample rate the file states: a number (NAM allows a float such as 48000.0) or a string of
    one (AIDA-X writes ``"48000"``); None when absent."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 32:
        try:
            value = float(value.strip())
        except ValueError:
            raise ModelFormatError(f"{source}: {what} {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelFormatError(f"{source}: {what} {str(value)[:40]!r} is not a number")
    if not 1000 <= value <= 768000 or value != int(value):
        raise ModelFormatError(f"{source}: {what} {value!r} Hz is not a whole audio rate")
    return int(value)


def gain_from_db(value, what: str, source: str) -> float:
    """A level in dB the file states (AIDA-X's ``in_gain``/``out_gain``) as a linear factor; 1 when absent."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelFormatError(f"{source}: {what} {str(value)[:40]!r} must be a number of dB")
    if abs(value) > 60:
        raise ModelFormatError(f"{source}: {what} {value:g} dB is beyond +-60 dB; refused")
    return float(10.0 ** (value / 20.0))


def gain_to_db(gain: float) -> float:
    return float(20.0 * math.log10(gain))


# ---- exact rewrites for writing a bundle in another format --------------------------------------
def fold_gains(arch: Architecture, weights: ModelWeights, input_gain: float, output_gain: float,
               fmt: str) -> ModelWeights:
    """The same model with input/output gains of 1: the input gain scales the audio row of the first
    kernel, the output gain scales the head. Exact up to float32 rounding; refused where no such
    rewrite exists (an input skip adds the gained input; no head has nothing to scale)."""
    if input_gain == 1.0 and output_gain == 1.0:
        return weights
    if arch.skip:
        raise ModelFormatError(f"{fmt}: the bundle has an input skip and gains ({input_gain:g} in, {output_gain:g} "
                               "out); the format adds the raw input, so the gains cannot be folded into weights")
    if not arch.head and output_gain != 1.0:
        raise ModelFormatError(f"{fmt}: output gain {output_gain:g} needs a dense head to fold into; this model "
                               "has none")
    weights = _with_first_kernel(weights, lambda kernel, bias: (_scaled_row0(kernel, input_gain), bias))
    if not arch.head:
        return weights
    return replace(weights,
                   head_kernel=(weights.head_kernel.astype(np.float64) * output_gain).astype(np.float32),
                   head_bias=(weights.head_bias.astype(np.float64) * output_gain).astype(np.float32))


def fold_knob_ranges(arch: Architecture, weights: ModelWeights, model_minimum: float, model_maximum: float
                     ) -> tuple[Architecture, ModelWeights]:
    """The same model with every knob's model range set to ``model_minimum..model_maximum`` (a
    format's own parameter convention, e.g. AIDA-X's 0..1): each knob's input row of the first
    kernel and the input bias absorb the affine change. Exact up to float32 rounding."""
    knobs = []
    maps = []
    for index, knob in enumerate(arch.knobs, start=1):
        # old model input m = a*p + b in terms of the new one p (p in the new range)
        a = (knob.model_maximum - knob.model_minimum) / (model_maximum - model_minimum)
        maps.append((index, a, knob.model_minimum - a * model_minimum))
        knobs.append(replace(knob, model_minimum=model_minimum, model_maximum=model_maximum))

    def rewrite(kernel, bias):
        kernel, bias = kernel.astype(np.float64).copy(), bias.astype(np.float64).copy()
        in_bias = bias if bias.ndim == 1 else bias[0]  # a GRU's input bias row
        for index, a, b in maps:
            in_bias += b * kernel[index]
            kernel[index] *= a
        return kernel.astype(np.float32), bias.astype(np.float32)

    return replace(arch, knobs=tuple(knobs)), _with_first_kernel(weights, rewrite)


def _scaled_row0(kernel: np.ndarray, gain: float) -> np.ndarray:
    kernel = kernel.astype(np.float64).copy()
    kernel[0] *= gain  # the audio channel's row
    return kernel.astype(np.float32)


def _with_first_kernel(weights: ModelWeights, fn) -> ModelWeights:
    """``weights`` with the layer that reads the model's input (the first front dense layer, else the
    first recurrent layer) rewritten by ``fn(kernel, bias) -> (kernel, bias)``."""
    if weights.front:
        first = weights.front[0]
        kernel, bias = fn(first.kernel, first.bias)
        return replace(weights, front=(replace(first, kernel=kernel, bias=bias), *weights.front[1:]))
    first = weights.layers[0]
    kernel, bias = fn(first.kernel, first.bias)
    return replace(weights, layers=(LayerWeights(kernel, first.recurrent_kernel, bias, first.h0, first.c0),
                                    *weights.layers[1:]))


def knobs_for(count: int, names: list[str] | None, described, source: str) -> tuple[Knob, ...]:
    """Knobs for a file's extra input channels, which the model takes as they are, 0..1 (AIDA-X's
    convention). ``names``: what the user called them; else what the file describes (``described``:
    a list of ``{"name", "minimum", "maximum", "default"}``, as edgeamp writes); else ``param1``..."""
    if names is not None and len(names) != count:
        raise ModelFormatError(f"{source}: the model takes {count} parameter input(s), {len(names)} knob name(s) "
                               f"were given ({', '.join(names)})")
    try:
        if names is None and isinstance(described, list) and len(described) == count:
            return tuple(Knob(str(d["name"]), float(d.get("minimum", 0.0)), float(d.get("maximum", 1.0)),
                              float(d.get("default", 0.5)), 0.0, 1.0) for d in described)
        return tuple(Knob(n, 0.0, 1.0, 0.5, 0.0, 1.0) for n in (names or [f"param{i + 1}" for i in range(count)]))
    except (KeyError, TypeError, ValueError) as exc:  # ConfigError is a ValueError
        raise ModelFormatError(f"{source}: the knobs it describes are not usable: {exc}") from exc
