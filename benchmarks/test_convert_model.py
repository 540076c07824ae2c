"""Hand-built LSTMSequence graph vs `openvino.convert_model` on the same Keras model.

Same function on both sides: the seed topology (64-64-1) over one 480-sample hop from zero
state. The converted graph is checked numerically against the hand-built one, and its op
types are recorded (a Loop/TensorIterator there is what a Myriad VPU cannot run).
Run: .venv/bin/python -m pytest benchmarks -k convert --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    import openvino as ov

    from edgeamp.core.model import Architecture, random_weights
    from edgeamp.edge_runtime import ov_compat
    from edgeamp.export.graphs import GraphSpec, build_graph
    from edgeamp.train.models import build_keras_model, set_keras_weights

    arch = Architecture((64, 64, 1))
    weights = random_weights(arch, seed=0, scale=1.0)
    keras_model = build_keras_model(arch, batch_size=1)
    set_keras_weights(keras_model, arch, weights)
    saved = tmp_path_factory.mktemp("saved") / "model"
    keras_model.export(str(saved), verbose=False)  # TF SavedModel
    converted = ov.convert_model(str(saved), input=[1, 480, 1])
    hand = build_graph(arch, weights, GraphSpec("window", 480, 480))  # stateless, one hop from zero state
    cfg = ov_compat.cpu_config(threads=1)
    core = ov_compat.core()
    return {
        "converted": core.compile_model(converted, "CPU", cfg),
        "hand": core.compile_model(hand, "CPU", cfg),
        "converted_ops": ov_compat.op_types(converted),
        "hand_ops": ov_compat.op_types(hand),
    }


def _runner(compiled, shape):
    req = compiled.create_infer_request()
    x = np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)
    req.get_input_tensor(0).data[:] = x

    def run():
        req.start_async()
        req.wait()

    return run, req


def test_numerically_equal(graphs):
    run_c, req_c = _runner(graphs["converted"], (1, 480, 1))
    run_h, req_h = _runner(graphs["hand"], (1, 480))
    run_c()
    run_h()
    a = req_c.get_output_tensor(0).data.reshape(-1)
    b = req_h.get_output_tensor(0).data.reshape(-1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert {"Loop", "TensorIterator"} & set(graphs["converted_ops"]) or "LSTMSequence" in graphs["converted_ops"]
    assert not {"Loop", "TensorIterator"} & set(graphs["hand_ops"])


@pytest.mark.parametrize("which", ["hand", "converted"])
def test_hop_speed(benchmark, graphs, which):
    shape = (1, 480) if which == "hand" else (1, 480, 1)
    run, _ = _runner(graphs[which], shape)
    benchmark.group = "convert_model-vs-hand-built"
    benchmark.extra_info["ops"] = graphs[f"{which}_ops"]
    benchmark.pedantic(run, rounds=200 if which == "hand" else 30, iterations=1, warmup_rounds=3)
