"""Open a streaming processor for a bundle: backend, device, IR variant and hop, checked."""

from __future__ import annotations

import logging

from .bundle import Bundle, read_bundle
from .devices import DeviceChoice, choose_device
from .engines import NumpyEngine, OpenVINOEngine, compile_ir
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


class ProcessorFactory:
    """Everything about running a bundle that is decided once: backend, device, IR variant, hop,
    and (for OpenVINO) the compiled model. :meth:`new` gives a fresh :class:`Processor` with its
    own state (its own InferRequest), cheaply: a service opens one per stream.

    ``mode``: ``stateful`` or ``window`` (default: the bundle's own streaming mode).
    ``hop_samples``: default the bundle's hop. ``precision``: IR weights (``f32``/``f16``; default:
    what the device wants). ``num_streams``: OpenVINO CPU streams, i.e. how many requests
    may run at the same time (a service sets it to its worker count). ``inference_precision``:
    the CPU plugin's execution precision (``bf16`` only where the CPU has it natively).
    """

    def __init__(
        self,
        bundle: Bundle | str,
        *,
        backend: str = "openvino",
        device: str = "auto",
        mode: str | None = None,
        hop_samples: int | None = None,
        strict: bool = False,
        threads: int | None = None,
        available: list[str] | None = None,
        precision: str | None = None,
        variant: str | None = None,
        num_streams: int = 1,
        inference_precision: str = "f32",
    ) -> None:
        if not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle)
        self.bundle = bundle
        m = bundle.manifest
        mode = mode or m.streaming.mode
        if mode not in ("stateful", "window"):
            raise ConfigError(f"mode must be 'stateful' or 'window', got {mode!r}")
        if mode == "window" and m.streaming.mode != "window":
            raise ConfigError("window mode needs a window-mode bundle (this one is stateful and has no window length)")
        self.mode = mode
        self.backend = backend
        self.hop_samples = hop_samples or m.streaming.hop_samples
        self.choice: DeviceChoice | None = None
        self.compiled = None
        if backend == "numpy":
            return
        if backend != "openvino":
            raise ConfigError(f"unknown backend {backend!r}; choose openvino or numpy")
        choice = choose_device(device, mode=mode, available=available, strict=strict)
        if variant:
            if variant not in ("stateful", "explicit_state", "window"):
                raise ConfigError(f"unknown IR variant {variant!r}; choose stateful, explicit_state or window")
            if (variant == "window") != (mode == "window"):
                raise ConfigError(f"the {variant} IR does not have {mode} semantics; pass --mode to match")
            choice = DeviceChoice(choice.device, variant, choice.precision, choice.reason + f", variant {variant}")
        self.entry = find_ir(bundle, choice.variant, self.hop_samples, precision or choice.precision)
        from . import ov_compat

        config = {}
        if choice.device.upper().startswith("CPU"):
            config = ov_compat.cpu_config(threads, inference_precision)
            config["NUM_STREAMS"] = str(int(num_streams))
        self.xml_path = bundle.path / self.entry["xml"]
        self.compiled = compile_ir(self.xml_path, choice.device, config)
        self.choice = choice
        log.debug("device %s, IR %s (%s)", choice.device, self.entry["xml"], choice.reason)

    @property
    def device(self) -> str:
        return self.choice.device if self.choice else "numpy"

    def new(self, *, aligned: bool = False) -> Processor:
        """A new processor with zero state and default knobs."""
        m = self.bundle.manifest
        if self.backend == "numpy":
            window = m.streaming.window_samples if self.mode == "window" else 0
            streaming = Streaming(self.mode, self.hop_samples, window)
            engine = NumpyEngine(m.architecture, self.bundle.weights, streaming,
                                 input_gain=m.input_gain, output_gain=m.output_gain)
        else:
            engine = OpenVINOEngine(self.xml_path, self.choice.variant, m.architecture, self.hop_samples,
                                    device=self.choice.device, window_samples=self.entry["window_samples"],
                                    compiled=self.compiled)
        return Processor(engine, m.architecture, m.sample_rate, aligned=aligned)


def open_processor(
    bundle: Bundle | str,
    *,
    aligned: bool = False,
    **options,
) -> tuple[Processor, DeviceChoice | None]:
    """A ready processor and the device choice (None for the numpy backend); ``options`` as
    for :class:`ProcessorFactory`."""
    factory = ProcessorFactory(bundle, **options)
    return factory.new(aligned=aligned), factory.choice
