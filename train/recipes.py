"""The two training recipes as objects the fit loop drives: how a batch is drawn and stepped, and
how the validation set is cut and predicted. The losses are TensorFlow versions of
``edgeamp.core.metrics`` (ESR, pre-emphasis, DC), weighted per sequence.

- :class:`WindowRecipe` (the original experiment): windows of ``window_samples`` from zero state,
  mean squared error on the last hop;
- :class:`TbpttRecipe` (stateful): sequences of ``chunks_per_sequence`` chunks after an unscored
  warm-up, truncated backpropagation through time with the recurrent state carried between chunks.
"""

from __future__ import annotations

import numpy as np

from edgeamp.core.metrics import PRE_EMPHASIS
from edgeamp.core.model import Architecture

from .dataset import Sampler, Segment, validation_pieces
from .presets import TrainConfig

VAL_PIECE_SECONDS = 0.25


def tbptt_loss(tf, config: TrainConfig):
    """``loss(y, y_hat, w)``: the preset's ESR form plus ``dc_weight`` x the DC term; ``w`` holds one
    weight per sequence (``(batch, 1)``: knob settings balanced, see Sampler)."""

    def esr_plain(y, y_hat, w):
        return tf.reduce_sum(w * (y - y_hat) ** 2) / (tf.reduce_sum(w * y**2) + 1e-10)

    def esr_pre(y, y_hat, w):
        return esr_plain(y[:, 1:] - PRE_EMPHASIS * y[:, :-1], y_hat[:, 1:] - PRE_EMPHASIS * y_hat[:, :-1], w)

    def dc(y, y_hat, w):
        return tf.reduce_mean(w * (y - y_hat)) ** 2 / (tf.reduce_mean(w * y**2) + 1e-10)

    forms = {"esr": esr_plain, "esr_pre": esr_pre, "esr+esr_pre": lambda *a: esr_plain(*a) + esr_pre(*a)}
    form = forms[config.loss]

    def loss(y, y_hat, w):
        return form(y, y_hat, w) + config.dc_weight * dc(y, y_hat, w)

    return loss


class Recipe:
    """What both recipes share: the model, its optimizer, and the distribution helpers.

    Under a strategy the optimizer sums the replicas' gradients, so each replica's loss is divided
    by the replica count: the update is then that of the mean loss."""

    def __init__(self, tf, keras, config: TrainConfig, arch: Architecture, hop: int, dist=None) -> None:
        self.tf, self.keras, self.config, self.arch, self.hop, self.dist = tf, keras, config, arch, hop, dist
        self.replicas = dist.num_replicas_in_sync if dist else 1
        self.model = self.build_model()
        self.optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=config.grad_clip_norm)
        self.optimizer.build(self.model.trainable_variables)
        self.variables = self.model.trainable_variables

    def build_model(self):
        raise NotImplementedError

    def put(self, arrays: np.ndarray):
        """numpy (batch, ...) -> a tensor, or per-replica slices of it under a strategy."""
        tf = self.tf
        if self.dist is None:
            return tf.constant(arrays)
        per = arrays.shape[0] // self.replicas
        return self.dist.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(arrays[ctx.replica_id_in_sync_group * per : (ctx.replica_id_in_sync_group + 1)
                                           * per]))

    def call(self, fn, *args):
        return fn(*args) if self.dist is None else self.dist.run(fn, args=args)

    def sum(self, value):
        return self.dist.reduce(self.tf.distribute.ReduceOp.SUM, value, axis=None) if self.dist else value

    def apply(self, tape, scaled):
        grads = tape.gradient(scaled, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables))


