"""GRU stacks and stored initial states through every path: numpy reference, every IR variant
(each verified by the exporter against the reference), the processor and reset(), the batched
engine, and the Keras builders (the layout a fine-tune would use)."""

from __future__ import annotations

import numpy as np
import pytest

import edgeamp
from edgeamp.core import reference
from edgeamp.core.bundle import Bundle, Manifest, golden_signal, read_bundle, write_bundle
from edgeamp.core.model import Architecture, Knob, Streaming, random_weights
from edgeamp.export.exporter import export_bundle

from ..conftest import needs_tf

SR = 48000
HOP = 240

CASES = {
    "gru-2-head-skip-knob": Architecture((6, 3), head=True, skip=True, knobs=(Knob("gain", 0, 10, 5),), cell="gru"),
    "gru-1-no-head": Architecture((1,), cell="gru"),
    "gru-3-initial": Architecture((4, 4, 4), head=True, cell="gru", initial_state=True),
    "lstm-2-initial-knob": Architecture((5, 5), head=True, knobs=(Knob("tone", 0, 1, 0.5, 0.0, 1.0),),
                                        initial_state=True),
}


def _bundle(tmp_path, name, mode="stateful"):
    arch = CASES[name]
    streaming = Streaming("window", HOP, 3 * HOP) if mode == "window" else Streaming("stateful", HOP)
    weights = random_weights(arch, seed=5, scale=1.5)
    path = write_bundle(tmp_path / f"{name}-{mode}.bundle", Bundle(Manifest(SR, arch, streaming), weights))
    return export_bundle(path, verify_seconds=0.2, window_verify_seconds=0.05)


def _reference(bundle, x):
    arch = bundle.architecture
    knobs = [k.normalise(k.default) for k in arch.knobs]
    xin = np.concatenate([x[:, None], np.tile(knobs, (x.shape[0], 1))], axis=1)[None] if knobs else x
    return reference.run_stateful(arch, bundle.weights, xin)[0][0]


def test_initial_state_is_where_the_reference_starts():
    arch = CASES["gru-3-initial"]
    w = random_weights(arch, seed=1)
    state = reference.initial_state(arch, w, batch=2)
    assert len(state) == 3 and all(len(layer) == 1 for layer in state)  # GRU: h only
    np.testing.assert_array_equal(state[1][0][1], w.layers[1].h0)
    lstm = CASES["lstm-2-initial-knob"]
    ws = random_weights(lstm, seed=1)
    (h, c), _ = reference.initial_state(lstm, ws)
    np.testing.assert_array_equal(c[0], ws.layers[0].c0)
    # a stored state changes the output: the same weights from zeros differ at the start
    x = np.zeros((1, 64, 2))
    from_zero, _ = reference.forward(ws, x, reference.zero_state(lstm))
    from_init, _ = reference.run_stateful(lstm, ws, x)
    assert np.max(np.abs(from_zero - from_init)) > 1e-3


