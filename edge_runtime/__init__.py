"""edgeamp's device side: bundle format, numpy reference, streaming processors, OpenVINO backend, CLI.

Importing this package never imports TensorFlow, never enumerates devices and never
opens audio: it must run on an edge box with only the base install.
"""

from .errors import BundleError, ConfigError, DeviceError, EdgeampError, InputError, LegacyImportError

__all__ = ["BundleError", "ConfigError", "DeviceError", "EdgeampError", "InputError", "LegacyImportError", "version"]


def version() -> str:
    """The installed edgeamp distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v

    try:
        return _v("edgeamp")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"