class WindowRecipe(Recipe):
    """Windows from zero state; the loss is the mean squared error of the last hop."""

    def __init__(self, tf, keras, config, arch, hop, window_samples: int, dist=None) -> None:
        self.crop = window_samples
        super().__init__(tf, keras, config, arch, hop, dist)

        def window_step(x, y):
            with tf.GradientTape() as tape:
                y_hat = self.model(x, training=True)[:, -hop:, 0]
                scaled = tf.reduce_mean((y[:, -hop:] - y_hat) ** 2) / self.replicas
            self.apply(tape, scaled)
            return scaled

        self._train_step = tf.function(lambda x, y: self.sum(self.call(window_step, x, y)),
                                       jit_compile=config.xla, reduce_retracing=True)
        self._predict = tf.function(lambda x: self.model(x, training=False)[:, -hop:, 0], reduce_retracing=True)

    def build_model(self):
        from .models import build_keras_model

        return build_keras_model(self.arch)

    def step(self, sampler: Sampler, batch: int) -> tuple[float, int]:
        xb, yb, _ = sampler.batch(batch)
        return float(self._train_step(self.put(xb), self.put(yb))), batch * self.hop

    def validation_set(self, val: list[Segment], sample_rate: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        vx, vy, _ = Sampler(val, self.crop, np.random.default_rng(12345)).batch(max(32, batch * 4))
        return vx, vy[:, -self.hop :]

    def predict(self, xb: np.ndarray, length: int) -> np.ndarray:
        return self._predict(self.tf.constant(xb)).numpy()


class TbpttRecipe(Recipe):
    """Truncated backpropagation through time: each sequence starts from zero state with an
    unscored warm-up, then ``chunks_per_sequence`` chunks, each one optimizer step, the state carried."""

    def __init__(self, tf, keras, config, arch, hop, dist=None) -> None:
        self.crop = config.warmup_samples + config.chunk_samples * config.chunks_per_sequence
        super().__init__(tf, keras, config, arch, hop, dist)
        loss_fn = tbptt_loss(tf, config)
        model = self.model

        def tbptt_step(x, y, w, states):
            with tf.GradientTape() as tape:
                out = model([x, *states], training=True)
                scaled = loss_fn(y, out[0][..., 0], w) / self.replicas
            self.apply(tape, scaled)
            return scaled, [tf.stop_gradient(s) for s in out[1:]]

        def train_step(x, y, w, states):
            loss, new_states = self.call(tbptt_step, x, y, w, states)
            return self.sum(loss), new_states

        self._train_step = tf.function(train_step, jit_compile=config.xla, reduce_retracing=True)
        self._warm = tf.function(lambda x, states: self.call(lambda a, s: model([a, *s], training=False)[1:], x,
                                                             states), reduce_retracing=True)

        def run(x, states):
            out = model([x, *states], training=False)
            return out[0][..., 0], out[1:]

        self._run = tf.function(run, reduce_retracing=True)
        self._zero = None
        self._chunk = config.chunks_per_sequence  # forces a fresh sequence first
        self._seq = None
        self._states = None

    def build_model(self):
        from .models import build_training_model

        return build_training_model(self.arch, self.keras)

    def zero_states(self, batch: int, put: bool = True) -> list:
        zeros = [np.zeros((batch, width), np.float32) for _, _, width in self.arch.state_sizes()]
        return [self.put(z) for z in zeros] if put else [self.tf.constant(z) for z in zeros]

    def step(self, sampler: Sampler, batch: int) -> tuple[float, int]:
        c = self.config
        if self._zero is None:
            self._zero = self.zero_states(batch)
        if self._chunk >= c.chunks_per_sequence:
            self._seq = sampler.batch(batch)
            self._states = self._warm(self.put(self._seq[0][:, : c.warmup_samples]), self._zero)  # not scored
            self._chunk = 0
        seq_x, seq_y, seq_w = self._seq
        lo = c.warmup_samples + self._chunk * c.chunk_samples
        hi = lo + c.chunk_samples
        loss, self._states = self._train_step(self.put(np.ascontiguousarray(seq_x[:, lo:hi])),
                                               self.put(np.ascontiguousarray(seq_y[:, lo:hi])),
                                               self.put(seq_w[:, None]), self._states)
        self._chunk += 1
        return float(loss), batch * c.chunk_samples

    def validation_set(self, val: list[Segment], sample_rate: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return validation_pieces(val, int(VAL_PIECE_SECONDS * sample_rate), self.config.warmup_samples * 2)

    def predict(self, xb: np.ndarray, length: int) -> np.ndarray:
        y_hat, _ = self._run(self.tf.constant(xb), self.zero_states(xb.shape[0], put=False))
        return y_hat.numpy()[:, -length:]


def make_recipe(tf, keras, config: TrainConfig, arch: Architecture, hop: int, window_samples: int, dist=None):
    if config.recipe == "window":
        return WindowRecipe(tf, keras, config, arch, hop, window_samples, dist)
    return TbpttRecipe(tf, keras, config, arch, hop, dist)
