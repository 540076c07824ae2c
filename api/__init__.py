"""edgeamp: neural guitar-amplifier models on edge devices.

The Python API (base install, no TensorFlow)::

    import edgeamp
    amp = edgeamp.load("amp.bundle")
    y = amp(x, 48000)            # like a pedalboard plugin: aligned output, float32

A NAM ``.nam`` or AIDA-X/RTNeural model becomes a bundle first::

    bundle = edgeamp.import_model("capture.nam", "capture.bundle", export=True)
    amp = edgeamp.load(bundle)

``load`` and ``Amp`` live in :mod:`edgeamp.edge_runtime.amp`, ``import_model`` and
``export_model`` in :mod:`edgeamp.interop.importer`; the pipeline's stages are the
subpackages ``edgeamp.train`` (TensorFlow), ``edgeamp.export``, ``edgeamp.interop`` and
``edgeamp.edge_runtime``. Importing ``edgeamp`` imports neither TensorFlow nor OpenVINO and
touches no device.
"""

from edgeamp.edge_runtime import version as _version
from edgeamp.edge_runtime.amp import Amp, KnobState, load
from edgeamp.edge_runtime.errors import (
    BundleError,
    ConfigError,
    DeviceError,
    EdgeampError,
    InputError,
    LegacyImportError,
    ModelFormatError,
)
from edgeamp.edge_runtime.session import RuntimeOptions
from edgeamp.interop.importer import export_model, import_model

__version__ = _version()

__all__ = [
    "Amp",
    "BundleError",
    "ConfigError",
    "DeviceError",
    "EdgeampError",
    "InputError",
    "KnobState",
    "LegacyImportError",
    "ModelFormatError",
    "RuntimeOptions",
    "__version__",
    "export_model",
    "import_model",
    "load",
]
