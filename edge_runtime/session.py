"""Open a streaming processor for a bundle: backend, device, IR variant and hop, checked."""

from __future__ import annotations

import logging

from .bundle import Bundle, read_bundle
from .devices import DeviceChoice, choose_device
from .engines import NumpyEngine, OpenVINOEngine
from .errors import BundleError, ConfigError
from .model import Streaming
from .processor import Processor

log = logging.getLogger(__name__)


def find_ir(bundle: Bundle, variant: str, hop_samples: int, precision: str) -> dict:
    """The manifest export entry for (variant, hop, precision), falling back to f32 weights."""
    for prec in dict.fromkeys((precision, "f32", "f16")):
        entry = bundle.manifest.exports.get(f"{variant}-{prec}")
        if entry and entry["hop_samples"] == hop_samples:
            return entry
    have = sorted(f"{k} (hop {e['hop_samples']})" for k, e in bundle.manifest.exports.items()) or ["none"]
    raise BundleError(
        f"{bundle.path}: no {variant} IR with a hop of {hop_samples} samples (have: {', '.join(have)}); run "
        f"`edgeamp export {bundle.path} --variants {variant} --hop-samples {hop_samples}`"
    )


def open_processor(
    bundle: Bundle | str,
    *,
    backend: str = "openvino",
    device: str = "auto",
    mode: str | None = None,
    hop_samples: int | None = None,
    strict: bool = False,
    aligned: bool = False,
    threads: int | None = None,
    available: list[str] | None = None,
    precision: str | None = None,
    variant: str | None = None,
) -> tuple[Processor, DeviceChoice | None]:
    """A ready processor and the device choice (None for the numpy backend).

    ``mode``: ``stateful`` or ``window`` (default: the bundle's own streaming mode).
    ``hop_samples``: default the bundle's hop. ``precision``: IR weights (``f32``/``f16``; default:
    what the device wants).
    """
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(bundle)
    m = bundle.manifest
    mode = mode or m.streaming.mode
    if mode not in ("stateful", "window"):
        raise ConfigError(f"mode must be 'stateful' or 'window', got {mode!r}")
    if mode == "window" and m.streaming.mode != "window":
        raise ConfigError("window mode needs a window-mode bundle (this one is stateful and has no window length)")
    hop = hop_samples or m.streaming.hop_samples
    if backend == "numpy":
        streaming = Streaming(mode, hop, m.streaming.window_samples if mode == "window" else 0)
        engine = NumpyEngine(m.architecture, bundle.weights, streaming,
                             input_gain=m.input_gain, output_gain=m.output_gain)
        return Processor(engine, m.architecture, m.sample_rate, aligned=aligned), None
    if backend != "openvino":
        raise ConfigError(f"unknown backend {backend!r}; choose openvino or numpy")
    choice = choose_device(device, mode=mode, available=available, strict=strict)
    if variant:
        if variant not in ("stateful", "explicit_state", "window"):
            raise ConfigError(f"unknown IR variant {variant!r}; choose stateful, explicit_state or window")
        if (variant == "window") != (mode == "window"):
            raise ConfigError(f"the {variant} IR does not have {mode} semantics; pass --mode to match")
        choice = DeviceChoice(choice.device, variant, choice.precision, choice.reason + f", variant {variant}")
    entry = find_ir(bundle, choice.variant, hop, precision or choice.precision)
    from . import ov_compat

    config = ov_compat.cpu_config(threads) if choice.device.upper().startswith("CPU") else {}
    engine = OpenVINOEngine(bundle.path / entry["xml"], choice.variant, m.architecture, hop,
                            device=choice.device, config=config, window_samples=entry["window_samples"])
    log.debug("device %s, IR %s (%s)", choice.device, entry["xml"], choice.reason)
    return Processor(engine, m.architecture, m.sample_rate, aligned=aligned), choice
