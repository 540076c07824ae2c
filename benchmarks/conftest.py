"""Benchmark fixtures: the seed topology (64-64-1) at 48 kHz, exported. Not collected by `make test`."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def make_bundle(path, units=(64, 64, 1), mode="stateful", head=False, seed=0, hop=480):
    from edgeamp.core.bundle import Bundle, Manifest, write_bundle
    from edgeamp.core.model import Architecture, Streaming, random_weights
    from edgeamp.export.exporter import export_bundle

    arch = Architecture(tuple(units), head=head)
    streaming = Streaming("window", hop, 5280) if mode == "window" else Streaming("stateful", hop)
    write_bundle(path, Bundle(Manifest(48000, arch, streaming), random_weights(arch, seed=seed, scale=1.0)))
    return export_bundle(path, verify_seconds=0.5, window_verify_seconds=0.1)


@pytest.fixture(scope="session")
def seed_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return {mode: make_bundle(root / f"seed-{mode}.bundle", mode=mode) for mode in ("stateful", "window")}


PRESET_UNITS = {"seed": ((64, 64, 1), False), "stateful": ((32,), True), "small": ((12,), True)}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """(preset, mode, hop_samples) -> exported bundle."""
    root = tmp_path_factory.mktemp("runtime")
    cache = {}

    def get(preset: str, mode: str = "stateful", hop: int = 480):
        key = (preset, mode, hop)
        if key not in cache:
            units, head = PRESET_UNITS[preset]
            cache[key] = make_bundle(root / f"{preset}-{mode}-{hop}.bundle", units=units, head=head, mode=mode,
                                     hop=hop)
        return cache[key]

    return get