def test_gru_reference_matches_its_equations():
    """One GRU step written out by hand (Keras reset_after: r multiplies the recurrent product plus its bias)."""
    arch = Architecture((3,), head=True, cell="gru")
    w = random_weights(arch, seed=3, scale=2.0).astype(np.float64)
    layer = w.layers[0]
    x = np.array([[[0.7]]])
    h = np.array([[0.1, -0.2, 0.3]])
    y, (h1,) = reference.gru_layer(layer.kernel, layer.recurrent_kernel, layer.bias, x, (h,))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    xk = x[0, 0] @ layer.kernel + layer.bias[0]
    hr = h[0] @ layer.recurrent_kernel + layer.bias[1]
    z = sig(xk[:3] + hr[:3])
    r = sig(xk[3:6] + hr[3:6])
    cand = np.tanh(xk[6:] + r * hr[6:])
    np.testing.assert_allclose(h1[0], z * h[0] + (1 - z) * cand, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_variant_reproduces_the_reference_and_resets_to_the_initial_state(tmp_path, name):
    b = _bundle(tmp_path, name)
    assert {e.variant for e in b.manifest.exports.values()} >= {"stateful", "explicit_state", "batched"}
    for record in b.manifest.exports.values():  # the exporter verified each against the reference
        if record.precision == "f32":
            assert record.max_abs_error <= 1e-4, (record.variant, record.max_abs_error)
    x = golden_signal(SR, 0.05)
    want = _reference(b, x)
    for variant in ("stateful", "explicit_state"):
        amp = edgeamp.load(b.path, device="CPU", variant=variant, precision="f32")
        first = amp(x, SR)
        np.testing.assert_allclose(first, want, atol=2e-5, err_msg=variant)
        np.testing.assert_array_equal(amp(x, SR), first)  # the reset returns to the initial state
    numpy_amp = edgeamp.load(b.path, backend="numpy")
    np.testing.assert_allclose(numpy_amp(x, SR), want, atol=1e-6)


@pytest.mark.parametrize("name", ["gru-3-initial", "lstm-2-initial-knob"])
def test_batched_engine_rows_start_from_the_initial_state(tmp_path, name):
    from edgeamp.edge_runtime.session import ProcessorFactory

    b = _bundle(tmp_path, name)
    factory = ProcessorFactory(b, device="CPU")
    engine = factory.batched_engine(max_batch=4, wait_ms=0.0)
    try:
        x = golden_signal(SR, 0.03)[: 4 * HOP]
        want = _reference(b, x)
        for _ in range(2):  # a second stream on a reused row starts from the initial state too
            slot = engine.slot()
            proc = factory.new(aligned=True, engine=slot)
            got = np.concatenate([proc.process(x[i : i + HOP]).copy() for i in range(0, x.shape[0], HOP)])
            np.testing.assert_allclose(got[: want.shape[0]], want, atol=2e-5)
            slot.close()
    finally:
        engine.close()


def test_gru_window_mode_bundle_exports_and_verifies(tmp_path):
    b = _bundle(tmp_path, "gru-2-head-skip-knob", mode="window")
    assert "window-f32" in b.manifest.exports


def test_gru_bundle_round_trips_byte_identically(tmp_path):
    arch = CASES["gru-3-initial"]
    bundle = Bundle(Manifest(SR, arch, Streaming("stateful", HOP)), random_weights(arch, seed=2))
    loaded = read_bundle(write_bundle(tmp_path / "a", bundle))
    assert loaded.architecture == arch
    assert set(loaded.weights.to_arrays()) == set(arch.expected_shapes())
    assert loaded.weights.to_arrays()["gru2/bias"].shape == (2, 12)


@needs_tf
@pytest.mark.parametrize("name", ["gru-2-head-skip-knob", "lstm-2-initial-knob"])
def test_keras_builders_match_the_reference(name):
    """The Keras model (what fine-tuning trains) computes what the bundle's reference computes."""
    import keras

    from edgeamp.train.models import build_keras_model, build_training_model, set_keras_weights, weights_from_keras

    arch = CASES[name]
    w = random_weights(arch, seed=9, scale=1.5)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 200, arch.input_channels)).astype(np.float32)
    start = reference.initial_state(arch, w, batch=2, dtype=np.float32)
    want, _ = reference.forward(w.astype(np.float64), x.astype(np.float64),
                                tuple(tuple(s.astype(np.float64) for s in layer) for layer in start), skip=arch.skip)
    model = build_training_model(arch, keras)
    set_keras_weights(model, arch, w)
    got = model([x, *[s for layer in start for s in layer]])[0].numpy()[..., 0]
    np.testing.assert_allclose(got, want, atol=2e-5)
    plain = build_keras_model(arch)
    set_keras_weights(plain, arch, w)
    back = weights_from_keras(plain, arch, initial=w)
    for key, value in w.to_arrays().items():
        np.testing.assert_array_equal(back.to_arrays()[key], value)


@pytest.mark.parametrize("damage", ["z and r swapped", "reset before the recurrent product"])
def test_a_wrong_gru_graph_is_refused(tmp_path, monkeypatch, damage):
    """The GRU mapping is checked by verification, not trusted: a swapped gate order or the other
    reset convention (linear_before_reset=False, the ONNX default) does not pass."""
    import edgeamp.export.graphs as graphs
    from edgeamp.export.exporter import ExportError

    if damage == "z and r swapped":
        right = graphs.ov_gru_weights

        def wrong(kernel, recurrent_kernel, bias):
            w, r, b = right(kernel, recurrent_kernel, bias)
            u = r.shape[-1]
            swap = np.r_[u : 2 * u, 0:u, 2 * u : 3 * u]
            return w[:, swap], r[:, swap], np.concatenate([b[:, swap], b[:, 3 * u :]], axis=1)

        monkeypatch.setattr(graphs, "ov_gru_weights", wrong)
    else:
        real = graphs.ops.gru_sequence

        def before_reset(*args, **kwargs):
            b = args[5]
            args = list(args)
            u = args[6]
            args[5] = graphs._const(b.get_vector()[: 3 * u].reshape(1, 3 * u) + np.concatenate(
                [np.zeros(2 * u), b.get_vector()[3 * u :]])[None])
            return real(*args, **{**kwargs, "linear_before_reset": False})

        monkeypatch.setattr(graphs.ops, "gru_sequence", before_reset)
    arch = Architecture((8,), head=True, cell="gru")
    weights = random_weights(arch, seed=4, scale=3.0)
    path = write_bundle(tmp_path / "g.bundle", Bundle(Manifest(SR, arch, Streaming("stateful", HOP)), weights))
    with pytest.raises(ExportError, match="no IR was written"):
        export_bundle(path, variants=("stateful",), precisions=("f32",), verify_seconds=0.3)
