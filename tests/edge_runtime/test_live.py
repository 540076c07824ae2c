"""Live audio: the callback driven directly, and a real PortAudio stream against JACK's dummy driver."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeamp.core.errors import InputError
from edgeamp.edge_runtime.live import LiveEngine
from edgeamp.edge_runtime.session import open_processor

from ..conftest import REAL_AMP, needs_real_amp


class Status:
    def __init__(self, overflow=False, underflow=False):
        self.input_overflow, self.output_underflow = overflow, underflow

    def __bool__(self):
        return self.input_overflow or self.output_underflow


def _engine(exported_bundles, hops=1):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    return LiveEngine(proc, 480 * hops), proc


def test_callback_output_equals_processor(exported_bundles):
    engine, _ = _engine(exported_bundles, hops=2)
    ref, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        indata = rng.uniform(-0.5, 0.5, (960, 1)).astype(np.float32)
        outdata = np.empty((960, 1), np.float32)
        engine.callback(indata, outdata, 960, None, Status())
        np.testing.assert_array_equal(outdata[:, 0], ref.process(indata[:, 0].copy()))
    assert engine.stats.callbacks == 5 and engine.stats.xruns == 0
    assert engine.summary()["hops"] == 10


def test_callback_counts_xruns_and_bad_blocks(exported_bundles):
    engine, _ = _engine(exported_bundles)
    out = np.ones((480, 1), np.float32)
    engine.callback(np.zeros((480, 1), np.float32), out, 480, None, Status(overflow=True))
    engine.callback(np.zeros((480, 1), np.float32), out, 480, None, Status(underflow=True))
    assert (engine.stats.xruns, engine.stats.input_overflows, engine.stats.output_underflows) == (2, 1, 1)
    short = np.ones((100, 1), np.float32)
    engine.callback(np.zeros((100, 1), np.float32), short, 100, None, Status())
    assert engine.stats.xruns == 3 and np.all(short == 0)


def test_late_callbacks_counted(exported_bundles):
    engine, _ = _engine(exported_bundles)
    engine.budget_ns = 1  # nothing finishes in 1 ns
    engine.callback(np.zeros((480, 1), np.float32), np.empty((480, 1), np.float32), 480, None, Status())
    assert engine.stats.late_callbacks == 1
    assert "late 1" in engine.status_line()


def test_reset_and_bypass(exported_bundles):
    engine, proc = _engine(exported_bundles)
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (480, 1)).astype(np.float32)
    first = np.empty_like(x)
    engine.callback(x, first, 480, None, Status())
    engine.reset_requested = True
    again = np.empty_like(x)
    engine.callback(x, again, 480, None, Status())
    np.testing.assert_array_equal(first, again)
    proc.bypass = True
    dry = np.empty_like(x)
    engine.callback(x, dry, 480, None, Status())
    np.testing.assert_array_equal(dry, x)
    assert "BYPASS" in engine.status_line()


def test_block_must_be_whole_hops(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    with pytest.raises(InputError, match="multiple of the hop"):
        LiveEngine(proc, 500)


def _live(bundle, env, seconds=4.0):
    cmd = [sys.executable, "-m", "edgeamp", "live", str(bundle), "--host-api", "jack",
           "--seconds", str(seconds), "--json", "--device", "CPU", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.audio
def test_real_stream_under_jack_dummy(jack_server, exported_bundles):
    """A real PortAudio stream through the model, paced by JACK's dummy driver. What a test can
    assert whatever else the machine does: the stream is paced by the device (about 100 callbacks a
    second, not thousands), every callback ran the model, and xruns and late callbacks are counted.
    How many xruns a model causes is a figure of the machine's load: benchmarks/test_live_jack.py
    records it (issue 16: asserting zero xruns here failed CI under load)."""
    summary = _live(exported_bundles["stateful"], jack_server)
    expected = summary["wall_seconds"] * 48000 / 480
    assert 0.5 * expected <= summary["callbacks"] <= 1.1 * expected, summary
    assert summary["hops"] == summary["callbacks"] and summary["block_ms"] == 10.0, summary
    assert summary["output_channels"] == [1, 2] and not summary["resampled"], summary  # dual mono by default
    for key in ("xruns", "late_callbacks", "input_overflows", "output_underflows"):
        assert isinstance(summary[key], int) and 0 <= summary[key] <= summary["callbacks"], (key, summary)


def test_keys_turn_knobs_on_the_audio_thread(exported_bundles):
    from edgeamp.edge_runtime.live import KeyControl

    engine, _ = _engine(exported_bundles)
    keys = KeyControl(engine)
    assert "1 gain" in keys.help()
    assert keys.press("1") == "knob gain selected"
    assert keys.press("+") == "gain 5.5" and engine.proc.knob_values() == {"gain": 5.0}  # not yet: queued
    block = np.zeros(480, np.float32)
    out = np.zeros((480, 1), np.float32)
    engine.callback(block[:, None], out, 480, None, Status())
    assert engine.proc.knob_values() == {"gain": 5.5}  # applied at the start of the callback
    for _ in range(30):
        keys.press("-")
    engine.callback(block[:, None], out, 480, None, Status())
    assert engine.proc.knob_values() == {"gain": 0.0}  # clamped at the knob's minimum
    assert keys.press("b") == "bypass on" and engine.proc.bypass
    assert keys.press("9") is None and keys.press("x") is None
    assert "gain 0" in engine.status_line()


def test_a_refused_control_never_raises_into_the_audio_callback(exported_bundles):
    engine, proc = _engine(exported_bundles)
    engine.pending.append(lambda p: p.set_knob("volume", 1.0))  # no such knob
    out = np.zeros((480, 1), np.float32)
    engine.callback(np.zeros((480, 1), np.float32), out, 480, None, Status())
    assert engine.stats.refused_controls == 1 and engine.summary()["refused_controls"] == 1
    assert engine.stats.callbacks == 1


# ---- channels and rates (issue 16: live was mono at the model's rate only) ---------------------

def test_input_channel_and_dual_mono_outputs(exported_bundles):
    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    ref, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    engine = LiveEngine(proc, 480, input_channel=1, output_channels=(1, 3))
    rng = np.random.default_rng(2)
    for _ in range(5):
        indata = rng.uniform(-0.5, 0.5, (480, 2)).astype(np.float32)
        out = np.full((480, 4), 9.0, np.float32)
        engine.callback(indata, out, 480, None, Status())
        expected = ref.process(indata[:, 1].copy())
        np.testing.assert_array_equal(out[:, 1], expected)
        np.testing.assert_array_equal(out[:, 3], expected)
        assert not out[:, [0, 2]].any()  # the other outputs are silent
    assert engine.summary()["input_channel"] == 2 and engine.summary()["output_channels"] == [2, 4]
    with pytest.raises(InputError, match="counted from 1"):
        LiveEngine(proc, 480, output_channels=())


def test_an_interface_at_another_rate_is_resampled(exported_bundles):
    """44.1 kHz callbacks of 441 frames through a 48 kHz model: the model's whole-signal output at
    44.1 kHz (edgeamp.Amp, the same resampler), delayed by the reported latency, which is about a
    millisecond (was 50 ms with soxr's streaming HQ, and a whole hop more from the hop grid)."""
    import edgeamp

    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    engine = LiveEngine(proc, 441, device_rate=44100)
    lat = engine.latency_samples
    assert engine.resampled and 0 < lat <= 0.003 * 44100
    x = (0.3 * np.sin(np.arange(44100) * 0.03)).astype(np.float32)
    x[:2205] = 0  # 50 ms of silence first: the model heard a little more silence before it in the live chain
    got = []
    for lo in range(0, x.shape[0], 441):
        out = np.zeros((441, 1), np.float32)
        engine.callback(x[lo : lo + 441, None], out, 441, None, Status())
        got.append(out[:, 0].copy())
    got = np.concatenate(got)
    amp = edgeamp.load(exported_bundles["stateful"], device="CPU")
    np.testing.assert_allclose(got[lat:][4410:], amp(x, 44100)[:-lat][4410:], atol=1e-6)
    assert engine.summary()["resampled"] and engine.summary()["resampler_latency_ms"] == 1000 * lat / 44100
    soxr = LiveEngine(proc, 441, device_rate=44100, resample_quality="HQ")
    assert soxr.latency_samples > 40 * lat  # soxr's streaming HQ holds back about 48 ms


def test_low_latency_resampler_quality():
    """LL, measured as a resampler is: chunked equals one call, the passband is flat within 0.1 dB to
    16 kHz (44.1 <-> 48 kHz both ways), and what lands outside the tone (aliases, images) is below
    -70 dB, on tones up to 16 kHz."""
    from edgeamp.edge_runtime.resampling import PolyphaseStream

    def run(a, b, x, sizes):
        s, out, i = PolyphaseStream(a, b), [], 0
        for n in sizes:
            out.append(s.resample_chunk(x[i : i + n]))
            i += n
        out.append(s.resample_chunk(x[i:], last=True))
        return np.concatenate(out)

    noise = np.random.default_rng(0).standard_normal(9000)
    one = run(44100, 48000, noise, [9000])
    assert one.shape[0] == 9796  # ceil(9000 * 160 / 147)
    np.testing.assert_array_equal(one, run(44100, 48000, noise, [441] * 20))
    np.testing.assert_array_equal(one, run(44100, 48000, noise, [1, 7, 256, 3000]))
    for a, b in ((44100, 48000), (48000, 44100)):
        n = a  # one second
        for f in (50.0, 1000.0, 7000.0, 12000.0, 16000.0):
            f = round(f * 2) / 2  # whole cycles in a second at either rate: no leakage in the FFT
            x = np.sin(2 * np.pi * f * np.arange(n) / a)
            y = run(a, b, x, [n])[: b].astype(np.float64)
            spec = np.abs(np.fft.rfft(y * np.hanning(b)))
            k = int(round(f))
            gain_db = 20 * np.log10(np.sqrt(2 * np.mean(y[b // 10 : -b // 10] ** 2)))
            assert abs(gain_db) < 0.1, (a, b, f, gain_db)
            others = np.delete(spec, range(k - 3, k + 4))
            assert 20 * np.log10(others.max() / spec[k]) < -70, (a, b, f)
    # a tone above 22.05 kHz cannot exist at 44.1 kHz: what comes out is its alias, below -70 dB
    x = np.sin(2 * np.pi * 23000 * np.arange(48000) / 48000)
    y = run(48000, 44100, x, [48000])[2000:-2000]
    assert 20 * np.log10(np.sqrt(2 * np.mean(y ** 2))) < -70


def _band_error_db(err: np.ndarray, ref: np.ndarray, rate: int, top_hz: float = 16000.0) -> float:
    """Error power against the reference's, both below ``top_hz``, in dB."""
    keep = np.fft.rfftfreq(ref.shape[0], 1 / rate) <= top_hz
    power = [np.sum(np.abs(np.fft.rfft(s))[keep] ** 2) for s in (err, ref)]
    return float(10 * np.log10(power[0] / power[1]))


@needs_real_amp
def test_low_latency_resampler_on_a_recorded_guitar_di():
    """LL on a real DI recording (real-amp B1_M3_T7 clip 1, 44.1 kHz): against soxr's VHQ (one call, no
    delay) both ways, and the round trip a 44.1 kHz interface makes around a 48 kHz model, the error
    below 16 kHz is under -80 dB of the signal there (measured: -92 dB 44.1 -> 48, -99 dB 48 -> 44.1,
    -91 dB round trip)."""
    import soundfile as sf
    import soxr

    from edgeamp.edge_runtime.resampling import PolyphaseStream

    x, rate = sf.read(REAL_AMP / "B1_M3_T7" / "B1_M3_T7_G5_file_1_input.wav", dtype="float64", always_2d=True)
    x = x[:, 0]
    assert rate == 44100
    for a, b in ((44100, 48000), (48000, 44100)):
        xi = x if a == rate else soxr.resample(x, rate, a, "VHQ")
        ll = PolyphaseStream(a, b).resample_chunk(xi, last=True).astype(np.float64)
        vhq = soxr.resample(xi, a, b, "VHQ")
        n, cut = min(ll.shape[0], vhq.shape[0]), b // 10  # ends apart: both start and stop on silence
        assert _band_error_db(ll[cut : n - cut] - vhq[cut : n - cut], vhq[cut : n - cut], b) < -80, (a, b)
    there = PolyphaseStream(44100, 48000).resample_chunk(x, last=True)
    back = PolyphaseStream(48000, 44100).resample_chunk(there, last=True).astype(np.float64)
    n, cut = min(back.shape[0], x.shape[0]), 4410
    assert _band_error_db(back[cut : n - cut] - x[cut : n - cut], x[cut : n - cut], 44100) < -80


def test_live_device_errors_say_what_to_run(exported_bundles, capsys):
    from edgeamp.cli import main

    assert main(["live", str(exported_bundles["stateful"]), "--input-device", "no-such-interface-xyz"]) == 2
    err = capsys.readouterr().err
    assert "no-such-interface-xyz" in err and "edgeamp live --list-devices" in err
    assert main(["live", "--list-devices"]) == 0
    assert capsys.readouterr().out.strip()  # a table, or a sentence saying PortAudio sees none


def test_effects_run_before_and_after_the_model_in_the_callback(exported_bundles):
    """amp.live(before=..., after=...): the effects are called as fx(block, rate, reset=False) at the
    interface's rate around the model; one that fails passes the block through, counted."""
    calls = []

    def halve(block, rate, reset):
        calls.append(("before", rate, reset))
        return block * 0.5

    def double(block, rate, reset):
        calls.append(("after", rate, reset))
        return block * 2.0

    proc, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    ref, _ = open_processor(exported_bundles["stateful"], device="CPU", aligned=True)
    engine = LiveEngine(proc, 480, before=halve, after=double)
    x = np.random.default_rng(4).uniform(-0.5, 0.5, (480, 1)).astype(np.float32)
    out = np.zeros((480, 1), np.float32)
    engine.callback(x, out, 480, None, Status())
    np.testing.assert_allclose(out[:, 0], 2.0 * ref.process(0.5 * x[:, 0]), rtol=1e-6)
    assert calls == [("before", 48000.0, False), ("after", 48000.0, False)]
    engine.after = lambda block, rate, reset: 1 / 0
    engine.callback(x, out, 480, None, Status())
    assert engine.stats.effect_errors == 1 and np.isfinite(out).all()


LIVE_SCRIPT = r"""
import json, sys, time
import numpy as np
import edgeamp
amp = edgeamp.load(sys.argv[1], device="CPU")
seen = []
def after(block, rate, reset):
    seen.append(block.shape[0])
    return block
try:
    import pedalboard
    before = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6)])
except ImportError:
    before = None
with amp.live(host_api="jack", before=before, after=after) as stream:
    amp.gain = 7.0
    stream.wait(1.5)
    live_knobs = stream.engine.proc.knob_values()
summary = stream.stop()
print(json.dumps({"summary": summary, "seen": len(seen), "knobs": live_knobs, "pedalboard": before is not None}))
"""


@pytest.mark.audio
def test_amp_live_runs_the_model_with_pedalboard_effects(jack_server, exported_bundles):
    proc = subprocess.run([sys.executable, "-c", LIVE_SCRIPT, str(exported_bundles["stateful"])], env=jack_server,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    summary = doc["summary"]
    assert summary["callbacks"] > 20 and summary["hops"] == summary["callbacks"], summary
    assert doc["seen"] == summary["callbacks"] and summary["effect_errors"] == 0
    assert doc["knobs"] == {"gain": 7.0}  # a knob set on the Amp reached the live stream
