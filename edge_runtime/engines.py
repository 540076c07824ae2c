"""Hop engines: run exactly one hop of ``hop_samples`` through a model.

An engine owns its state and its buffers; ``run_hop`` copies the hop in, computes, and
returns a view of its internal output buffer (valid until the next call). Processors
(``edgeamp.edge_runtime.processor``) put block buffering on top.

- :class:`NumpyEngine`: the reference, both streaming modes, float64 by default;
- :class:`OpenVINOEngine`: an exported IR variant on any OpenVINO device. ``stateful``
  keeps state in the graph, ``explicit_state`` (Myriad) has the engine carry the state
  tensors, ``window`` has the engine keep the input history;
- :class:`~edgeamp.edge_runtime.batching.BatchSlot`: one stream's row of a batched IR.

Every engine follows :class:`HopEngine` (tests/edge_runtime/test_engine_contract.py runs one set of
checks on each): the processor, the service and verification know engines through it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from edgeamp.core import reference
from edgeamp.core.errors import DeviceError
from edgeamp.core.model import Architecture, ModelWeights, Streaming, state_name

from . import ov_compat


@runtime_checkable
class HopEngine(Protocol):
    """What a processor drives. ``hop_samples``: the length of every hop. ``reset()``: back to the
    model's start state (zeros, or a stored start state), as if new. ``run_hop(audio, knobs)``: one
    hop of pre-gain audio ``(hop,)`` and normalised knob inputs ``(hop, n_knobs)`` in; the output
    ``(hop,)`` back, a view valid until the next call (real-time engines allocate nothing per hop).
    ``close()``: give up what the engine holds (an inference request, a batch row); idempotent."""

    hop_samples: int

    def reset(self) -> None: ...

    def run_hop(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class NumpyEngine:
    """Reference engine. ``audio`` is pre-gain input; gains are applied here as in the IR."""

    def __init__(
        self,
        arch: Architecture,
        weights: ModelWeights,
        streaming: Streaming,
        *,
        input_gain: float = 1.0,
        output_gain: float = 1.0,
        dtype: type = np.float64,
    ) -> None:
        self.arch = arch
        self.weights = weights.astype(dtype)
        self.streaming = streaming
        self.hop_samples = streaming.hop_samples
        self.input_gain = input_gain
        self.output_gain = output_gain
        self.dtype = dtype
        context = streaming.window_samples if streaming.mode == "window" else streaming.hop_samples
        self._x = np.zeros((1, context, arch.input_channels), dtype)
        self._out = np.zeros(self.hop_samples, np.float32)
        self.reset()

    def reset(self) -> None:
        self._x[:] = 0.0
        self._state = reference.initial_state(self.arch, self.weights, 1, self.dtype)

    def run_hop(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        hop = self.hop_samples
        if self.streaming.mode == "window":
            self._x[0, :-hop] = self._x[0, hop:]
        self._x[0, -hop:, 0] = audio
        self._x[0, -hop:, 0] *= self.input_gain
        self._x[0, -hop:, 1:] = knobs
        if self.streaming.mode == "window":
            y, _ = reference.forward(self.weights, self._x,
                                     reference.initial_state(self.arch, self.weights, 1, self.dtype),
                                     skip=self.arch.skip)
        else:
            y, self._state = reference.forward(self.weights, self._x, self._state, skip=self.arch.skip)
        self._out[:] = y[0, -hop:] * self.output_gain
        return self._out

    def close(self) -> None:
        """Nothing to release: the reference holds numpy arrays only."""


def initial_inputs(arch: Architecture, weights: ModelWeights) -> dict[str, np.ndarray]:
    """The start state of an explicit-state or batched graph, by input name (``h_in0``...), float32,
    each flat (its width in ``arch.state_sizes()``): empty for a model that starts from zeros. Any
    model family: the values are the reference's own start state."""
    if not arch.initial_state:
        return {}
    values = [v for entry in reference.initial_state(arch, weights, 1, np.float64) for v in entry]
    return {state_name(kind, i, "in"): np.asarray(value, np.float32).reshape(-1)
            for (kind, i, _), value in zip(arch.state_sizes(), values)}


def compile_ir(xml_path: Path | str, device: str = "CPU", config: dict[str, str] | None = None):
    """Compile an IR file for ``device``; errors name the file and the device."""
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise DeviceError(f"IR not found: {xml_path} (run `edgeamp export` on the bundle)")
    if config is None:
        config = ov_compat.cpu_config() if device.upper().startswith("CPU") else {}
    try:
        return ov_compat.core().compile_model(str(xml_path), device, config)
    except RuntimeError as exc:
        raise DeviceError(f"OpenVINO could not compile {xml_path.name} for {device}: {exc}") from exc


