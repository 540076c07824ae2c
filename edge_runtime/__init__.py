"""edgeamp's device side: streaming processors, the OpenVINO backend and device choice, live audio,
the headless service, and the runtime's commands (render, live, serve, stream, info, devices).

Importing this package never imports TensorFlow, never enumerates devices and never
opens audio: it must run on an edge box with only the base install.
"""

from edgeamp.core import version
from edgeamp.core.errors import BundleError, ConfigError, DeviceError, EdgeampError, InputError, LegacyImportError

__all__ = ["BundleError", "ConfigError", "DeviceError", "EdgeampError", "InputError", "LegacyImportError", "version"]
