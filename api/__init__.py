"""edgeamp: neural guitar-amplifier models on edge devices.

The Python API (base install, no TensorFlow)::

    import edgeamp
    amp = edgeamp.load("amp.bundle")
    y = amp(x, 48000)            # like a pedalboard plugin: aligned output, float32

``load`` and ``Amp`` live in :mod:`edgeamp.edge_runtime.amp`; the pipeline's stages are the
subpackages ``edgeamp.train`` (TensorFlow), ``edgeamp.export`` and ``edgeamp.edge_runtime``.
Importing ``edgeamp`` imports neither TensorFlow nor OpenVINO and touches no device.
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
)
from edgeamp.edge_runtime.session import RuntimeOptions

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
    "RuntimeOptions",
    "__version__",
    "load",
]
