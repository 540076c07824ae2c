"""The one table of model-file formats edgeamp reads and writes.

Each JSON format module gives ``detect(doc) -> bool`` on the parsed document, ``read(doc, source,
knob_names) -> Imported`` and, where edgeamp writes the format, ``write(bundle) -> dict``.
``import_model``, ``read_model``, ``edgeamp import`` and ``export-model`` loop over this table, so
a format added here gets the same library function and the same CLI behaviour. The Keras-2
``.h5`` (binary HDF5, recognised by its magic bytes) goes through ``interop/keras_h5.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeamp.core.errors import ModelFormatError

from . import guitarml, nam, rtneural
from .common import HDF5_MAGIC, Imported, read_json


@dataclass(frozen=True)
class Format:
    name: str  # recorded as the bundle's provenance source_format
    label: str  # for messages
    detect: Callable[[object], bool]
    read: Callable[..., Imported]  # (doc, source, knob_names) -> Imported
    rate_hint: str  # what to say when the file states no sample rate
    player_rate: int  # the rate the format's players run a model at that states none
    write: Callable | None = None  # (bundle) -> dict, where edgeamp writes the format
    write_name: str | None = None  # export-model --format NAME
    suffix: str | None = None  # the file suffix edgeamp writes


def _read_nam(doc, source, knob_names):
    if knob_names:
        raise ModelFormatError(f"{source}: a NAM LSTM has no knobs to name")
    return nam.read_nam(doc, source)


FORMATS: tuple[Format, ...] = (
    Format("nam", "NAM .nam", nam.detect, _read_nam, "NAM's docs say to assume 48000 Hz", 48000, nam.to_nam, "nam",
           ".nam"),
    Format("rtneural", "RTNeural/AIDA-X JSON", rtneural.detect, rtneural.read_rtneural,
           f"AIDA-X runs models at {rtneural.AIDAX_SAMPLE_RATE} Hz", rtneural.AIDAX_SAMPLE_RATE, rtneural.to_rtneural,
           "aidax", ".aidax"),
    Format("guitarml", "GuitarML/Automated-GuitarAmpModelling JSON", guitarml.detect, guitarml.read_guitarml,
           f"GuitarML's players (Proteus, NeuralPi) run their models at {guitarml.PLAYER_SAMPLE_RATE} Hz; files "
           "named 48k were recorded at 48000 Hz", guitarml.PLAYER_SAMPLE_RATE),
    Format("guitarml-conv", "GuitarML SmartGuitarAmp/SmartGuitarPedal WaveNet and SmartAmpPro JSON",
           guitarml.detect_convolutional, guitarml.read_convolutional,
           "SmartGuitarAmp, SmartGuitarPedal and SmartAmpPro run a model at the host's rate; GuitarML's tone "
           f"library records at {guitarml.PLAYER_SAMPLE_RATE} Hz", guitarml.PLAYER_SAMPLE_RATE),
)
KERAS_H5 = "keras-h5"
WRITERS = {f.write_name: f for f in FORMATS if f.write}


def known() -> str:
    return ", ".join(f.label for f in FORMATS) + " and Keras-2 .h5"


def detect_format(path: Path | str) -> str:
    """The format's name (``nam``, ``rtneural``, ``guitarml`` or ``keras-h5``) from the file's
    content, not its name."""
    path = Path(path)
    if nam.is_nam_directory(path):
        return "nam"
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file" + (" (a directory, and not NAM's model directory with "
                                                          "config.json and weights.npy)" if path.is_dir() else ""))
    with open(path, "rb") as fh:
        if fh.read(8).startswith(HDF5_MAGIC):
            return KERAS_H5
    return _json_format(read_json(path), path).name


def _json_format(doc: object, path: Path) -> Format:
    for fmt in FORMATS:
        if fmt.detect(doc):
            return fmt
    keys = sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__
    raise ModelFormatError(f"{path}: a JSON document edgeamp does not know (top level: {keys}); edgeamp imports "
                           f"{known()}")


def read_json_model(path: Path, knob_names: list[str] | None = None) -> tuple[Format, Imported]:
    """A JSON model file (or NAM's model directory) read with its format's reader (nothing is written)."""
    if nam.is_nam_directory(path):
        return FORMATS[0], nam.read_nam_directory(path)
    doc = read_json(path)
    fmt = _json_format(doc, path)
    return fmt, fmt.read(doc, str(path), knob_names)
