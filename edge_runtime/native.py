"""The native CPU engine: edgeamp's own C++ kernels (``native/kernel.cpp``) for both model families.

OpenVINO's cost per call and per graph node dominates the small models captures are (docs/DESIGN.md,
"CPU speed"), so on a CPU a hop runs faster through a small compiled kernel that keeps the model's
state in place. The kernel is built when edgeamp is installed, with the system's C++ compiler, for
the CPU it is installed on (``-march=native``; ``EDGEAMP_NATIVE_MARCH`` names another target, e.g.
``x86-64-v3`` for an image that runs elsewhere). Without a compiler the install still succeeds and
edgeamp runs OpenVINO only (:func:`unavailable_reason` says why, in one line).

It is called through ctypes with a C ABI (no Python headers needed to build it), and ctypes lets go
of the GIL for the call: streams on other threads compute at the same time.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgeamp.core.errors import DeviceError
from edgeamp.core.model import Architecture

LIBRARY = "libedgeamp_native.so.1"  # setup.py builds it beside this module (a library name: not importable)
# activation codes, as kernel.cpp's enum Act numbers them
ACTIVATIONS = {"": 0, "tanh": 1, "relu": 2, "sigmoid": 3, "elu": 4, "softmax": 5, "prelu": 6,
               "Tanh": 1, "ReLU": 2, "Sigmoid": 3, "ELU": 4, "Hardtanh": 7, "LeakyReLU": 8, "SiLU": 9,
               "Softsign": 10, "Hardswish": 11, "Hardsigmoid": 12}
_P = ctypes.c_void_p
_F = ctypes.POINTER(ctypes.c_float)


def library_path() -> Path | None:
    """The built kernel (``libedgeamp_native.so.1`` beside this module), or None when none was built."""
    env = os.environ.get("EDGEAMP_NATIVE_LIBRARY")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parent / LIBRARY
    return candidate if candidate.is_file() else None


@lru_cache(maxsize=1)
def _load():
    """``(library, None)`` or ``(None, why not)``."""
    if os.environ.get("EDGEAMP_NATIVE", "").lower() in ("0", "off", "no"):
        return None, "switched off by EDGEAMP_NATIVE=0"
    path = library_path()
    if path is None:
        return None, ("the native CPU engine was not built at install (no C++ compiler then?); "
                      "reinstall with g++ present (`pip install -e .` again), OpenVINO runs meanwhile")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return None, f"the native CPU engine at {path} does not load: {exc}"
    lib.ea_create.restype = _P
    lib.ea_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float]
    lib.ea_destroy.argtypes = [_P]
    lib.ea_add_recurrent.argtypes = [_P, ctypes.c_int, ctypes.c_int, ctypes.c_int, _F, _F, _F, _F, _F]
    lib.ea_add_dense.argtypes = [_P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, _F, _F, ctypes.c_int, _F]
    lib.ea_add_fir.argtypes = [_P, ctypes.c_int, _F]
    lib.ea_set_skip.argtypes = [_P, ctypes.c_int]
    lib.ea_set_bf16.argtypes = [_P, ctypes.c_int]
    lib.ea_add_wavenet_array.argtypes = ([_P] + [ctypes.c_int] * 5 + [ctypes.POINTER(ctypes.c_int)]
                                         + [ctypes.c_int] * 2 + [_F] * 9)
    lib.ea_set_head_scale.argtypes = [_P, ctypes.c_float]
    lib.ea_finalize.argtypes = [_P]
    lib.ea_reset.argtypes = [_P]
    lib.ea_run.argtypes = [_P, _P, _P, _P]
    lib.ea_target.restype = ctypes.c_char_p
    for name in ("ea_add_recurrent", "ea_add_dense", "ea_add_fir", "ea_add_wavenet_array", "ea_set_head_scale",
                 "ea_finalize", "ea_run", "ea_has_bf16", "ea_set_bf16"):
        getattr(lib, name).restype = ctypes.c_int
    return lib, None


def unavailable_reason() -> str | None:
    """None when the native engine is there; else why not (one line)."""
    return _load()[1]


def target() -> str | None:
    """The vector unit the kernel was built for (``avx512``, ``avx2``...), None without the kernel."""
    lib, _ = _load()
    return lib.ea_target().decode() if lib is not None else None


def bf16_reason(arch=None) -> str | None:
    """None when the native engine can run ``arch`` (or any recurrent model) with bf16 execution;
    else why not. bf16 there means the recurrent layers' step products (weights and the step's
    input rounded to bf16, float32 sums), on a CPU with AVX512_BF16; everything else stays f32."""
    lib, why = _load()
    if lib is None:
        return why
    if not lib.ea_has_bf16():
        return "bf16 execution needs a CPU with AVX512_BF16 and a kernel built for it (this one was not)"
    if arch is not None and arch.family != "recurrent":
        return f"the native engine runs bf16 for recurrent models only ({arch.family}: f32)"
    return None


def unsupported(arch, mode: str = "stateful", inference_precision: str = "f32") -> str | None:
    """None when the native engine runs this model in this streaming mode and precision; else why not."""
    if mode != "stateful":
        return "the native engine runs stateful streaming only (window semantics: OpenVINO)"
    if arch.family not in ("recurrent", "wavenet"):
        return f"the native engine does not run the {arch.family} family"
    if inference_precision == "bf16":
        return bf16_reason(arch)
    if inference_precision != "f32":
        return f"{inference_precision} execution was asked for (the native engine runs f32, and bf16 on some CPUs)"
    return None


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(_F)


class NativeEngine:
    """One stream on the native kernel: its own weights copy and state (a few KB to a MB), hop fixed
    at construction, float32 throughout. Follows :class:`~edgeamp.edge_runtime.engines.HopEngine`;
    ``run_hop`` allocates nothing."""

    variant = "native"

    def __init__(self, arch, weights, hop_samples: int, *, input_gain: float = 1.0, output_gain: float = 1.0,
                 inference_precision: str = "f32") -> None:
        lib, why = _load()
        if lib is None:
            raise DeviceError(why)
        reason = unsupported(arch, inference_precision=inference_precision)
        if reason:
            raise DeviceError(reason)
        self.arch = arch
        self.hop_samples = int(hop_samples)
        self._lib = lib
        self._keep: list[np.ndarray] = []  # arrays passed at build time (copied by the kernel; kept for safety)
        self._handle = lib.ea_create(self.hop_samples, len(arch.knobs), float(input_gain), float(output_gain))
        if not self._handle:
            raise DeviceError(f"the native engine refused a hop of {hop_samples} samples with {len(arch.knobs)} knobs")
        self.inference_precision = inference_precision
        try:
            if inference_precision == "bf16":
                self._check(lib.ea_set_bf16(self._handle, 1), "bf16")
            if arch.family == "wavenet":
                self._build_wavenet(arch, weights)
            else:
                self._build_recurrent(arch, weights)
            self._check(lib.ea_finalize(self._handle), "finalize")
        except BaseException:
            self.close()
            raise
        self._keep.clear()
        self._audio = np.zeros(self.hop_samples, np.float32)
        self._knobs = np.zeros((self.hop_samples, max(1, len(arch.knobs))), np.float32)
        self._out = np.zeros(self.hop_samples, np.float32)
        # the call's arguments made once: a hop converts nothing
        self._args = (_P(self._handle), _P(self._audio.ctypes.data), _P(self._knobs.ctypes.data),
                      _P(self._out.ctypes.data))
        self._run = lib.ea_run

    def _f32(self, a) -> np.ndarray:
        out = np.ascontiguousarray(np.asarray(a, np.float32))
        self._keep.append(out)
        return out

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise DeviceError(f"the native engine refused the model at {what} ({self.arch.describe()})")

    def _dense(self, n_in: int, d) -> int:
        kernel = self._f32(d.kernel)
        k = 1 if kernel.ndim == 2 else kernel.shape[0]
        units = kernel.shape[-1]
        alpha = self._f32(d.alpha) if d.alpha is not None else None
        self._check(self._lib.ea_add_dense(self._handle, n_in, units, k, int(d.dilation), _ptr(kernel),
                                           _ptr(self._f32(d.bias)), ACTIVATIONS[d.activation], _ptr(alpha)),
                    f"dense {d.activation or 'linear'}")
        return units

    def _build_recurrent(self, arch: Architecture, w) -> None:
        n_in = arch.input_channels
        for d in w.front:
            n_in = self._dense(n_in, d)
        for layer in w.layers:
            units = layer.units
            h0 = self._f32(layer.h0) if arch.initial_state and layer.h0 is not None else None
            c0 = self._f32(layer.c0) if arch.initial_state and layer.c0 is not None else None
            self._check(self._lib.ea_add_recurrent(self._handle, int(arch.cell == "lstm"), n_in, units,
                                                   _ptr(self._f32(layer.kernel)),
                                                   _ptr(self._f32(layer.recurrent_kernel)),
                                                   _ptr(self._f32(layer.bias)), _ptr(h0), _ptr(c0)),
                        f"{arch.cell} {units}")
            n_in = units
        for d in w.hidden:
            n_in = self._dense(n_in, d)
        if w.head_kernel is not None:
            from edgeamp.core.model import DenseWeights

            n_in = self._dense(n_in, DenseWeights(w.head_kernel, w.head_bias))
        if w.fir_taps is not None:
            taps = self._f32(w.fir_taps)
            self._check(self._lib.ea_add_fir(self._handle, taps.shape[0], _ptr(taps)), "fir")
        self._lib.ea_set_skip(self._handle, int(arch.skip))

    def _build_wavenet(self, arch, w) -> None:
        for i, a in enumerate(arch.arrays):
            p = f"wavenet/a{i}"
            layers = [f"{p}/l{j}" for j in range(len(a.dilations))]
            def stack(name: str, layers=layers) -> np.ndarray:
                return self._f32(np.concatenate([np.asarray(w[f"{q}/{name}"], np.float32).ravel() for q in layers]))

            histories = [np.asarray(w[f"{q}/h0"], np.float32).ravel() for q, d in zip(layers, a.dilations)
                         if arch.initial_state and a.history(d)]
            h0 = self._f32(np.concatenate(histories)) if histories else None
            dilations = (ctypes.c_int * len(a.dilations))(*a.dilations)
            head_b = self._f32(w[f"{p}/head_b"]) if a.head_bias else None
            self._check(self._lib.ea_add_wavenet_array(
                self._handle, a.input_size, a.channels, a.head_size, a.kernel_size, len(a.dilations), dilations,
                ACTIVATIONS[a.activation], int(a.gated), _ptr(self._f32(w[f"{p}/rechannel"])), _ptr(stack("conv_w")),
                _ptr(stack("conv_b")), _ptr(stack("mixer")), _ptr(stack("out_w")), _ptr(stack("out_b")), _ptr(h0),
                _ptr(self._f32(w[f"{p}/head_w"])), _ptr(head_b)), f"layer array {i}")
        self._check(self._lib.ea_set_head_scale(self._handle, float(np.asarray(w["wavenet/head_scale"])[0])),
                    "head scale")

    def reset(self) -> None:
        if self._handle:
            self._lib.ea_reset(self._handle)

    def run_hop(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        if not self._handle:
            raise DeviceError("this native engine was closed")
        self._audio[:] = audio
        if self.arch.knobs:
            self._knobs[:] = knobs
        self.compute()
        return self._out

    def compute(self) -> None:
        """The kernel alone on its current buffers (what ``edgeamp bench`` times as the device's part)."""
        if not self._handle:
            raise DeviceError("this native engine was closed")
        self._run(*self._args)

    def close(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.ea_destroy(handle)

    def __del__(self) -> None:
        self.close()
