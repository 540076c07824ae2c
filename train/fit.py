"""The fit loop: both recipes, budget in steps and minutes, validation ESR, early stopping,
checkpoints and resume, Ctrl-C that keeps the best model."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeamp.core.errors import ConfigError, EdgeampError
from edgeamp.core.metrics import esr
from edgeamp.core.model import Architecture, ModelWeights
from edgeamp.core.progress import enabled as progress_enabled

from .dataset import Sampler, Segment
from .presets import TrainConfig
from .recipes import make_recipe
from .schedule import ValidationSchedule

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    weights: ModelWeights  # the best weights (by validation ESR)
    history: dict[str, list] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    samples_per_second: float = 0.0
    best_val_esr: float = float("inf")
    stopped_by: str = ""


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what native code prints on file descriptor 2 while TensorFlow loads (its oneDNN banner
    comes from absl before logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot silence it), unless the
    command runs with -v (EDGEAMP_VERBOSE)."""
    if os.environ.get("EDGEAMP_VERBOSE"):
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _quiet_native_stderr():
            import keras
            import tensorflow as tf
    except ImportError as exc:
        raise EdgeampError("training needs TensorFlow and Keras: pip install 'edgeamp[train]'") from exc
    return tf, keras


STRATEGIES = ("mirrored", "multi_worker")


def configure_cpu_replicas(count: int) -> None:
    """Split the CPU into ``count`` logical devices so that MirroredStrategy can be exercised
    without GPUs. Must run before TensorFlow initialises its devices (before any op)."""
    tf, _ = _tf()
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def progress_budget(steps: int | None, minutes: float | None) -> tuple[int, str]:
    """What the training progress bar counts: steps where the budget is in steps (its ETA from the
    step rate), else the seconds of a --minutes budget, so that the bar shows the time left (it had no
    total, hence no ETA)."""
    if steps:
        return steps, "step"
    return int(round(minutes * 60)), "s"


def _make_strategy(tf, name: str | None):
    if name is None:
        return None
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")


def _weights_of(model, arch: Architecture, initial: ModelWeights | None = None) -> ModelWeights:
    from .models import weights_from_keras

    return weights_from_keras(model, arch, initial)


def _set_weights(model, arch: Architecture, weights: ModelWeights) -> None:
    from .models import set_keras_weights

    set_keras_weights(model, arch, weights)


class Checkpoints:
    """``DIR/state.json``, ``DIR/last.npz``, ``DIR/best.npz``, ``DIR/optimizer.npz`` (written atomically)."""

    def __init__(self, directory: Path | None) -> None:
        self.dir = directory

    def save(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.dir / f"{name}.npz")

    def save_state(self, state: dict) -> None:
        if self.dir is None:
            return
        tmp = self.dir / ".state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.dir / "state.json")

    def load(self) -> tuple[dict, dict, dict, dict]:
        if self.dir is None or not (self.dir / "state.json").is_file():
            raise ConfigError(f"nothing to resume: no checkpoint in {self.dir}")
        state = json.loads((self.dir / "state.json").read_text())
        load = lambda n: dict(np.load(self.dir / f"{n}.npz"))  # noqa: E731
        return state, load("last"), load("best"), load("optimizer")