class OpenVINOEngine:
    """One compiled IR variant and one InferRequest; tensors allocated once and written in place.

    ``compiled``: an already compiled model of ``xml_path`` to take a new InferRequest from
    (many streams share one compiled model; each has its own request and state).
    """

    def __init__(
        self,
        xml_path: Path | str,
        variant: str,
        arch: Architecture,
        streaming_hop: int,
        *,
        device: str = "CPU",
        config: dict[str, str] | None = None,
        window_samples: int = 0,
        compiled=None,
        initial: dict[str, np.ndarray] | None = None,
    ) -> None:
        xml_path = Path(xml_path)
        self.variant = variant
        # the state a reset starts from, by input name (``h_in0``...), each (U,); zeros where absent
        self._initial = dict(initial or {})
        self.arch = arch
        self.hop_samples = streaming_hop
        self.device = device
        self.compiled = compiled if compiled is not None else compile_ir(xml_path, device, config)
        self.request = self.compiled.create_infer_request()
        self._audio = self.request.get_tensor("audio").data
        self._knobs = self.request.get_tensor("knobs").data if arch.knobs else None
        self._output = self.request.get_tensor("output").data
        self._state_pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._state_names: list[str] = []
        if variant == "explicit_state":
            for kind, i, _ in arch.state_sizes():
                self._state_pairs.append((self.request.get_tensor(state_name(kind, i, "in")).data,
                                          self.request.get_tensor(state_name(kind, i, "out")).data))
                self._state_names.append(state_name(kind, i, "in"))
        self._knobs_tail = (np.zeros((self._knobs.shape[1] - streaming_hop, self._knobs.shape[2]), np.float32)
                            if self._knobs is not None and variant == "window" else None)
        expected = window_samples if variant == "window" else streaming_hop
        if self._audio.shape != (1, expected):
            raise DeviceError(
                f"{xml_path.name} takes audio {tuple(self._audio.shape)}, expected (1, {expected}) "
                f"for the {variant} variant with hop {streaming_hop}"
            )
        self.reset()

    def reset(self) -> None:
        self._audio[:] = 0.0
        if self._knobs is not None:
            self._knobs[:] = 0.0
        for (state_in, _), name in zip(self._state_pairs, self._state_names):
            state_in[:] = self._initial[name].reshape(state_in.shape) if name in self._initial else 0.0
        if self.variant == "stateful":
            for state in self.request.query_state():
                state.reset()
            if self._initial:
                # reset() returns a variable to its ReadValue initial value on current OpenVINO but to
                # zeros on 2022.3 (measured: 0.013 max error on a stored start state): set it explicitly
                self.set_state(tuple((self._initial[state_name(kind, i, "in")],) if state_name(kind, i, "in")
                                     in self._initial else (np.zeros(width, np.float32),)
                                     for kind, i, width in self.arch.state_sizes()))

    def set_state(self, state) -> None:
        """Start the next hop from ``state`` (a reference State: per layer ``(h, c)`` or ``(h,)``, each
        ``(1, U)``, then a FIR stage's ``(history,)``; a shorter tuple sets the first tensors only):
        what verification uses to compare one hop at a time. Not for the window variant (no state)."""
        values = [v for entry in state for v in entry]
        if self.variant == "explicit_state":
            for (state_in, _), value in zip(self._state_pairs, values):
                state_in[:] = np.asarray(value, np.float32).reshape(state_in.shape)
        elif self.variant == "stateful":
            by_name = {v.get_name() if hasattr(v, "get_name") else v.name: v for v in self.request.query_state()}
            ov = ov_compat.ov()
            for (kind, i, _), value in zip(self.arch.state_sizes(), values):
                var = by_name[state_name(kind, i)]
                shape = tuple(var.state.shape)  # each variable keeps the shape its graph gave it
                var.state = ov.Tensor(np.ascontiguousarray(np.asarray(value, np.float32).reshape(shape)))
        else:
            raise DeviceError("the window variant has no state to set")

    def run_hop(self, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
        hop = self.hop_samples
        if self.variant == "window":
            self._audio[0, :-hop] = self._audio[0, hop:]  # overlapping, 1-D: numpy moves it in place
            if self._knobs is not None:  # overlapping, 2-D: numpy would copy through a new temporary
                self._knobs_tail[:] = self._knobs[0, hop:]
                self._knobs[0, :-hop] = self._knobs_tail
        self._audio[0, -hop:] = audio
        if self._knobs is not None:
            self._knobs[0, -hop:] = knobs
        self.compute()
        for state_in, state_out in self._state_pairs:
            state_in[:] = state_out
        return self._output[0]

    def compute(self) -> None:
        """The inference alone on the request's current tensors (what ``edgeamp bench`` times as the
        device's part of a hop). start_async + wait: runs in place and returns nothing (infer() would
        copy the outputs)."""
        self.request.start_async()
        self.request.wait()

    def close(self) -> None:
        """Drop the inference request (the compiled model is shared and stays)."""
        self.request = None
