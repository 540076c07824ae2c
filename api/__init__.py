"""edgeamp: neural guitar-amplifier models on edge devices.

The Python API (base install, no TensorFlow)::

    import edgeamp
    amp = edgeamp.load("amp.bundle")
    y = amp(x, 48000)            # like a pedalboard plugin: aligned output, float32

A NAM ``.nam``, AIDA-X/RTNeural or GuitarML model file opens directly (imported once into a
cache folder, reused while the file is unchanged), or becomes a bundle of your own::

    amp = edgeamp.load("capture.nam")
    bundle = edgeamp.import_model("capture.nam", "capture.bundle", export=True)

``Amp`` lives in :mod:`edgeamp.edge_runtime.amp`, ``import_model`` and ``export_model`` in
:mod:`edgeamp.interop.importer`, the capture cache in :mod:`edgeamp.interop.capture`; ``load``
(below) opens either through the runtime's loader. The pipeline's stages are the
subpackages ``edgeamp.train`` (TensorFlow), ``edgeamp.export``, ``edgeamp.interop`` and
``edgeamp.edge_runtime``. Importing ``edgeamp`` imports neither TensorFlow nor OpenVINO and
touches no device.
"""

from edgeamp.core import version as _version
from edgeamp.core.errors import (
    BundleError,
    ConfigError,
    DeviceError,
    EdgeampError,
    ExportError,
    InputError,
    LegacyImportError,
    ModelFormatError,
    OutputError,
)
from edgeamp.edge_runtime.amp import Amp, KnobState
from edgeamp.edge_runtime.amp import load as _load_bundle
from edgeamp.edge_runtime.live import AudioStream
from edgeamp.edge_runtime.session import RuntimeOptions
from edgeamp.interop import capture as _capture
from edgeamp.interop.importer import export_model, import_model

__version__ = _version()


def load(path, *, cache_dir=None, **options) -> Amp:
    if _capture.is_capture(path):
        path = _capture.open_capture(path, device=options.get("device", "auto"), variant=options.get("variant"),
                                     strict=options.get("strict", False), cache_dir=cache_dir)
    return _load_bundle(path, **options)


load.__doc__ = (_load_bundle.__doc__ or "") + """
    ``path`` may also be a capture file (NAM ``.nam``, AIDA-X/RTNeural ``.aidax``/``.json``,
    GuitarML ``.json``): it is imported into ``cache_dir`` (default ``~/.cache/edgeamp/captures``
    or ``$EDGEAMP_CACHE_DIR``) once, keyed by the file's hash, with the IR this device runs
    exported and verified; later loads reuse it.
"""

__all__ = [
    "Amp",
    "AudioStream",
    "BundleError",
    "ConfigError",
    "DeviceError",
    "EdgeampError",
    "ExportError",
    "InputError",
    "KnobState",
    "LegacyImportError",
    "ModelFormatError",
    "OutputError",
    "RuntimeOptions",
    "__version__",
    "export_model",
    "import_model",
    "load",
]
