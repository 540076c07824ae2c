"""The long-memory stage: a learned FIR after the head, through the reference, every IR variant,
the processor, batching, the Keras models and the trainer; the players' formats refuse it."""

from __future__ import annotations

import numpy as np
import pytest

import edgeamp
from edgeamp.core import reference
from edgeamp.core.bundle import Bundle, Manifest, golden_signal, write_bundle
from edgeamp.core.errors import ConfigError
from edgeamp.core.model import Architecture, Knob, ModelWeights, Streaming, random_weights
from edgeamp.export.exporter import export_bundle

from ..conftest import needs_tf

SR = 48000
HOP = 240
FIR = Architecture((6, 3), head=True, skip=True, knobs=(Knob("gain", 0, 10, 5),), fir_taps=96)


def _exported(tmp_path, arch=FIR, mode="stateful"):
    streaming = Streaming("window", HOP, 3 * HOP) if mode == "window" else Streaming("stateful", HOP)
    path = write_bundle(tmp_path / f"{mode}.bundle",
                        Bundle(Manifest(SR, arch, streaming), random_weights(arch, seed=8, scale=1.3)))
    return export_bundle(path, verify_seconds=0.2, window_verify_seconds=0.05)


def test_reference_fir_is_a_convolution_of_the_head_output_and_carries_across_calls():
    arch = Architecture((5,), head=True, fir_taps=40)
    w = random_weights(arch, seed=1)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 500, 1))
    y, _ = reference.run_stateful(arch, w, x)
    plain, _ = reference.run_stateful(Architecture((5,), head=True), ModelWeights(w.layers, w.head_kernel,
                                                                                  w.head_bias), x)
    np.testing.assert_allclose(y[0], np.convolve(plain[0], w.fir_taps)[:500], atol=1e-12)
    first, state = reference.run_stateful(arch, w, x[:, :173])
    rest, _ = reference.run_stateful(arch, w, x[:, 173:], state)
    np.testing.assert_array_equal(np.concatenate([first, rest], axis=1), y)
    with pytest.raises(ConfigError, match="fir_taps must be 0"):
        Architecture((5,), head=True, fir_taps=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_every_variant_verifies_and_streams_like_the_reference(tmp_path, cell):
    arch = Architecture(FIR.units, head=True, skip=True, knobs=FIR.knobs, fir_taps=FIR.fir_taps, cell=cell)
    b = _exported(tmp_path, arch)
    assert {"stateful-f32", "explicit_state-f32", "batched-f32"} <= set(b.manifest.exports)
    x = golden_signal(SR, 0.05)
    xin = np.concatenate([x[:, None], np.full((x.shape[0], 1), arch.knobs[0].normalise(5.0))], axis=1)[None]
    want = reference.run_stateful(arch, b.weights, xin)[0][0]
    for variant in ("stateful", "explicit_state"):
        amp = edgeamp.load(b.path, device="CPU", variant=variant, precision="f32")
        np.testing.assert_allclose(amp(x, SR), want, atol=2e-5, err_msg=variant)
        chunks = np.concatenate([amp(c, SR, reset=False) for c in np.array_split(x, 7)])
        lat = amp.latency_samples
        np.testing.assert_allclose(chunks[lat:], want[: want.shape[0] - lat], atol=2e-5, err_msg=variant)


def test_window_bundle_with_fir_exports(tmp_path):
    b = _exported(tmp_path, mode="window")
    assert b.manifest.exports["window-f32"].max_abs_error < 1e-5


def test_batched_rows_carry_the_fir_history(tmp_path):
    from edgeamp.edge_runtime.session import ProcessorFactory

    b = _exported(tmp_path)
    factory = ProcessorFactory(b, device="CPU")
    engine = factory.batched_engine(max_batch=4, wait_ms=0.0)
    try:
        x = golden_signal(SR, 0.03)[: 4 * HOP]
        alone = factory.new(aligned=True)
        want = np.concatenate([alone.process(x[i : i + HOP]).copy() for i in range(0, x.shape[0], HOP)])
        slot = engine.slot()
        proc = factory.new(aligned=True, engine=slot)
        got = np.concatenate([proc.process(x[i : i + HOP]).copy() for i in range(0, x.shape[0], HOP)])
        np.testing.assert_allclose(got, want, atol=2e-5)
        slot.close()
    finally:
        engine.close()


def test_players_formats_take_a_fir_stage_as_an_impulse_response(tmp_path):
    """The players' formats hold no FIR stage: it is written beside the file as an IR WAV (exactness:
    tests/interop/test_interop.py::test_fir_models_export_as_a_model_file_and_an_impulse_response)."""
    from edgeamp.interop.importer import export_model, ir_path

    arch = Architecture((8,), head=True, fir_taps=64)
    path = write_bundle(tmp_path / "f.bundle", Bundle(Manifest(SR, arch, Streaming("stateful", HOP)),
                                                      random_weights(arch)))
    for name in ("f.nam", "f.aidax"):
        out = export_model(path, tmp_path / name, name.split(".")[1])
        assert out.is_file() and ir_path(out).is_file()


@needs_tf
def test_keras_models_match_the_reference_and_carry_the_history():
    import keras
    import tensorflow as tf

    from edgeamp.train.models import build_keras_model, build_training_model, set_keras_weights, weights_from_keras

    arch = Architecture((6, 3), head=True, skip=True, knobs=(Knob("g"),), fir_taps=32, cell="gru")
    w = random_weights(arch, seed=2, scale=1.3)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 200, 2)).astype(np.float32)
    want, _ = reference.forward(w.astype(np.float64), x.astype(np.float64), reference.zero_state(arch, 2), skip=True)
    model = build_training_model(arch, keras)
    set_keras_weights(model, arch, w)
    zeros = [tf.constant(v) for entry in reference.zero_state(arch, 2, np.float32) for v in entry]
    first = model([tf.constant(x[:, :120]), *zeros])
    second = model([tf.constant(x[:, 120:]), *first[1:]])  # the FIR history carries over like the state
    got = np.concatenate([first[0].numpy()[..., 0], second[0].numpy()[..., 0]], axis=1)
    np.testing.assert_allclose(got, want, atol=2e-6)
    plain = build_keras_model(arch)
    set_keras_weights(plain, arch, w)
    np.testing.assert_allclose(plain(x).numpy()[..., 0], want, atol=2e-6)
    np.testing.assert_array_equal(weights_from_keras(plain, arch).fir_taps, w.fir_taps)
    fresh = build_keras_model(arch)  # a new FIR stage starts as the identity
    taps = weights_from_keras(fresh, arch).fir_taps
    assert taps[0] == 1.0 and not np.any(taps[1:])


@needs_tf
def test_train_with_a_fir_stage(tmp_path):
    from edgeamp.cli import main
    from edgeamp.core.bundle import read_bundle

    out = tmp_path / "fir.bundle"
    assert main(["train", "--demo", "--demo-seconds", "6", "--steps", "4", "--fir-taps", "128", str(out)]) == 0
    b = read_bundle(out)
    assert b.architecture.fir_taps == 128 and b.weights.fir_taps.shape == (128,)
    assert "stateful-f32" in b.manifest.exports and b.manifest.metrics["scored_on"] == "test"
