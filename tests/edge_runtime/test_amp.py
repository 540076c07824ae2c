"""edgeamp.load / Amp: the pedalboard-style Python API."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edgeamp
from edgeamp.core.bundle import golden_signal
from edgeamp.core.metrics import esr
from edgeamp.edge_runtime import native
from edgeamp.edge_runtime.session import open_processor

SR = 48000


@pytest.fixture(scope="module")
def amp(exported_bundles):
    return edgeamp.load(exported_bundles["stateful"], device="CPU")


@pytest.fixture(scope="module")
def signal():
    return np.resize(golden_signal(SR), 30000).astype(np.float32)


def test_package_exports_the_api():
    for name in ("load", "Amp", "EdgeampError", "BundleError", "ConfigError", "InputError", "DeviceError",
                 "ExportError", "OutputError", "ModelFormatError", "__version__"):
        assert hasattr(edgeamp, name), name
    assert issubclass(edgeamp.InputError, ValueError) and issubclass(edgeamp.BundleError, edgeamp.EdgeampError)
    assert edgeamp.__version__ == edgeamp.edge_runtime.version()


def test_load_and_process_import_no_tensorflow(exported_bundles):
    code = (
        "import sys, numpy as np, edgeamp\n"
        f"amp = edgeamp.load({str(exported_bundles['stateful'])!r}, device='CPU')\n"
        "y = amp(np.zeros(1000, np.float32), 48000)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "assert not bad, bad\n"
        "print('ok', y.shape)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok (1000,)" in r.stdout, r.stderr[-2000:]


def test_output_is_aligned_and_equals_render(amp, exported_bundles, signal, tmp_path):
    import soundfile as sf

    from edgeamp.cli import main

    sf.write(tmp_path / "in.wav", signal, SR, subtype="FLOAT")
    assert main(["render", str(exported_bundles["stateful"]), str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                 "--device", "CPU"]) == 0
    rendered, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    y = amp(signal, SR)
    assert y.dtype == np.float32 and y.shape == signal.shape
    np.testing.assert_array_equal(y, rendered)
    # aligned with the input: the numpy reference of the whole signal, no delay
    ref = edgeamp.load(exported_bundles["stateful"], backend="numpy")(signal, SR)
    assert esr(ref, y) < 1e-9


def _chunked(amp, x, sr, sizes):
    amp.reset()
    out, i, k = [], 0, 0
    while i < x.shape[-1]:
        n = sizes[k % len(sizes)]
        out.append(amp(x[..., i : i + n], sr, reset=False))
        i, k = i + n, k + 1
    return np.concatenate(out, axis=-1)


@pytest.mark.parametrize("sizes", [[1], [7], [479], [480], [481], [4096], "random"])
def test_chunked_stream_equals_one_call_delayed(amp, signal, sizes):
    x = signal[:6000] if sizes == [1] else signal
    if sizes == "random":
        sizes = list(np.random.default_rng(3).integers(1, 3000, 40))
    streamed = _chunked(amp, x, SR, sizes)
    lat = amp.latency_samples
    assert lat == (0 if sizes[0] % 480 == 0 else 479)  # whole hops stream with no added latency
    whole = amp(x, SR)
    np.testing.assert_array_equal(streamed[lat:], whole[: x.shape[0] - lat])
    if lat:
        np.testing.assert_array_equal(streamed, _chunked(amp, x, SR, [x.shape[0]]))  # one reset=False call


def test_whole_hop_chunks_stream_with_no_added_latency(amp, signal):
    """As in `edgeamp live`: chunks of whole hops give the model's output sample for sample; a shorter
    last chunk is padded and ends the stream (the next chunk says so); reset starts another."""
    x = signal[: 480 * 20 + 123]
    whole = amp(x, SR)
    assert amp.latency_for(SR, 480) == 0 and amp.latency_for(SR, 960) == 0 and amp.latency_for(SR, 500) == 479
    amp.reset()
    parts = [amp(x[i : i + 960], SR, reset=False) for i in range(0, 480 * 20, 960)]
    assert amp.latency_samples == 0
    parts.append(amp(x[480 * 20 :], SR, reset=False))  # 123 samples: the last
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(edgeamp.InputError, match="ended with a shorter chunk"):
        amp(x[:480], SR, reset=False)
    amp.reset()
    assert amp.latency_samples == 479  # no stream: what chunks of any size see
    np.testing.assert_array_equal(amp(x[:480], SR, reset=False), whole[:480])


def test_reset_true_is_independent_of_history(amp, signal):
    first = amp(signal, SR)
    amp(np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32), SR, reset=False)
    np.testing.assert_array_equal(amp(signal, SR), first)
    amp(signal[:1000], SR, reset=False)
    amp.reset()
    again = amp(signal[:1000], SR, reset=False)
    amp.reset()
    np.testing.assert_array_equal(again, amp(signal[:1000], SR, reset=False))


def test_other_rates_are_resampled_in_and_out(amp, signal):
    import soxr

    x44 = soxr.resample(signal, SR, 44100, quality="VHQ").astype(np.float32)
    y44 = amp(x44, 44100)
    assert y44.shape == x44.shape and y44.dtype == np.float32
    expected = soxr.resample(amp(signal, SR), SR, 44100, quality="VHQ")
    n = min(len(expected), len(y44))
    assert esr(expected[:n], y44[:n]) <= 1e-4
    # streaming at 44.1 kHz: chunked equals one call, and the aligned call delayed by the latency
    sizes = list(np.random.default_rng(5).integers(1, 5000, 30))
    streamed = _chunked(amp, x44, 44100, sizes)
    lat = amp.latency_samples
    assert lat == amp.latency_for(44100) and lat > 479
    np.testing.assert_allclose(streamed, _chunked(amp, x44, 44100, [len(x44)]), atol=1e-6)
    np.testing.assert_allclose(streamed[lat:], y44[: len(y44) - lat], atol=1e-6)
    assert amp.latency_for(SR) == 479  # the model's own rate is never resampled


def test_channels_layouts_and_dtypes(amp, signal):
    mono = amp(signal, SR)
    other = amp(0.5 * signal[::-1].copy(), SR)
    stereo = np.stack([signal, 0.5 * signal[::-1]])
    y = amp(stereo, SR)
    assert y.shape == stereo.shape
    np.testing.assert_array_equal(y[0], mono)  # dual mono: each channel has its own state
    np.testing.assert_array_equal(y[1], other)
    y_last = amp(stereo.T.copy(), SR)
    assert y_last.shape == (signal.shape[0], 2)
    np.testing.assert_array_equal(y_last.T, y)
    y64 = amp(signal.astype(np.float64), SR)
    assert y64.dtype == np.float32
    np.testing.assert_array_equal(y64, mono)
    # a stream of (channels, n) chunks smaller than the channel count is resolved by the stream's layout
    amp.reset()
    first = amp(stereo[:, :1000], SR, reset=False)
    tiny = amp(stereo[:, 1000:1001], SR, reset=False)
    assert first.shape == (2, 1000) and tiny.shape == (2, 1)


def test_knobs_are_attributes_with_ranges(exported_bundles, signal):
    amp = edgeamp.load(exported_bundles["stateful"], device="CPU")
    assert list(amp.knobs) == ["gain"] and amp.gain == 5.0
    state = amp.knobs["gain"]
    assert (state.minimum, state.maximum, state.default, state.value) == (0.0, 10.0, 5.0, 5.0)
    amp.gain = 7
    assert amp.gain == 7.0 and amp.knobs["gain"].value == 7.0
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", knobs={"gain": 7.0})
    lat = proc.latency_samples
    expected = proc.process(np.concatenate([signal, np.zeros(lat, np.float32)]))[lat:]
    np.testing.assert_array_equal(amp(signal, SR), expected)
    with pytest.raises(edgeamp.ConfigError, match=r"outside \[0.0, 10.0\]"):
        amp.gain = 11
    with pytest.raises(edgeamp.ConfigError, match="unknown knob 'drive'; known knobs: gain"):
        amp.drive = 3
    with pytest.raises(edgeamp.ConfigError, match="takes a number"):
        amp.gain = "loud"
    assert amp.gain == 7.0  # refused values change nothing
    with pytest.raises(edgeamp.ConfigError, match=r"outside \[0.0, 10.0\]"):
        edgeamp.load(exported_bundles["stateful"], device="CPU", knobs={"gain": -1})
    # were OverflowError, ValueError and TypeError from float()
    with pytest.raises(edgeamp.ConfigError, match="far outside its range"):
        amp.gain = 10 ** 400
    for bad, words in (({"gain": "x"}, "takes a number"), ({"gain": None}, "takes a number"),
                       ({"gain": 10 ** 400}, "far outside its range"), ([1], "must be a dict")):
        with pytest.raises(edgeamp.ConfigError, match=words):
            edgeamp.load(exported_bundles["stateful"], device="CPU", knobs=bad)
    assert amp.gain == 7.0


def test_knob_change_mid_stream_ramps_like_the_processor(exported_bundles, signal):
    amp = edgeamp.load(exported_bundles["stateful"], device="CPU")
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU")
    # 4801: not whole hops, so the stream runs with the processor's hop - 1 latency, like proc
    a1, p1 = amp(signal[:4801], SR, reset=False), proc.process(signal[:4801])
    amp.gain = 9
    proc.set_knob("gain", 9)
    a2, p2 = amp(signal[4801:], SR, reset=False), proc.process(signal[4801:])
    np.testing.assert_array_equal(np.concatenate([a1, a2]), np.concatenate([p1, p2]))


def test_info_and_repr_say_what_runs(amp):
    info = amp.info
    assert info["architecture"]["units"] == [8, 4] and info["sample_rate"] == SR
    # on a CPU the default backend runs the native engine wherever it is built (else the stateful IR)
    engine = "native" if native.unavailable_reason() is None else "stateful"
    assert info["device"] == "CPU" and info["variant"] == engine and info["precision"] == "f32"
    assert info["latency_samples"] == amp.latency_samples and "gain" in info["knobs"]
    text = repr(amp)
    for needed in ("LSTM 8-4 + dense head + input skip", "48000 Hz",
                   "CPU (native engine" if engine == "native" else "CPU (stateful IR, f32)", "latency",
                   "gain=5 (0..10)"):
        assert needed in text, (needed, text)
    assert "CPU (stateful IR, f32)" in repr(edgeamp.load(amp.info["bundle"], backend="openvino"))


@pytest.mark.parametrize("bad, words", [
    (np.zeros(100, np.int16), r"int16 \(integer samples\).*x.astype\(np.float32\) / 32768"),
    (np.zeros((2, 3, 4), np.float32), r"1-D \(n,\) mono or 2-D \(channels, n\), got 3-D"),
    (np.zeros(0, np.float32), "has no samples"),
    (np.zeros((2, 2), np.float32), "ambiguous"),
    (np.array([0.1, np.nan, np.inf], np.float32), r"2 NaN/Inf sample\(s\) \(first: channel 0, sample 1\).*nan_to_num"),
    (np.zeros(100, np.complex64), "float32 or float64"),
])
def test_bad_audio_names_the_fix(amp, bad, words):
    with pytest.raises(edgeamp.InputError, match=words):
        amp(bad, SR)


def test_refused_chunk_leaves_the_stream_untouched(amp, signal):
    amp.reset()
    a = amp(signal[:2000], SR, reset=False)
    with pytest.raises(edgeamp.InputError, match="NaN"):
        amp(np.full(100, np.nan, np.float32), SR, reset=False)
    b = amp(signal[2000:4000], SR, reset=False)
    amp.reset()
    np.testing.assert_array_equal(np.concatenate([a, b]), amp(signal[:4000], SR, reset=False))
    with pytest.raises(edgeamp.InputError, match="call amp.reset"):
        amp(np.stack([signal[:100]] * 2), SR, reset=False)  # 2 channels into a mono stream


@pytest.mark.parametrize("rate", [0, -48000, float("nan"), "48000"])
def test_bad_sample_rate(amp, rate):
    with pytest.raises(edgeamp.InputError, match="sample_rate must be a"):
        amp(np.zeros(100, np.float32), rate)


def test_a_path_that_is_not_a_bundle(tmp_path):
    with pytest.raises(edgeamp.BundleError, match="no bundle at"):
        edgeamp.load(tmp_path / "nothing")
    with pytest.raises(edgeamp.BundleError, match="missing manifest.json"):
        edgeamp.load(tmp_path)
    (tmp_path / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(edgeamp.BundleError, match="not a bundle directory"):
        edgeamp.load(tmp_path / "x.wav")


def test_amp_edges_refuse_with_named_errors(exported_bundles):
    """Inputs an outside probe found broken: huge float64 samples, empty 2-D arrays, non-audio rates;
    concurrent calls on one Amp take turns and give the right output."""
    import threading

    amp = edgeamp.load(exported_bundles["stateful"], device="CPU")
    with pytest.raises(edgeamp.InputError, match="beyond float32's range"):
        amp(np.full(100, 1e308), SR)
    with pytest.raises(edgeamp.InputError, match="beyond float32's range"):
        amp(np.full(100, 1e39), SR)
    for empty in (np.zeros((2, 0), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)):
        with pytest.raises(edgeamp.InputError, match="has no samples"):
            amp(empty, SR)
    for rate in (1e9, 2e8, 10, 10**400):
        with pytest.raises(edgeamp.InputError, match="sample_rate"):
            amp(np.zeros(480, np.float32), rate, reset=False)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 4800).astype(np.float32)
    want = amp(x, SR)
    outs, errors = [], []

    def call():
        try:
            outs.append(amp(x, SR))
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(outs) == 8
    for y in outs:
        np.testing.assert_array_equal(y, want)


def test_amp_follows_pedalboards_plugin_signature(amp, signal):
    """pedalboard's Plugin.process(input_array, sample_rate, buffer_size=8192, reset=True): positional
    buffer_size and reset work (they failed), the Plugin attributes are there, knobs show in dir()."""
    whole = amp(signal, SR)
    np.testing.assert_array_equal(amp.process(signal, SR, 256), whole)
    np.testing.assert_array_equal(amp(input_array=signal, sample_rate=SR, buffer_size=64, reset=True), whole)
    amp.reset()
    first = amp(signal[:480], SR, 8192, False)
    np.testing.assert_array_equal(np.concatenate([first, amp(signal[480:960], SR, 8192, False)]),
                                  np.concatenate([np.zeros(amp.latency_samples, np.float32),
                                                  whole])[:960])
    assert amp.is_effect and not amp.is_instrument
    assert "gain" in dir(amp) and "process" in dir(amp)
    with pytest.raises(edgeamp.InputError, match="buffer_size"):
        amp(signal, SR, 0)
    with pytest.raises(edgeamp.InputError, match="reset must be True or False"):
        amp(signal, SR, 8192, "no")
