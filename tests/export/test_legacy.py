"""Legacy CuDNNLSTM import against a numpy emulation of cuDNN's canonical-parameter LSTM.

The files are written with h5py in the exact structure Keras 2 used for model.save() and
model.save_weights() of CuDNNLSTM models (layer groups, `kernel:0` dataset names,
`layer_names`/`weight_names` attributes, a `model_config` JSON attribute).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from edgeamp.cli import main as cli_main
from edgeamp.core import reference
from edgeamp.core.bundle import read_bundle, verify_golden
from edgeamp.core.errors import LegacyImportError
from edgeamp.interop.keras_h5 import cudnn_lstm_to_canonical, legacy_to_weights, read_legacy_h5


def random_cudnn_layer(rng, n_in, units):
    """Weights at the scale training leaves them (about 1.5x Glorot), float32 values."""
    std = 1.5 / np.sqrt(n_in + units)
    return tuple(
        a.astype(np.float32).astype(np.float64)
        for a in (
            rng.normal(0, std, (n_in, 4 * units)),
            rng.normal(0, std, (units, 4 * units)),
            rng.normal(0, 0.3, (8 * units,)),
        )
    )


def cudnn_emulation(layers, head, x):
    """cuDNN's LSTM on the canonical parameter buffer that Keras-2 CuDNNLSTM builds.

    Keras 2 concatenates the gate blocks flattened row-major (kernel i,f,c,o, recurrent
    i,f,c,o, then 8 bias vectors); cuDNN reads each weight matrix back as (U, in) row-major
    and computes gate = W x + R h + b_w + b_r. x: (time, n_in) -> (time,).
    """
    seq = np.asarray(x, dtype=np.float64)
    for kernel, rec, bias in layers:
        n_in, units = kernel.shape[0], rec.shape[0]
        buffer = np.concatenate(
            [b.reshape(-1) for b in np.hsplit(kernel, 4)]
            + [b.reshape(-1) for b in np.hsplit(rec, 4)]
            + [bias]
        )
        off = 0
        w, r = [], []
        for _ in range(4):
            w.append(buffer[off : off + units * n_in].reshape(units, n_in))
            off += units * n_in
        for _ in range(4):
            r.append(buffer[off : off + units * units].reshape(units, units))
            off += units * units
        bw = buffer[off : off + 4 * units].reshape(4, units)
        br = buffer[off + 4 * units :].reshape(4, units)
        h = np.zeros(units)
        c = np.zeros(units)
        out = []
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        for xt in seq:
            gi, gf, gc, go = (w[g] @ xt + r[g] @ h + bw[g] + br[g] for g in range(4))
            c = sig(gf) * c + sig(gi) * np.tanh(gc)
            h = sig(go) * np.tanh(c)
            out.append(h)
        seq = np.array(out)
    if head is not None:
        seq = seq @ head[0] + head[1]
    return seq[:, 0]


def write_keras2_h5(path, layers, head=None, *, weights_only=False, window=None, extra_layer=None):
    """A file laid out exactly as Keras 2.2.4 wrote it for a Sequential of CuDNNLSTM layers."""
    names = [f"cu_dnnlstm_{i + 1}" for i in range(len(layers))]
    config_layers = []
    for i, (name, (k, r, _b)) in enumerate(zip(names, layers)):
        conf = {"name": name, "trainable": True, "units": r.shape[0], "return_sequences": True,
                "return_state": False, "stateful": False, "go_backwards": False,
                "kernel_initializer": {"class_name": "VarianceScaling", "config": {}}}
        if i == 0:
            conf["batch_input_shape"] = [None, window, k.shape[0]]
            conf["dtype"] = "float32"
        config_layers.append({"class_name": "CuDNNLSTM", "config": conf})
    if head is not None:
        names.append("dense_1")
        config_layers.append({"class_name": "Dense", "config": {"name": "dense_1", "units": 1, "activation": "linear"}})
    if extra_layer:
        names.append(extra_layer[0])
        config_layers.append({"class_name": extra_layer[1], "config": {"name": extra_layer[0]}})
    with h5py.File(path, "w") as f:
        if weights_only:
            g = f
        else:
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps(
                {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": config_layers}}
            ).encode("utf8")
            f.attrs["training_config"] = json.dumps({"loss": "mse"}).encode("utf8")
            g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([n.encode() for n in names])
        g.attrs["backend"] = b"tensorflow"
        g.attrs["keras_version"] = b"2.2.4"
        tensors = [dict(zip(["kernel:0", "recurrent_kernel:0", "bias:0"], lw)) for lw in layers]
        if head is not None:
            tensors.append({"kernel:0": head[0], "bias:0": head[1]})
        if extra_layer:
            tensors.append(extra_layer[2])
        for name, arrays in zip(names, tensors):
            lg = g.create_group(name)
            lg.attrs["weight_names"] = np.array([f"{name}/{w}".encode() for w in arrays])
            inner = lg.create_group(name)
            for w, arr in arrays.items():
                inner.create_dataset(w, data=np.asarray(arr, dtype=np.float32))


SHAPES = [((1, 64), (64, 64), (64, 1)), ((1, 5),), ((3, 4), (4, 2)), ((2, 6),)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{a}x{b}" for a, b in s))
@pytest.mark.parametrize("weights_only", [False, True])
def test_converted_model_matches_cudnn_emulation(tmp_path, shape, weights_only):
    rng = np.random.default_rng(len(shape))
    layers = [random_cudnn_layer(rng, i, u) for i, u in shape]
    head = None
    if shape[-1][1] != 1:
        head = (rng.normal(0, 0.5, (shape[-1][1], 1)).astype(np.float32), np.array([0.1], np.float32))
    path = tmp_path / "model.h5"
    write_keras2_h5(path, layers, head, weights_only=weights_only)
    arch, weights = legacy_to_weights(read_legacy_h5(path))
    assert arch.units == tuple(u for _i, u in shape)
    x = rng.uniform(-1, 1, size=(200, shape[0][0]))
    got, _ = reference.run_stateful(arch, weights, x[None])
    want = cudnn_emulation(layers, None if head is None else (head[0].astype(np.float64), head[1]), x)
    np.testing.assert_allclose(got[0], want, atol=1e-5, rtol=0)


def test_bias_sum_alone_is_wrong():
    """Why the per-gate transpose matters: skipping it changes the output far beyond tolerance."""
    rng = np.random.default_rng(0)
    k, r, b = random_cudnn_layer(rng, 3, 4)
    from edgeamp.core.model import Architecture, Knob, LayerWeights, ModelWeights

    arch = Architecture((4,), head=True, knobs=(Knob("a"), Knob("b")))  # 3 input channels
    head = (np.ones((4, 1)), np.zeros(1))
    x = rng.uniform(-1, 1, (1, 100, 3))
    right = ModelWeights((LayerWeights(*cudnn_lstm_to_canonical(k, r, b)),), *head)
    naive = ModelWeights((LayerWeights(k, r, b[:16] + b[16:]),), *head)
    y_right, _ = reference.run_stateful(arch, right, x)
    y_naive, _ = reference.run_stateful(arch, naive, x)
    np.testing.assert_allclose(y_right[0], cudnn_emulation([(k, r, b)], head, x[0]), atol=1e-10)
    assert np.max(np.abs(y_right - y_naive)) > 0.05


def test_cli_import_writes_window_bundle(tmp_path, capsys):
    rng = np.random.default_rng(1)
    layers = [random_cudnn_layer(rng, 1, 6), random_cudnn_layer(rng, 6, 1)]
    write_keras2_h5(tmp_path / "m.h5", layers, window=96)
    out = tmp_path / "amp.bundle"
    rc = cli_main(["import-legacy", str(tmp_path / "m.h5"), str(out), "--sample-rate", "48000", "--hop-samples", "16"])
    assert rc == 0
    b = read_bundle(out)
    s = b.manifest.streaming
    assert (s.mode, s.window_samples, s.hop_samples) == ("window", 96, 16)  # window from batch_input_shape
    assert b.manifest.provenance["keras_version"] == "2.2.4"
    assert len(b.manifest.provenance["imported_sha256"]) == 64
    assert verify_golden(b)["max_abs_error"] < 1e-6


def test_cli_import_without_values_names_the_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    write_keras2_h5(tmp_path / "m.h5", [random_cudnn_layer(np.random.default_rng(0), 1, 1)])
    assert cli_main(["import-legacy", str(tmp_path / "m.h5"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--sample-rate" in err and "--original" in err
    assert not (tmp_path / "o").exists()
    assert cli_main(["import-legacy", str(tmp_path / "m.h5"), str(tmp_path / "o"), "--original"]) == 0
    s = read_bundle(tmp_path / "o").manifest
    assert (s.sample_rate, s.streaming.window_samples, s.streaming.hop_samples) == (48000, 5280, 480)


def test_cli_import_prompts_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["44100", "", "441"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    write_keras2_h5(tmp_path / "m.h5", [random_cudnn_layer(np.random.default_rng(0), 1, 1)])
    assert cli_main(["import-legacy", str(tmp_path / "m.h5"), str(tmp_path / "o")]) == 0
    m = read_bundle(tmp_path / "o").manifest
    assert (m.sample_rate, m.streaming.window_samples, m.streaming.hop_samples) == (44100, 5280, 441)


def _malformed(tmp_path, kind):
    p = tmp_path / "bad.h5"
    rng = np.random.default_rng(0)
    if kind == "not hdf5":
        p.write_bytes(b"this is not hdf5")
    elif kind == "no layer_names":
        with h5py.File(p, "w") as f:
            f.create_group("model_weights")
    elif kind == "bias 4U for cudnn class":
        k, r, b = random_cudnn_layer(rng, 1, 2)
        write_keras2_h5(p, [(k, r, b[:8])])
    elif kind == "unsupported layer":
        conv = ("conv1d_1", "Conv1D", {"kernel:0": np.ones((3, 2, 1))})
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 2)], extra_layer=conv)
    elif kind == "missing dataset":
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 1)])
        with h5py.File(p, "a") as f:
            del f["model_weights/cu_dnnlstm_1/cu_dnnlstm_1/bias:0"]
    elif kind == "last layer not 1 unit":
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 3)])
    elif kind == "layers do not chain":
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 3), random_cudnn_layer(rng, 2, 1)])
    elif kind == "gzip bomb":  # a few KB on disk, 2 GiB declared
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 1)])
        with h5py.File(p, "a") as f:
            name = "model_weights/cu_dnnlstm_1/cu_dnnlstm_1/kernel:0"
            del f[name]
            f.create_dataset(name, shape=(16384, 16384), dtype="f8", compression="gzip", fillvalue=0.0)
    elif kind == "external link":
        other = tmp_path / "other.h5"
        with h5py.File(other, "w") as f:
            f.create_dataset("w", data=np.zeros(4))
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 1)])
        with h5py.File(p, "a") as f:
            name = "model_weights/cu_dnnlstm_1/cu_dnnlstm_1/bias:0"
            del f[name]
            f[name] = h5py.ExternalLink(str(other), "w")
    elif kind in ("config a list", "config deep", "layer name not utf-8"):
        write_keras2_h5(p, [random_cudnn_layer(rng, 1, 1)])
        with h5py.File(p, "a") as f:
            if kind == "config a list":
                f.attrs["model_config"] = b"[1, 2]"
            elif kind == "config deep":
                f.attrs["model_config"] = b"[" * 100000 + b"]" * 100000
            else:
                f["model_weights"].attrs["layer_names"] = np.array([b"\xff\xfe"])
    return p


MALFORMED = {
    "not hdf5": "not an HDF5 file",
    "no layer_names": "no 'layer_names' attribute",
    "bias 4U for cudnn class": r"bias \(8,\); expected \(in, 4U\), \(U, 4U\), \(8U,\)",
    "unsupported layer": "class Conv1D is not supported",
    "missing dataset": "lists weight .* that is not stored",
    "last layer not 1 unit": "last recurrent layer must have 1 unit",
    "layers do not chain": "takes 2 inputs but the layer before gives 3",
    # were a 2.15 GB read, a read of another file, AttributeError, RecursionError and UnicodeDecodeError
    "gzip bomb": r"declares shape \(16384, 16384\) .* refused unread",
    "external link": "links to another file",
    "config a list": "model_config attribute is a JSON list",
    "config deep": "nested too deeply",
    "layer name not utf-8": "a layer name is not UTF-8 text",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_files_give_clear_errors(tmp_path, kind):
    import resource

    path = _malformed(tmp_path, kind)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LegacyImportError, match=MALFORMED[kind]):
        legacy_to_weights(read_legacy_h5(path), source=str(path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 << 10  # KiB


def test_a_guitarlstm_conv1d_front_end_is_refused_saying_why():
    """GuitarML's GuitarLSTM / SmartAmpPro Keras models: Conv1D(stride) x2 over a window, then an LSTM
    with return_sequences=False. Refused by what it is, not as an unknown layer."""
    from edgeamp.interop.keras_h5 import LegacyLayer, LegacyModel

    conv = LegacyLayer("conv1d", "Conv1D", (np.zeros((12, 1, 16), np.float32), np.zeros(16, np.float32)), {})
    lstm = LegacyLayer("lstm", "LSTM", (np.zeros((16, 144), np.float32), np.zeros((36, 144), np.float32),
                                        np.zeros(144, np.float32)), {"return_sequences": False})
    dense = LegacyLayer("dense", "Dense", (np.zeros((36, 1), np.float32), np.zeros(1, np.float32)), {})
    with pytest.raises(LegacyImportError, match="GuitarLSTM / SmartAmpPro shape"):
        legacy_to_weights(LegacyModel((conv, lstm, dense), "2.4.0", 120), source="guitarlstm.h5")
