"""edgeamp: neural guitar-amplifier models on edge devices.

The pipeline's stages are the subpackages ``edgeamp.train`` (TensorFlow), ``edgeamp.export``
and ``edgeamp.edge_runtime``; this package (the folder ``api/`` in the source tree) holds the
public names. Importing ``edgeamp`` imports neither TensorFlow nor OpenVINO and touches no device.
"""

from edgeamp.edge_runtime import version as _version
from edgeamp.edge_runtime.errors import (
    BundleError,
    ConfigError,
    DeviceError,
    EdgeampError,
    InputError,
    LegacyImportError,
)

__version__ = _version()

__all__ = ["BundleError", "ConfigError", "DeviceError", "EdgeampError", "InputError", "LegacyImportError",
           "__version__"]
