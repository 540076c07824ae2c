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

from edgeamp.edge_runtime.errors import ConfigError, EdgeampError
from edgeamp.edge_runtime.metrics import PRE_EMPHASIS, esr
from edgeamp.edge_runtime.model import Architecture, ModelWeights
from edgeamp.edge_runtime.progress import enabled as progress_enabled

from .dataset import Sampler, Segment, validation_pieces
from .presets import TrainConfig

log = logging.getLogger(__name__)
VAL_PIECE_SECONDS = 0.25


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


def build_training_model(arch: Architecture, keras):
    """Keras model ``[x, h0, c0, h1, c1, ...] -> [y, h0', c0', ...]`` (GRU: ``h`` only per layer);
    layer names match :func:`edgeamp.train.models.build_keras_model` so weights move by name."""
    from .models import recurrent_layer

    inp = keras.Input(shape=(None, arch.input_channels), name="audio_and_knobs")
    state_inputs, state_outputs = [], []
    h = inp
    for i, units in enumerate(arch.units):
        states = [keras.Input(shape=(units,), name=f"{kind}{i}") for kind in arch.state_kinds]
        state_inputs += states
        h, *new_states = recurrent_layer(keras, arch, units, i, return_sequences=True, return_state=True)(
            h, initial_state=states if len(states) > 1 else states[0])
        state_outputs += new_states
    if arch.head:
        h = keras.layers.Dense(1, name="head")(h)
    if arch.skip:
        h = keras.layers.Add(name="skip")([h, keras.layers.Lambda(lambda t: t[..., :1], name="audio")(inp)])
    return keras.Model([inp, *state_inputs], [h, *state_outputs], name="amp_train")


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
    hop = streaming.hop_samples
    scope = dist.scope() if dist else contextlib.nullcontext()
    with scope:
        if config.recipe == "window":
            from .models import build_keras_model

            model = build_keras_model(arch)
            crop = streaming.window_samples
        else:
            model = build_training_model(arch, keras)
            crop = config.warmup_samples + config.chunk_samples * config.chunks_per_sequence
        if init is not None:
            _set_weights(model, arch, init)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=config.grad_clip_norm)
        optimizer.build(model.trainable_variables)
    sampler = Sampler(train, crop, rng, balance=config.balance_settings)
    variables = model.trainable_variables

    def put(arrays):
        """numpy (batch, ...) -> a tensor, or per-replica slices of it under a strategy."""
        if dist is None:
            return tf.constant(arrays)
        per = arrays.shape[0] // replicas
        return dist.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(arrays[ctx.replica_id_in_sync_group * per : (ctx.replica_id_in_sync_group + 1)
                                           * per]))

    def call(fn, *args):
        return fn(*args) if dist is None else dist.run(fn, args=args)

    # w: per-sequence loss weights (batch, 1), see Sampler (knob settings balanced)
    # the training losses: metrics.esr / metrics.pre_emphasis as TF ops (weighted per sequence)
    def esr_plain(y, y_hat, w):
        return tf.reduce_sum(w * (y - y_hat) ** 2) / (tf.reduce_sum(w * y**2) + 1e-10)

    def esr_pre(y, y_hat, w):
        return esr_plain(y[:, 1:] - PRE_EMPHASIS * y[:, :-1], y_hat[:, 1:] - PRE_EMPHASIS * y_hat[:, :-1], w)

    def esr_loss(y, y_hat, w):
        if config.loss == "esr":
            return esr_plain(y, y_hat, w)
        if config.loss == "esr+esr_pre":
            return esr_plain(y, y_hat, w) + esr_pre(y, y_hat, w)
        return esr_pre(y, y_hat, w)

    def dc(y, y_hat, w):
        return tf.reduce_mean(w * (y - y_hat)) ** 2 / (tf.reduce_mean(w * y**2) + 1e-10)

    batch = config.batch_size
    zero_states = [put(np.zeros((batch, u), np.float32)) for u in arch.units for _ in arch.state_kinds]

    # Under a strategy the optimizer sums the replicas' gradients, so each replica's loss is
    # divided by the replica count: the update is then that of the mean loss.
    if config.recipe == "window":
        def window_step(x, y):
            with tf.GradientTape() as tape:
                y_hat = model(x, training=True)[:, -hop:, 0]
                loss = tf.reduce_mean((y[:, -hop:] - y_hat) ** 2)
                scaled = loss / replicas
            grads = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return scaled

        @tf.function(jit_compile=config.xla, reduce_retracing=True)
        def train_step(x, y):
            return _sum(call(window_step, x, y))

        @tf.function(reduce_retracing=True)
        def predict_last(x):
            return model(x, training=False)[:, -hop:, 0]
    else:
        def tbptt_step(x, y, w, states):
            with tf.GradientTape() as tape:
                out = model([x, *states], training=True)
                y_hat = out[0][..., 0]
                loss = esr_loss(y, y_hat, w) + config.dc_weight * dc(y, y_hat, w)
                scaled = loss / replicas
            grads = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return scaled, [tf.stop_gradient(s) for s in out[1:]]

        @tf.function(jit_compile=config.xla, reduce_retracing=True)
        def train_step(x, y, w, states):
            loss, new_states = call(tbptt_step, x, y, w, states)
            return _sum(loss), new_states

        def states_only(x, states):
            return model([x, *states], training=False)[1:]

        @tf.function(reduce_retracing=True)
        def warm_states(x, states):
            return call(states_only, x, states)

        @tf.function(reduce_retracing=True)
        def run_states(x, states):
            out = model([x, *states], training=False)
            return out[0][..., 0], out[1:]

    def _sum(value):
        return dist.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) if dist else value

    # validation set, fixed for the whole run
    if config.recipe == "window":
        vrng = np.random.default_rng(12345)
        vx, vy, _ = Sampler(val, crop, vrng).batch(max(32, batch * 4))
        vy = vy[:, -hop:]
    else:
        piece = int(VAL_PIECE_SECONDS * sample_rate)
        vx, vy = validation_pieces(val, piece, config.warmup_samples * 2)

    def validate() -> float:
        preds = []
        for lo in range(0, vx.shape[0], 64):
            xb = tf.constant(vx[lo : lo + 64])
            if config.recipe == "window":
                preds.append(predict_last(xb).numpy())
            else:
                states = [tf.zeros((xb.shape[0], u)) for u in arch.units for _ in arch.state_kinds]
                y_hat, _ = run_states(xb, states)
                preds.append(y_hat.numpy()[:, -vy.shape[1] :])
        y_hat = np.concatenate(preds)
        return esr(vy, y_hat)

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

    def save_checkpoint():
        ckpt.save("last", _weights_of(model, arch, init).to_arrays())
        ckpt.save("best", best_weights.to_arrays())
        ckpt.save("optimizer", {f"v{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
        ckpt.save_state({"step": step, "best": best, "history": history, "elapsed": elapsed + elapsed_before,
                         "rng": rng.bit_generator.state, "config": asdict(config),
                         "architecture": arch.units.__repr__()})

    max_steps = (step + steps) if steps else None
    deadline = time.monotonic() + minutes * 60 if minutes else None
    checks_without_gain = 0
    stopped_by = "budget"
    samples = 0
    t0 = time.monotonic()
    elapsed = 0.0
    bar = None
    if progress_enabled():
        from tqdm import tqdm

        bar = tqdm(total=steps or None, desc=f"train {config.name}", unit="step", dynamic_ncols=True)
    states = zero_states
    chunk_in_seq = config.chunks_per_sequence  # forces a fresh sequence first
    seq_x = seq_y = None
    try:
        while True:
            if max_steps is not None and step >= max_steps:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if config.recipe == "window":
                xb, yb, _ = sampler.batch(batch)
                loss = float(train_step(put(xb), put(yb)))
                samples += batch * hop
            else:
                if chunk_in_seq >= config.chunks_per_sequence:
                    seq_x, seq_y, seq_w = sampler.batch(batch)
                    w = config.warmup_samples
                    states = warm_states(put(seq_x[:, :w]), zero_states)  # warm-up: not scored
                    chunk_in_seq = 0
                lo = config.warmup_samples + chunk_in_seq * config.chunk_samples
                hi = lo + config.chunk_samples
                loss_t, states = train_step(put(np.ascontiguousarray(seq_x[:, lo:hi])),
                                            put(np.ascontiguousarray(seq_y[:, lo:hi])), put(seq_w[:, None]),
                                            states)
                loss = float(loss_t)
                chunk_in_seq += 1
                samples += batch * config.chunk_samples
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
                    best, best_weights, checks_without_gain = v, _weights_of(model, arch, init), 0
                else:
                    checks_without_gain += 1
                    if checks_without_gain % config.lr_decay_checks == 0:
                        lr = max(float(optimizer.learning_rate) * 0.5, config.min_learning_rate)
                        optimizer.learning_rate.assign(lr)
                        history.setdefault("lr_changes", []).append([step, lr])
                save_checkpoint()
                if checks_without_gain >= config.patience_checks:
                    stopped_by = "early stopping"
                    break
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", val_esr=f"{best:.4g}" if np.isfinite(best) else "-")
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
