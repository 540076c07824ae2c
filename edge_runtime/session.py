"""Open a model: the one code path from a bundle to streaming processors.

Every front end (``edgeamp.load``, render, live, bench, eval, serve, the demo, the training
pipeline's checks) describes what it wants in one :class:`RuntimeOptions` and gets a
:class:`ProcessorFactory`, which decides backend, device, IR variant and hop once, compiles
once, and hands out processors with their own state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeamp.core import reference
from edgeamp.core.bundle import Bundle, ExportRecord, read_bundle
from edgeamp.core.errors import BundleError, ConfigError
from edgeamp.core.metrics import esr
from edgeamp.core.model import Streaming, hop_from_ms

from .devices import DeviceChoice, choose_device
from .engines import NumpyEngine, OpenVINOEngine, compile_ir, initial_inputs
from .processor import Processor

log = logging.getLogger(__name__)

BACKENDS = ("auto", "native", "openvino", "numpy")
UNHASHED_CHECK_HOPS = 20  # hops of the golden input an IR without recorded hashes must reproduce
UNHASHED_ESR = 1e-3  # f16 weights or bf16 execution stay below 1e-3; a wrong or tampered graph is far above
VARIANT_NAMES = ("stateful", "explicit_state", "window")
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a bundle. Every field has a default that does the right thing on this machine.

    ``backend``: ``auto`` (on a CPU the native engine wherever it runs the model as asked, the
    faster path on every model measured, benchmarks/test_cpu_peers.py; OpenVINO on any other device
    and for what the native engine does not do), ``native`` (edgeamp's own CPU kernels: any hop, no
    IR needed), ``openvino`` (an exported IR), or ``numpy`` (the float64 reference: exact, slow).
    A rule, not a timing at open: two opens of one bundle run the same engine and give the same
    output bit for bit (a service stream equals an offline render).
    ``device``: ``auto`` (NPU > Myriad > GPU > CPU) or an OpenVINO device string.
    ``mode``: ``stateful`` or ``window`` semantics (default: the bundle's own).
    ``hop_samples`` / ``hop_ms``: the hop (at most one; default: the bundle's); an IR exported at
    that hop must exist. ``strict``: a missing device is an error instead of a CPU fallback.
    ``threads``: CPU inference threads. ``variant``: force an IR variant. ``precision``: IR
    weights (``f32``/``f16``; default what the device wants). ``inference_precision``: the CPU
    plugin's execution precision. ``num_streams``: requests that may run at once (a service sets
    its worker count). ``knobs``: knob values (own units) every new processor starts with.
    """

    backend: str = "auto"
    device: str = "auto"
    mode: str | None = None
    hop_samples: int | None = None
    hop_ms: float | None = None
    strict: bool = False
    threads: int | None = None
    variant: str | None = None
    precision: str | None = None
    inference_precision: str = "f32"
    num_streams: int = 1
    knobs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose {' or '.join(BACKENDS)}")
        if self.mode is not None and self.mode not in ("stateful", "window"):
            raise ConfigError(f"mode must be 'stateful' or 'window', got {self.mode!r}")
        if self.variant is not None and self.variant not in VARIANT_NAMES:
            raise ConfigError(f"unknown IR variant {self.variant!r}; choose {', '.join(VARIANT_NAMES)}")
        if self.precision is not None and self.precision not in ("f32", "f16"):
            raise ConfigError(f"precision must be f32 or f16, got {self.precision!r}")
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"inference_precision must be one of {INFERENCE_PRECISIONS}, "
                              f"got {self.inference_precision!r}")
        if self.hop_samples is not None and self.hop_ms is not None:
            raise ConfigError("give hop_samples or hop_ms, not both")
        if self.hop_samples is not None and (isinstance(self.hop_samples, bool) or int(self.hop_samples) < 1):
            raise ConfigError(f"hop_samples must be a positive number of samples, got {self.hop_samples!r}")
        if self.hop_ms is not None and not (math.isfinite(self.hop_ms) and self.hop_ms > 0):
            raise ConfigError(f"hop_ms must be a positive number of milliseconds, got {self.hop_ms!r}")
        if self.threads is not None and int(self.threads) < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads!r}")
        if int(self.num_streams) < 1:
            raise ConfigError(f"num_streams must be at least 1, got {self.num_streams!r}")

    def replace(self, **changes) -> RuntimeOptions:
        return dataclasses.replace(self, **changes)

    def hop_for(self, sample_rate: int) -> int | None:
        """The hop in samples at ``sample_rate`` (None: the bundle's own)."""
        if self.hop_samples is not None:
            return int(self.hop_samples)
        if self.hop_ms is not None:
            return hop_from_ms(self.hop_ms, sample_rate)
        return None


