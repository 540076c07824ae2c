"""GuitarML's SmartGuitarAmp / SmartGuitarPedal WaveNet JSON, against GuitarML's own code: fixtures
written by PedalNetRT's export.py, expected output PedalNetRT's WaveNet forward pass
(make_fixtures.py --smartamp-only), and a line-by-line numpy transcription of the players' engine
(GuitarML/SmartGuitarAmp src/Convolution.cpp, ConvolutionLayer.cpp, ConvolutionStack.cpp,
WaveNet.cpp) for what PedalNetRT cannot write (activations other than gated)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import edgeamp
from edgeamp.cli import main as cli_main
from edgeamp.core import reference
from edgeamp.core.errors import ModelFormatError
from edgeamp.edge_runtime import native
from edgeamp.interop.formats import detect_format
from edgeamp.interop.importer import import_model, read_model

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
E = np.load(FIX / "expected_smartamp.npz")
X = E["input"]
SR = 44100
NAMES = ("smartamp_6x18", "smartamp_5x10")
# measured (AVX-512 EPYC): reference 1.3e-7 from PedalNetRT's torch output (float32 there), f32 IR and
# the native engine about 1e-7 from the reference
REF_TOL, ENGINE_TOL = 1e-5, 1e-4


def _doc(name: str = "smartamp_5x10") -> dict:
    return json.loads((FIX / f"{name}.json").read_text())


def players_engine(doc: dict, x: np.ndarray) -> np.ndarray:
    """SmartGuitarAmp's WaveNet as its C++ runs it, sample by sample: each Convolution keeps a FIFO of
    its last (K - 1) d + 1 inputs (zeros after a load), ``kernel[K-1-k] = W[k]`` from the flat
    (kernel, in, out) list, output = sum_j fifo[pos - j d] @ kernel[j] + bias."""
    var = {(v["layer_idx"], v["name"]): np.asarray([float(a) for a in v["data"]]) for v in doc["variables"]}
    c, k, dil, act = doc["residual_channels"], doc["filter_width"], doc["dilations"], doc["activation"]
    gated = act == "gated"
    mid = 2 * c if gated else c
    funcs = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0), "softsign": lambda v: v / (1 + np.abs(v))}
    n = len(dil)
    kernels = []
    for i in range(n):
        w = var[(i, "W_conv")].reshape(k, c, mid)
        kernels.append([w[k - 1 - j] for j in range(k)])  # kernel[j], (in, out)
    fifos = [np.zeros(((k - 1) * d + 1, c)) for d in dil]
    pos = [0] * n
    w_in, b_in = var[(-1, "W")], var[(-1, "b")]
    w_mix, b_mix = var[(n, "W")], var[(n, "b")]
    y = np.zeros(x.shape[0])
    for t in range(x.shape[0]):
        data = w_in * x[t] + b_in
        skips = []
        for i, d in enumerate(dil):
            residual = data.copy()
            order = fifos[i].shape[0]
            fifos[i][pos[i]] = data
            out = var[(i, "b_conv")].copy()
            for j in range(k):
                out += fifos[i][(pos[i] - j * d) % order] @ kernels[i][j]
            pos[i] = (pos[i] + 1) % order
            p = np.tanh(out[:c]) / (1 + np.exp(-out[c:])) if gated else funcs[act](out)
            skips.append(p)
            data = p @ var[(i, "W_out")].reshape(c, c) + var[(i, "b_out")] + residual
        y[t] = np.concatenate(skips) @ w_mix + b_mix[0]
    return y


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("smartamp")
    return {n: import_model(FIX / f"{n}.json", root / f"{n}.bundle", sample_rate=SR, export=True,
                            variants=("stateful", "explicit_state", "batched") if n == "smartamp_5x10" else
                            ("stateful",), precisions=("f32",), verify_seconds=0.3)
            for n in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_reference_ir_and_native_engine_reproduce_pedalnetrt(bundles, name):
    b = bundles[name]
    assert detect_format(FIX / f"{name}.json") == "guitarml-conv"
    assert b.architecture.family == "wavenet" and b.manifest.sample_rate == SR
    want = E[name]
    ref = reference.run_stateful(b.architecture, b.weights, X.astype(np.float64))[0][0]
    assert np.max(np.abs(ref - want)) < REF_TOL  # from the players' start: a zero history after a load
    backends = ("openvino", "native") if native.unavailable_reason() is None else ("openvino",)
    for backend in backends:
        amp = edgeamp.load(b.path, device="CPU", backend=backend)
        assert np.max(np.abs(amp(X, SR) - ref)) < ENGINE_TOL, backend
        amp.reset()  # and back to the same start
        assert np.max(np.abs(amp(X, SR) - ref)) < ENGINE_TOL, backend


def test_the_sizes_read_as_pedalnetrt_wrote_them(bundles):
    a = bundles["smartamp_6x18"].architecture
    meta = bundles["smartamp_6x18"].manifest.provenance["source_metadata"]
    assert meta["residual_channels"] == 6 and meta["dilations"] == [1, 2, 4, 8, 16, 32, 64, 128, 256] * 2
    assert len(a.arrays) == 18 and all(arr.channels == 7 and arr.gated for arr in a.arrays)  # + the carry channel
    assert a.receptive_field == 1 + 2 * sum(meta["dilations"])


def test_the_explicit_state_ir_streams_in_chunks_like_the_reference(bundles, tmp_path):
    """(The batched IR was verified against the reference when the bundle was exported.)"""
    b = bundles["smartamp_5x10"]
    assert {"batched-f32", "explicit_state-f32"} <= set(b.manifest.exports)
    ref = reference.run_stateful(b.architecture, b.weights, X.astype(np.float64))[0][0]
    for variant in ("explicit_state", "stateful"):
        amp = edgeamp.load(b.path, device="CPU", backend="openvino", variant=variant)
        y = np.concatenate([amp(X[i : i + 300], SR, reset=False) for i in range(0, X.shape[0], 300)])
        d = amp.latency_samples
        assert np.max(np.abs(y[d:] - ref[: y.shape[0] - d])) < ENGINE_TOL, variant


@pytest.mark.parametrize("activation", ["gated", "tanh", "relu", "softsign"])
def test_every_activation_the_players_run_matches_their_engine(tmp_path, activation):
    """PedalNetRT writes gated models only; the players also run tanh, relu and softsign: the same
    file with another activation (the conv halved where it is not gated) against the transcription."""
    doc = _doc()
    if activation != "gated":
        doc["activation"] = activation
        c, k = doc["residual_channels"], doc["filter_width"]
        for v in doc["variables"]:
            if v["name"] == "W_conv":
                v["data"] = np.asarray(v["data"], float).reshape(k, c, 2 * c)[:, :, :c].ravel().tolist()
            elif v["name"] == "b_conv":
                v["data"] = v["data"][:c]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    x = X[:3000].astype(np.float64)
    want = players_engine(doc, x)
    if activation == "gated":
        assert np.max(np.abs(want - E["smartamp_5x10"][:3000])) < REF_TOL  # the transcription is PedalNetRT's
    m = read_model(path)
    got = reference.run_stateful(m.architecture, m.weights, x)[0][0]
    assert np.max(np.abs(got - want)) < 1e-7, activation  # the bundle keeps float32 weights: 2-4e-9 measured


def _edit(fn):
    doc = _doc()
    fn(doc)
    return doc


def _drop(doc):
    doc["variables"].pop()


def _resize(doc):
    doc["variables"][2]["data"] = doc["variables"][2]["data"][:-1]


def _twice(doc):
    doc["variables"][-1] = copy.deepcopy(doc["variables"][2])


def _word(doc):
    doc["variables"][0]["data"][0] = "loud"


def _nan(doc):
    doc["variables"][0]["data"][0] = "nan"


@pytest.mark.parametrize("edit, words", [
    (_drop, "variables; this WaveNet has"),
    (_resize, "this WaveNet needs"),
    (_twice, "appears twice"),
    (_word, "not a number"),
    (_nan, "NaN/Inf"),
    (lambda d: d.update(activation="softgated"), "softgated"),
    (lambda d: d.update(input_channels=2), "input_channels is 2"),
    (lambda d: d.update(dilations=[1, 2, 10**9]), "dilation"),
    (lambda d: d.update(residual_channels=10**6), "residual_channels"),
    (lambda d: d.update(dilations="1,2,4"), "dilations must be a list"),
    (lambda d: d.update(variables={"W": 1}), "'variables' must be a list"),
])
def test_bad_smartamp_files_name_the_problem_and_write_nothing(tmp_path, edit, words):
    _refused_writing_nothing(tmp_path, _edit(edit), words)


def _refused_writing_nothing(tmp_path, doc: dict, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match=words):
        import_model(path, tmp_path / "out.bundle", sample_rate=SR)
    assert not (tmp_path / "out.bundle").exists()


P = np.load(FIX / "expected_smartamppro.npz")
PRO = ("smartamppro_24", "smartamppro_8")


def plugins_lstm_cpp(doc: dict, x: np.ndarray) -> np.ndarray:
    """SmartAmpPro's Source/lstm.cpp, transcribed: per output sample, the window of the last
    input_size samples, conv1d ('same' padding as pad_init computes it), conv1d_1 over its padded
    rows, one LSTM step from zero state, the dense layer."""
    n, s1, s2 = doc["input_size"], doc["conv1d_stride"], doc["conv1d_1_stride"]
    k1w, b1 = np.asarray(doc["conv1d"]["kernel:0"]), np.asarray(doc["conv1d"]["bias:0"])
    k2w, b2 = np.asarray(doc["conv1d_1"]["kernel:0"]), np.asarray(doc["conv1d_1"]["bias:0"])
    w, b = np.asarray(doc["lstm"]["kernel:0"]), np.asarray(doc["lstm"]["bias:0"])
    dk, db = np.asarray(doc["dense"]["kernel:0"]), np.asarray(doc["dense"]["bias:0"])
    h_size, k1, k2 = b.size // 4, k1w.shape[0], k2w.shape[0]

    def pad(rows: int, kernel: int, stride: int) -> tuple[int, int]:
        rest = rows % stride
        width = max(kernel - (stride if rest == 0 else rest), 0)
        return width // 2, width - width // 2

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    buf = np.concatenate([np.zeros(n - 1), x])
    y = np.zeros(x.shape[0])
    for t in range(x.shape[0]):
        left, right = pad(n, k1, s1)
        p1 = np.concatenate([np.zeros(left), buf[t : t + n], np.zeros(right)])
        out1 = np.stack([p1[i * s1 : i * s1 + k1] @ k1w[:, 0, :] for i in range(p1.shape[0] // s1)]) + b1
        left, right = pad(out1.shape[0], k2, s2)
        p2 = np.concatenate([np.zeros((left, out1.shape[1])), out1, np.zeros((right, out1.shape[1]))])
        gates = (np.einsum("jk,jko->o", p2, k2w) + b2) @ w + b
        i, g, o = gates[:h_size], gates[2 * h_size : 3 * h_size], gates[3 * h_size :]
        y[t] = (sigmoid(o) * np.tanh(sigmoid(i) * np.tanh(g))) @ dk[:, 0] + db[0]
    return y


@pytest.fixture(scope="module")
def pro_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("smartamppro")
    return {n: import_model(FIX / f"{n}.json", root / f"{n}.bundle", sample_rate=SR, export=True,
                            variants=("stateful", "explicit_state"), precisions=("f32",), verify_seconds=0.3)
            for n in PRO}


@pytest.mark.parametrize("name", PRO)
def test_smartamppro_reproduces_its_keras_model_and_its_plugin(pro_bundles, name):
    """Fixtures written by SmartAmpPro's train.py (model and JSON loop), expected output the Keras
    model's predict on each sample's window (1.9e-7 and 2.4e-7 measured, float32 Keras)."""
    b = pro_bundles[name]
    x = P["input"].astype(np.float64)
    ref = reference.run_stateful(b.architecture, b.weights, x)[0][0]
    assert np.max(np.abs(ref - P[name])) < REF_TOL
    doc = json.loads((FIX / f"{name}.json").read_text())
    assert np.max(np.abs(ref[:600] - plugins_lstm_cpp(doc, x[:600]))) < 1e-6  # float32 weights in the bundle
    backends = ("openvino", "native") if native.unavailable_reason() is None else ("openvino",)
    for backend in backends:
        amp = edgeamp.load(b.path, device="CPU", backend=backend)
        assert np.max(np.abs(amp(P["input"], SR) - ref)) < ENGINE_TOL, backend
    assert b.manifest.provenance["source_metadata"]["input_size"] == doc["input_size"]


def _pro(fn):
    doc = json.loads((FIX / "smartamppro_24.json").read_text())
    fn(doc)
    return doc


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.pop("lstm"), "'lstm' needs 'kernel:0' and 'bias:0'"),
    (lambda d: d.update(input_size=480), "gives 4 frames"),  # lstm.cpp computes one: no defined output
    (lambda d: d["lstm"].update({"kernel:0": [[0.0] * 96] * 3}), "lstm kernel:0 must be"),
    (lambda d: d["dense"].update({"bias:0": ["x"]}), "dense bias"),
    (lambda d: d.update(conv1d_stride=0), "conv1d_stride"),
    (lambda d: d["conv1d"].update({"bias:0": [float("nan")] * 4}), "NaN"),
])
def test_bad_smartamppro_files_name_the_problem_and_write_nothing(tmp_path, edit, words):
    _refused_writing_nothing(tmp_path, _pro(edit), words)


def test_a_smartamp_model_leaves_as_a_nam_file(bundles, tmp_path, capsys):
    """export-model --format nam: the NAM A1 form of the same network (one layer array per layer);
    read back it is the same model once its receptive field has passed (NAM starts from its prewarm
    on silence, the players from a zero history)."""
    b = bundles["smartamp_5x10"]
    out = tmp_path / "m.nam"
    assert cli_main(["export-model", str(b.path), str(out), "--format", "nam"]) == 0
    back = read_model(out)
    x = X.astype(np.float64)
    rf = b.architecture.receptive_field
    a = reference.run_stateful(b.architecture, b.weights, x)[0][0]
    c = reference.run_stateful(back.architecture, back.weights, x)[0][0]
    assert np.max(np.abs(a[rf:] - c[rf:])) < 1e-6


def test_smartamppro_other_sizes_compose_as_the_plugin_runs_them(tmp_path):
    """A 240-sample window into a 24-row second conv composes like lstm.cpp computes it; a first conv
    whose last frame reaches past its padded window (kernel 30, stride 12: lstm.cpp's slice runs off
    the end) is refused by name, not a traceback."""
    rng = np.random.default_rng(2)

    def layer(*shape):
        return {"kernel:0": rng.normal(0, 0.3, shape).tolist(), "bias:0": rng.normal(0, 0.1, shape[-1]).tolist()}

    doc = {"conv1d": layer(12, 1, 3), "conv1d_1": layer(24, 3, 2), "lstm": layer(2, 20), "dense": layer(5, 1),
           "input_size": 240, "conv1d_stride": 12, "conv1d_1_stride": 24}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    m = read_model(path)
    x = P["input"][:400].astype(np.float64)
    got = reference.run_stateful(m.architecture, m.weights, x)[0][0]
    assert np.max(np.abs(got - plugins_lstm_cpp(doc, x))) < 1e-6
    doc.update(conv1d=layer(30, 1, 3))
    _refused_writing_nothing(tmp_path, doc, "reaches past its padded window")