def fit(
    config: TrainConfig,
    arch: Architecture,
    train: list[Segment],
    val: list[Segment],
    sample_rate: int,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    strategy: str | None = None,
    init: ModelWeights | None = None,
) -> FitResult:
    """Train; returns the best weights. Ctrl-C stops cleanly (the best model so far is returned).

    The recipe (:mod:`.recipes`) draws and steps batches and predicts validation pieces; the
    learning-rate halving and early stopping are Keras' callbacks (:mod:`.schedule`); this loop
    holds the budget, validation, checkpoints and resume, and the progress bar.

    ``init``: start from these weights (fine-tuning, e.g. an imported capture) instead of Keras'
    initialisers; a stored start state (a NAM LSTM's) is kept as it is (TBPTT starts each
    sequence from zeros and a warm-up, so it is not trained).

    ``strategy="mirrored"``: synchronous data parallelism (tf.distribute.MirroredStrategy) over
    every visible GPU, or over the logical CPU devices set up by :func:`configure_cpu_replicas`.
    The batch is split across replicas; each replica carries the LSTM state of its own streams.
    Multi-worker training uses ``strategy="multi_worker"`` with ``TF_CONFIG`` set on each worker.
    """
    if not steps and not minutes:
        raise ConfigError("give a budget: steps and/or minutes")
    tf, keras = _tf()
    dist = _make_strategy(tf, strategy)
    replicas = dist.num_replicas_in_sync if dist else 1
    if config.batch_size % replicas:
        raise ConfigError(f"batch size {config.batch_size} does not split over {replicas} replicas")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    streaming = config.streaming(sample_rate)
    with dist.scope() if dist else contextlib.nullcontext():
        recipe = make_recipe(tf, keras, config, arch, streaming.hop_samples, streaming.window_samples, dist)
        if init is not None:
            _set_weights(recipe.model, arch, init)
    model, optimizer, batch = recipe.model, recipe.optimizer, config.batch_size
    sampler = Sampler(train, recipe.crop, rng, balance=config.balance_settings)
    vx, vy = recipe.validation_set(val, sample_rate, batch)  # fixed for the whole run

    def validate() -> float:
        return esr(vy, np.concatenate([recipe.predict(vx[lo : lo + 64], vy.shape[1])
                                       for lo in range(0, vx.shape[0], 64)]))

    ckpt = Checkpoints(checkpoint_dir)
    history: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_esr": [], "seconds": []}
    step = 0
    best = float("inf")
    best_weights = _weights_of(model, arch, init)
    elapsed_before = 0.0
    if resume:
        state, last, best_arrays, opt = ckpt.load()
        same_config = state.get("config") == json.loads(json.dumps(asdict(config)))
        if not same_config or state.get("architecture") != arch.units.__repr__():
            raise ConfigError(f"checkpoint in {checkpoint_dir} was made with another preset or architecture")
        _set_weights(model, arch, ModelWeights.from_arrays(arch, last))
        best_weights = ModelWeights.from_arrays(arch, best_arrays)
        for var, value in zip(optimizer.variables, [opt[f"v{i}"] for i in range(len(opt))]):
            var.assign(value)
        step, best, history, elapsed_before = state["step"], state["best"], state["history"], state["elapsed"]
        rng.bit_generator.state = state["rng"]
        log.info("resumed from step %d (best validation ESR %.4g)", step, best)
    schedule = ValidationSchedule(keras, optimizer, lr_decay_checks=config.lr_decay_checks,
                                  patience_checks=config.patience_checks, min_learning_rate=config.min_learning_rate,
                                  best=best)

    def save_checkpoint():
        ckpt.save("last", _weights_of(model, arch, init).to_arrays())
        ckpt.save("best", best_weights.to_arrays())
        ckpt.save("optimizer", {f"v{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
        ckpt.save_state({"step": step, "best": best, "history": history, "elapsed": elapsed + elapsed_before,
                         "rng": rng.bit_generator.state, "config": asdict(config),
                         "architecture": arch.units.__repr__()})

    max_steps = (step + steps) if steps else None
    deadline = time.monotonic() + minutes * 60 if minutes else None
    stopped_by = "budget"
    samples = 0
    t0 = time.monotonic()
    elapsed = 0.0
    bar = None
    if progress_enabled():
        from tqdm import tqdm

        total, unit = progress_budget(steps, minutes)
        bar = tqdm(total=total, desc=f"train {config.name}", unit=unit, dynamic_ncols=True)
    try:
        while (max_steps is None or step < max_steps) and (deadline is None or time.monotonic() < deadline):
            loss, n = recipe.step(sampler, batch)
            samples += n
            if not np.isfinite(loss):
                raise EdgeampError(f"loss became {loss} at step {step}; lower the learning rate")
            step += 1
            history["step"].append(step)
            history["loss"].append(loss)
            elapsed = time.monotonic() - t0
            history["seconds"].append(elapsed + elapsed_before)
            if step % config.val_every_steps == 0:
                v = validate()
                history["val_step"].append(step)
                history["val_esr"].append(v)
                if v < best:
                    best, best_weights = v, _weights_of(model, arch, init)
                stop = schedule.update(v, step)
                if schedule.lr_changes:  # halvings go into the history (and with it into checkpoints)
                    history.setdefault("lr_changes", []).extend(schedule.lr_changes)
                    schedule.lr_changes.clear()
                save_checkpoint()
                if stop:
                    stopped_by = "early stopping"
                    break
            if bar is not None:  # a time budget counts seconds (its ETA is the deadline), a step budget steps
                bar.update(1 if bar.unit == "step" else min(int(elapsed), bar.total) - bar.n)
                bar.set_postfix(step=step, loss=f"{loss:.4g}", val_esr=f"{best:.4g}" if np.isfinite(best) else "-")
    except KeyboardInterrupt:
        stopped_by = "interrupted (Ctrl-C): keeping the best model so far"
        log.warning("interrupted at step %d: keeping the best model so far", step)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - t0
    if step and (not history["val_step"] or history["val_step"][-1] != step):
        v = validate()
        history["val_step"].append(step)
        history["val_esr"].append(v)
        if v < best:
            best, best_weights = v, _weights_of(model, arch, init)
    save_checkpoint()
    return FitResult(best_weights, history, step, elapsed + elapsed_before, samples / max(elapsed, 1e-9), best,
                     stopped_by)