def find_ir(bundle: Bundle, variant: str, hop_samples: int, precision: str) -> ExportRecord:
    """The export record for (variant, hop, precision), falling back to the other weight precision."""
    exports = bundle.manifest.exports
    for prec in dict.fromkeys((precision, "f32", "f16")):
        for record in exports.values():
            if (record.variant, record.hop_samples, record.precision) == (variant, hop_samples, prec):
                return record
    have = sorted(f"{k} (hop {e.hop_samples})" for k, e in exports.items()) or ["none"]
    raise BundleError(
        f"{bundle.path}: no {variant} IR with a hop of {hop_samples} samples (have: {', '.join(have)}); run "
        f"`edgeamp export {bundle.path} --variants {variant} --hop-samples {hop_samples}`"
    )


class ProcessorFactory:
    """Everything about running a bundle that is decided once: backend, device, IR variant, hop,
    and (for OpenVINO) the compiled model. :meth:`new` gives a fresh :class:`Processor` with its
    own state (its own InferRequest), cheaply: a service opens one per stream.

    ``options``: a :class:`RuntimeOptions` (default: all defaults); keyword ``overrides`` replace
    its fields. ``available``: the device list to choose from (tests inject it).
    """

    def __init__(
        self,
        bundle: Bundle | str,
        options: RuntimeOptions | None = None,
        *,
        available: list[str] | None = None,
        **overrides,
    ) -> None:
        options = options or RuntimeOptions()
        if overrides:
            unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(RuntimeOptions)})
            if unknown:
                raise ConfigError(f"unknown runtime option(s) {unknown}")
            options = options.replace(**overrides)
        if not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle)
        self.bundle = bundle
        self.options = options
        m = bundle.manifest
        mode = options.mode or m.streaming.mode
        if mode == "window" and m.streaming.mode != "window":
            raise ConfigError("window mode needs a window-mode bundle (this one is stateful and has no window length)")
        self.mode = mode
        self.backend = options.backend
        self.hop_samples = options.hop_for(m.sample_rate) or m.streaming.hop_samples
        self.initial_knobs = self._checked_knobs(options.knobs)
        self.choice: DeviceChoice | None = None
        self.entry: ExportRecord | None = None
        self.compiled = None
        self.native_reason: str | None = None  # why auto left the model to OpenVINO
        if self.backend == "numpy":
            return
        if self.backend == "native":
            self._open_native()
            return
        choice = choose_device(options.device, mode=mode, available=available, strict=options.strict)
        if self.backend == "auto" and self._auto_native(choice):
            return
        variant = options.variant
        if variant:
            if (variant == "window") != (mode == "window"):
                raise ConfigError(f"the {variant} IR does not have {mode} semantics; pass --mode to match")
            choice = DeviceChoice(choice.device, variant, choice.precision, choice.reason + f", variant {variant}")
        self.entry = find_ir(bundle, choice.variant, self.hop_samples, options.precision or choice.precision)
        from . import ov_compat

        config = {}
        if choice.device.upper().startswith("CPU"):
            config = ov_compat.cpu_config(options.threads, options.inference_precision, options.num_streams)
        self.xml_path = bundle.checked_ir(self.entry)
        self.compiled = compile_ir(self.xml_path, choice.device, config)
        self.choice = choice
        if not self.entry.sha256:
            self._check_unhashed()
        log.debug("device %s, IR %s (%s)", choice.device, self.entry.xml, choice.reason)

    # -- the native engine ------------------------------------------------------------------------
    def _native_problem(self) -> str | None:
        """Why the native engine cannot run this bundle as asked; None when it can."""
        from . import native

        o = self.options
        if o.variant is not None:
            return f"an IR variant ({o.variant}) was asked for"
        if o.precision is not None:
            return f"{o.precision} IR weights were asked for"
        return native.unavailable_reason() or native.unsupported(self.bundle.manifest.architecture, self.mode,
                                                                  o.inference_precision)

    def _open_native(self) -> None:
        """``backend="native"``: the CPU, no IR; refused (not fallen back) when it cannot run."""
        device = self.options.device.upper()
        if device not in ("AUTO", "CPU"):
            raise ConfigError(f"the native engine runs on the CPU, not {self.options.device}; use --backend openvino "
                              "for other devices")
        problem = self._native_problem()
        if problem:
            raise ConfigError(f"--backend native: {problem}")
        self.choice = DeviceChoice("CPU", "native", "f32", "native engine asked for")  # f32: the weights' precision
        self._verify_native()

    def _auto_native(self, choice: DeviceChoice) -> bool:
        """auto: True when the native engine takes the model (the device chosen is a CPU and the native
        engine runs the model as asked); else OpenVINO does, and ``native_reason`` says why."""
        if not choice.device.upper().startswith("CPU"):
            self.native_reason = f"{choice.device} runs OpenVINO"
            return False
        problem = self._native_problem()
        if problem:
            self.native_reason = f"native engine not used: {problem}"
            log.debug(self.native_reason)
            return False
        self._openvino_choice = choice  # what a batched engine (OpenVINO only) runs on
        self.choice = DeviceChoice("CPU", "native", "f32", f"{choice.reason}; native engine")
        self._verify_native()
        return True

    def _verify_native(self) -> None:
        """The kernel was compiled on this machine: before it is used it must reproduce the model on the
        bundle's golden data (or the reference on noise), as an IR does at export."""
        m, g = self.bundle.manifest, self.bundle.golden
        hop = self.hop_samples
        n = min(g.input.shape[0] if g is not None else 0, UNHASHED_CHECK_HOPS * hop) // hop * hop
        if n:
            audio, knobs = g.input[:n].astype(np.float32), g.knobs[:n].astype(np.float32)
        else:
            n = UNHASHED_CHECK_HOPS * hop
            audio = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
            knobs = np.zeros((n, len(m.architecture.knobs)), np.float32)
        engine = self._engine()
        y = np.concatenate([engine.run_hop(audio[i : i + hop], knobs[i : i + hop]).copy() for i in range(0, n, hop)])
        engine.close()
        if g is not None and g.input.shape[0] >= n and m.streaming.mode == "stateful":
            ref = g.output[:n].astype(np.float64)  # the float64 reference's, stored at export
        else:
            x = np.concatenate([audio[:, None] * m.input_gain, knobs], axis=1)[None].astype(np.float64)
            ref = reference.run_stateful(m.architecture, self.bundle.weights, x)[0][0] * m.output_gain
        error = esr(ref, y)
        if not error <= UNHASHED_ESR:  # NaN too
            raise BundleError(f"{self.bundle.path}: the native engine does not reproduce the model (ESR {error:.2g} "
                              "against the reference); run with --backend openvino and report it")
        self.native_esr = error
        log.debug("native engine reproduced the reference: ESR %.1e over %d samples", error, n)

    def _check_unhashed(self) -> None:
        """An IR whose export recorded no hashes (an older edgeamp's, or a manifest edited by hand)
        cannot be checked file by file: it must reproduce the numpy reference on the bundle's golden
        input before it is used (a tampered or foreign IR is refused)."""
        m, g = self.bundle.manifest, self.bundle.golden
        hop = self.hop_samples
        n = min(g.input.shape[0] if g is not None else 0, UNHASHED_CHECK_HOPS * hop) // hop * hop
        where = f"{self.bundle.path}: {Path(self.entry.xml).name} has no hash recorded at export"
        if n == 0:
            raise BundleError(f"{where}, and no golden data to check it against; re-export the bundle")
        audio, knobs = g.input[:n].astype(np.float32), g.knobs[:n].astype(np.float32)
        engine = self._engine()
        y = np.concatenate([engine.run_hop(audio[i : i + hop], knobs[i : i + hop]).copy() for i in range(0, n, hop)])
        x = np.concatenate([audio[:, None] * m.input_gain, knobs], axis=1)[None].astype(np.float64)
        if self.mode == "window":
            ref = reference.run_window(m.architecture, self.bundle.weights, x, m.streaming.window_samples, hop)[0]
        else:
            ref = reference.run_stateful(m.architecture, self.bundle.weights, x)[0][0]
        error = esr(ref * m.output_gain, y)
        if not error <= UNHASHED_ESR:
            raise BundleError(f"{where} and does not reproduce the model (ESR {error:.2g} against the reference on "
                              "the golden input): tampered, or another bundle's IR; re-export the bundle")
        log.info("%s: IR without recorded hashes reproduced the reference (ESR %.1e over %d samples)",
                 self.bundle.path, error, n)

    def _checked_knobs(self, knobs: dict[str, float]) -> dict[str, float]:
        if not isinstance(knobs, dict):
            raise ConfigError(f"knobs must be a dict of name: value, got {type(knobs).__name__}")
        by_name = {k.name: k for k in self.bundle.manifest.architecture.knobs}
        out = {}
        for name, value in knobs.items():
            if name not in by_name:
                raise ConfigError(f"unknown knob {str(name)[:40]!r}; this model has: "
                                  f"{', '.join(by_name) or 'no knobs'}")
            out[name] = by_name[name].value_of(value)  # type and range checked, the range named
        return out

    @property
    def engine(self) -> str:
        """Which engine new processors run on: ``native``, ``openvino`` or ``numpy``."""
        if not self.choice:
            return "numpy"
        return "native" if self.choice.variant == "native" else "openvino"

    @property
    def device(self) -> str:
        return self.choice.device if self.choice else "numpy"

    @property
    def variant(self) -> str:
        return self.choice.variant if self.choice else "numpy"

    @property
    def precision(self) -> str:
        if self.engine == "native":
            return "f32"
        return self.entry.precision if self.entry else "f64"

    def describe(self) -> str:
        """``CPU (stateful IR, f32)`` or ``numpy reference``: where the model runs."""
        if not self.choice:
            return "numpy reference"
        if self.engine == "native":
            from . import native

            return f"CPU (native engine, {native.target()}, {self.options.inference_precision})"
        return f"{self.choice.device} ({self.choice.variant} IR, {self.entry.precision})"

    def batched_engine(self, *, max_batch: int = 32, wait_ms: float = 1.0, lanes: int = 1, on_tick=None):
        """A :class:`~edgeamp.edge_runtime.batching.BatchedEngine` on this bundle's ``batched`` IR
        (same device, hop and weight precision), for many streams at once; its slots go to
        :meth:`new`. BundleError when the bundle has no batched IR at this hop."""
        from .batching import BatchedEngine

        if self.backend not in ("openvino", "auto") or self.mode != "stateful":
            raise ConfigError("batching needs the OpenVINO backend and stateful streaming")
        device = getattr(self, "_openvino_choice", None) or self.choice
        record = find_ir(self.bundle, "batched", self.hop_samples, self.options.precision or "f32")
        from . import ov_compat

        config = {}
        if device.device.upper().startswith("CPU"):
            # one thread per lane, each lane a stream of its own: with NUM_STREAMS 1 the plugin ran the
            # lanes' requests one after another (two lanes measured 12 ms per tick against 6 alone)
            config = ov_compat.cpu_config(1, self.options.inference_precision, lanes)
        engine = BatchedEngine(self.bundle.checked_ir(record), self.bundle.manifest.architecture, self.hop_samples,
                               device=device.device, config=config, max_batch=max_batch, wait_ms=wait_ms,
                               lanes=lanes, on_tick=on_tick,
                               initial=initial_inputs(self.bundle.manifest.architecture, self.bundle.weights))
        engine.set_rate(self.bundle.manifest.sample_rate)
        return engine

    def _engine(self):
        """A hop engine of its own (own state): the numpy reference or a request on the compiled IR."""
        m = self.bundle.manifest
        if self.backend == "numpy":
            window = m.streaming.window_samples if self.mode == "window" else 0
            return NumpyEngine(m.architecture, self.bundle.weights, Streaming(self.mode, self.hop_samples, window),
                               input_gain=m.input_gain, output_gain=m.output_gain)
        if self.engine == "native":
            from .native import NativeEngine

            return NativeEngine(m.architecture, self.bundle.weights, self.hop_samples, input_gain=m.input_gain,
                                output_gain=m.output_gain, inference_precision=self.options.inference_precision)
        return OpenVINOEngine(self.xml_path, self.choice.variant, m.architecture, self.hop_samples,
                              device=self.choice.device, window_samples=self.entry.window_samples,
                              compiled=self.compiled, initial=initial_inputs(m.architecture, self.bundle.weights))

    def new(self, *, aligned: bool = False, engine=None) -> Processor:
        """A new processor with zero state and the options' knob values (applied without a ramp).
        ``engine``: run it on this hop engine instead (a BatchSlot of :meth:`batched_engine`)."""
        m = self.bundle.manifest
        proc = Processor(engine or self._engine(), m.architecture, m.sample_rate, aligned=aligned)
        if self.initial_knobs:
            proc.prepare(self.initial_knobs)
        return proc


def open_processor(
    bundle: Bundle | str,
    options: RuntimeOptions | None = None,
    *,
    aligned: bool = False,
    **overrides,
) -> tuple[Processor, DeviceChoice | None]:
    """A ready processor and the device choice (None for the numpy backend): a one-stream
    shortcut for ``ProcessorFactory(bundle, options, **overrides).new(aligned=aligned)``."""
    factory = ProcessorFactory(bundle, options, **overrides)
    return factory.new(aligned=aligned), factory.choice
