"""The model a service runs: its processor factory, batched engine and public description."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from edgeamp.core.bundle import read_bundle
from edgeamp.core.errors import ConfigError, EdgeampError, InputError

from ..processor import Processor
from ..session import ProcessorFactory, RuntimeOptions

log = logging.getLogger(__name__)


class Model:
    """One loaded bundle: its processor factory and what clients are told about it."""

    _versions = itertools.count(1)

    def __init__(self, path: Path | str, options: RuntimeOptions, batch: dict | None = None) -> None:
        bundle = read_bundle(path)
        self.factory = ProcessorFactory(bundle, options)
        self.bundle = bundle
        self.version = next(self._versions)
        self.sample_rate = bundle.manifest.sample_rate
        self.arch = bundle.manifest.architecture
        self.batched = None  # a BatchedEngine serving every stream of this model, when batching
        if batch is not None:
            try:
                self.batched = self.factory.batched_engine(**batch)
            except EdgeampError as exc:
                log.warning("%s: streams run unbatched (%s)", bundle.path.name, exc)

    def new_processor(self, aligned: bool) -> tuple[Processor, object]:
        """A processor for one stream and its batch slot (None when unbatched)."""
        if self.batched is None:
            return self.factory.new(aligned=aligned), None
        slot = self.batched.slot()
        return self.factory.new(aligned=aligned, engine=slot), slot

    def close(self) -> None:
        """Stop the batched engine's threads (the model serves no stream any more)."""
        if self.batched is not None:
            self.batched.close()
            self.batched = None

    def info(self) -> dict:
        m = self.bundle.manifest
        return {
            "bundle": str(self.bundle.path),
            "version": self.version,
            "sample_rate": m.sample_rate,
            "hop_samples": self.factory.hop_samples,
            "mode": self.factory.mode,
            "device": self.factory.device,
            "architecture": self.arch.summary(),
            "knobs": [{"name": k.name, "minimum": k.minimum, "maximum": k.maximum, "default": k.default}
                      for k in self.arch.knobs],
            "metrics": m.metrics,
            "batching": (f"batched: up to {self.batched.max_batch} hops per inference, {self.batched.lanes} "
                         f"lane(s), wait {1000 * self.batched.wait_s:g} ms" if self.batched else "unbatched"),
        }

    def check_knobs(self, knobs) -> dict[str, float]:
        """Validated knob values (names and ranges), or InputError naming the problem."""
        if not isinstance(knobs, dict):
            raise InputError(f"knobs must be an object of name: value, got {type(knobs).__name__}")
        by_name = {k.name: k for k in self.arch.knobs}
        out = {}
        for name, value in knobs.items():
            if name not in by_name:
                raise InputError(f"unknown knob {name!r}; this model has: {', '.join(by_name) or 'no knobs'}")
            try:
                out[name] = by_name[name].value_of(value)
            except ConfigError as exc:
                raise InputError(str(exc)) from exc
        return out
