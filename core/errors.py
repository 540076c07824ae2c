"""The package's error types: every error edgeamp raises on purpose is an EdgeampError."""

from __future__ import annotations


class EdgeampError(Exception):
    """Root of every error that edgeamp raises on purpose."""


class BundleError(EdgeampError):
    """A model bundle is missing, from another schema version, inconsistent or corrupt."""


class ConfigError(EdgeampError, ValueError):
    """A configuration (manifest section, preset, CLI value) is malformed."""


class InputError(EdgeampError, ValueError):
    """Audio or array input breaks the contract (dtype, shape, sample rate, values)."""


class LegacyImportError(EdgeampError):
    """A legacy Keras-2 / TF1 .h5 file cannot be imported."""


class ModelFormatError(EdgeampError):
    """Another tool's model file (NAM ``.nam``, RTNeural/AIDA-X JSON) cannot be imported, or a
    bundle cannot be written in that tool's format."""


class ExportError(EdgeampError):
    """An export failed (verification, or a bundle its graphs cannot express)."""


class OutputError(EdgeampError):
    """An output path cannot be written (no such directory, read-only, not a file system)."""


class DeviceError(EdgeampError):
    """An inference device is missing or cannot run the requested graph."""


def require(module: str, purpose: str, extra: str = "train") -> None:
    """Raise an EdgeampError that says what to install when ``module`` is missing (the base, device
    install has no TensorFlow, pedalboard or matplotlib)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise EdgeampError(f"{purpose} needs {module}, which this install lacks: pip install 'edgeamp[{extra}]'")
