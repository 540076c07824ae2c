"""Model presets: a registry of frozen training configs. Unknown names and keys are errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from edgeamp.core.config import from_dict
from edgeamp.core.errors import ConfigError
from edgeamp.core.model import Architecture, Knob, Streaming, ms_to_samples


@dataclass(frozen=True)
class TrainConfig:
    """How to build and train one model. Times in ms are converted at the data's sample rate.

    recipe ``window``: the original experiment: random crops of ``window_ms``, loss MSE on the
    last ``hop_ms`` of output. recipe ``stateful``: truncated backprop through time over
    ``chunk_samples`` chunks with LSTM state carried between chunks of the same stream for
    ``chunks_per_sequence`` chunks, after ``warmup_samples`` unscored samples from zero state;
    loss ESR after pre-emphasis (1 - 0.85 z^-1) plus ``dc_weight`` x the DC term.
    """

    name: str
    units: tuple[int, ...]
    head: bool
    skip: bool
    recipe: Literal["window", "stateful"]
    hop_ms: float = 10.0
    window_ms: float = 110.0
    batch_size: int = 16
    learning_rate: float = 1e-3
    chunk_samples: int = 2048
    chunks_per_sequence: int = 8
    warmup_samples: int = 1024
    dc_weight: float = 1.0
    # stateful recipe loss: "esr_pre" (ESR after 1 - 0.85 z^-1), "esr" (plain), or "esr+esr_pre" (their sum)
    loss: Literal["esr_pre", "esr", "esr+esr_pre"] = "esr_pre"
    val_fraction: float = 0.15
    val_every_steps: int = 50
    patience_checks: int = 20
    lr_decay_checks: int = 3  # halve the learning rate after this many validations without a new best
    min_learning_rate: float = 1e-4
    grad_clip_norm: float = 1.0
    xla: bool = False
    # knob-conditioned data: weigh each setting's sequences by 1 / its recordings' power, so that a
    # quiet setting counts as much as a loud one in the energy-normalised loss (no-op without knobs)
    balance_settings: bool = True
    cell: Literal["lstm", "gru"] = "lstm"  # the recurrent cell of every layer
    fir_taps: int = 0  # a learned FIR stage after the head (a cabinet's long linear response); 0: none

    def architecture(self, knobs: tuple[Knob, ...] = ()) -> Architecture:
        return Architecture(self.units, head=self.head, skip=self.skip, knobs=knobs, cell=self.cell,
                            fir_taps=self.fir_taps)

    def streaming(self, sample_rate: int) -> Streaming:
        hop = ms_to_samples(self.hop_ms, sample_rate, inexact="round")
        if self.recipe == "window":
            return Streaming("window", hop, ms_to_samples(self.window_ms, sample_rate, inexact="round",
                                                          what="window"))
        return Streaming("stateful", hop)


PRESETS: dict[str, TrainConfig] = {}


def register(config: TrainConfig) -> TrainConfig:
    if config.name in PRESETS:
        raise ConfigError(f"preset {config.name!r} is registered twice")
    PRESETS[config.name] = config
    return config


register(TrainConfig(
    name="seed",  # the original experiment, exactly: 64-64-1, 110 ms windows, last 10 ms scored, batch 16, MSE
    units=(64, 64, 1), head=False, skip=False, recipe="window",
    batch_size=16, learning_rate=1e-3, val_every_steps=20,
))
register(TrainConfig(
    name="stateful",  # the CPU default: one LSTM, dense head, TBPTT with carried state, ESR + DC loss
    # batch 64: 311k samples/s on 2 CPU cores vs 104k at batch 16 (XLA made it slower: measured).
    # 256-sample TBPTT chunks (8x more updates than 2048) with validation every 400 steps (about as much
    # audio between checks as before): real-amp B1_M3_T7, 8 min, held-out ESR 0.071 / 0.194 pre-emphasised
    # against 0.159 / 0.383 with 2048-sample chunks; 256 with validation every 25 steps stopped early at 0.129.
    units=(32,), head=True, skip=False, recipe="stateful",
    batch_size=64, learning_rate=5e-3, chunk_samples=256, chunks_per_sequence=64, warmup_samples=1024,
    val_every_steps=400,
))
register(dataclasses.replace(
    PRESETS["stateful"],
    name="cab",  # `stateful` + a learned 1024-tap FIR stage (a cabinet's or output transformer's long linear
    # response), and the loss weighs plain ESR too: the pre-emphasised ESR alone barely sees below 200 Hz.
    # Test clip file_5, 8 min, 2-core AVX-512 EPYC (README, "Quality against a peer"), plain / pre-emphasised
    # ESR: B10_M0_T0 0.0092 / 0.0114 (pre-emphasised loss only: 0.0194 / 0.0224; NAM's WaveNet lite 0.0203 /
    # 0.0284); B1_M3_T7 0.0190 / 0.0860 (0.0362 / 0.1804; WaveNet lite 0.0496 / 0.1837).
    fir_taps=1024,
    loss="esr+esr_pre",
))
register(TrainConfig(
    name="small",  # for CI and Pi-class boxes
    units=(12,), head=True, skip=False, recipe="stateful",
    batch_size=8, learning_rate=5e-3, chunk_samples=1024, chunks_per_sequence=4, warmup_samples=512,
    val_every_steps=25,
))


DEFAULT_PRESET = "cab"  # what `edgeamp train` and the demo train unless told: the best measured recipe


def get_preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    if not overrides:
        return PRESETS[name]
    from edgeamp.core.config import to_dict

    merged = {**to_dict(PRESETS[name]), **overrides}
    return from_dict(TrainConfig, merged, f"preset {name}")
