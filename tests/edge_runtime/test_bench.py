"""edgeamp bench: latency figures, quality against the reference, versions recorded, files written."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeamp.cli import main
from edgeamp.edge_runtime import native
from edgeamp.edge_runtime.bench import bench_bundle, markdown


def test_bench_bundle_figures(exported_bundles):
    r = bench_bundle(exported_bundles["stateful"], hops=40, warmup=5, device="CPU", threads=1,
                     knobs={"gain": 7.0}, peak=True, backend="openvino")
    assert r["variant"] == "stateful" and r["precision"] == "f32" and r["knobs"] == {"gain": 7.0}
    assert len(r["hop_times_ms"]) == 40 and 0 < r["hop_ms_p50"] <= r["hop_ms_p99"] <= r["hop_ms_max"]
    assert r["real_time_factor"] > 0 and r["compile_seconds"] > 0 and r["rss_mib"] > 10 and r["memory_mib"] >= 0
    assert r["esr_vs_reference"] < 1e-8  # f32 IR against the float64 reference on the same noise
    assert 0 < r["fraction_of_peak"] < 1 and r["peak_gflops_matmul"] > 0
    env = r["environment"]
    assert env["openvino"] and env["edgeamp"] and env["cpu"] and env["device"] == "CPU"
    table = markdown([r])
    assert "| stateful.bundle | CPU | stateful | f32 / f32 | 1 |" in table and env["openvino"] in table
    # the device's own time (benchmark_app's measure) apart from what edgeamp adds around it, both
    # from the same hops: the overhead is never negative (two medians of two runs made it -0.017 ms)
    assert 0 < r["device_ms_p50"] <= r["device_ms_p99"] and r["inference_precision"] == "f32"
    assert 0 <= r["overhead_ms_p50"] <= r["overhead_ms_p99"] and r["device_ms_p50"] <= r["hop_ms_p50"]
    assert r["real_time_factor"] == pytest.approx(10.0 / r["hop_ms_p50"])  # from the p50, as the columns
    assert "RTF: hop length / p50" in table


def test_the_device_part_is_timed_inside_each_hop(exported_bundles):
    from edgeamp.edge_runtime.bench import noise, open_for_bench, run_timed

    for backend in ("openvino", "native") if native.unavailable_reason() is None else ("openvino",):
        _, proc, _ = open_for_bench(exported_bundles["stateful"], device="CPU", threads=1, backend=backend)
        x = noise(30, proc.hop_samples)
        y = np.empty_like(x)
        hop, device = run_timed(proc, x, y)
        assert hop.shape == device.shape == (30,) and np.all(device > 0) and np.all(hop >= device), backend
        assert "compute" not in vars(proc.engine)  # the clock is gone afterwards
    _, proc, _ = open_for_bench(exported_bundles["stateful"], backend="numpy")
    assert run_timed(proc, x, np.empty_like(x))[1] is None  # no device part to time


def test_benchmark_app_command_runs_the_same_ir(exported_bundles):
    """The printed command is OpenVINO's own tool on the same IR, one request at a time, f32, 1 thread."""
    r = bench_bundle(exported_bundles["stateful"], hops=20, warmup=2, device="CPU", threads=1, peak=False,
                     backend="openvino")
    cmd = r["benchmark_app"]
    assert "-infer_precision f32" in cmd and "-nthreads 1" in cmd and "-nstreams 1" in cmd and "-hint none" in cmd
    tool = Path(sys.executable).parent / "benchmark_app"
    if not tool.exists():
        pytest.skip("benchmark_app is not installed beside this Python")
    args = shlex.split(cmd)
    done = subprocess.run([str(tool), *args[1:]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Median" in done.stdout and "20 iterations" in done.stdout


def test_profile_gives_openvinos_per_operation_view(exported_bundles, tmp_path, capsys):
    r = bench_bundle(exported_bundles["stateful"], hops=20, warmup=2, device="CPU", threads=1, peak=False,
                     backend="openvino", profile=True)
    ops = {p["op"] for p in r["op_profile"]}
    assert "LSTMSequence" in ops and all(p["ms_per_hop"] >= 0 and p["kernel"] for p in r["op_profile"])
    assert 0 < sum(p["share"] for p in r["op_profile"]) <= 1.0 + 1e-9
    assert "| LSTMSequence |" in markdown([r])
    # on the native engine there is no graph: said, not an empty table
    assert main(["bench", str(exported_bundles["stateful"]), "--device", "CPU", "--hops", "10", "--warmup", "1",
                 "--no-peak", "--profile", "--out-dir", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    if native.unavailable_reason() is None:
        assert "--backend openvino" in err


@pytest.mark.skipif(native.unavailable_reason() is not None, reason="native engine not built")
def test_bench_on_the_native_engine(exported_bundles):
    """The default backend on a CPU: the kernel's own call is the device part, as an InferRequest is."""
    r = bench_bundle(exported_bundles["stateful"], hops=40, warmup=5, device="CPU", peak=False)
    assert r["backend"] == "auto" and r["variant"] == "native" and r["precision"] == "f32"
    assert r["esr_vs_reference"] < 1e-8 and 0 < r["device_ms_p50"] <= r["device_ms_p99"]
    assert "| stateful.bundle | CPU | native | f32 / f32 |" in markdown([r])


def test_bench_window_and_f16(exported_bundles):
    r = bench_bundle(exported_bundles["window"], hops=12, warmup=2, device="CPU", peak=False)
    assert r["mode"] == "window" and r["esr_vs_reference"] < 1e-8 and "fraction_of_peak" not in r
    r16 = bench_bundle(exported_bundles["stateful"], hops=12, warmup=2, device="CPU", precision="f16", peak=False)
    assert r16["precision"] == "f16" and 0 < r16["esr_vs_reference"] < 1e-3  # FP16 weights cost a little


def test_bench_cli_writes_json_markdown_png(exported_bundles, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", str(exported_bundles["stateful"]), "--device", "CPU", "--hops", "20", "--warmup", "2",
                 "--no-peak", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| stateful.bundle | CPU |" in text
    data = json.loads((out / "bench.json").read_text())
    assert data["hops"] == 20 and (out / "bench.md").is_file()
    pytest.importorskip("matplotlib")
    assert (out / "latency.png").stat().st_size > 5000
    assert main(["bench", str(exported_bundles["stateful"]), "--hops", "3"]) == 2
    assert "--hops must be at least 10" in capsys.readouterr().err


def test_bench_of_a_named_missing_device_fails_or_records_the_fallback(exported_bundles, tmp_path, capsys,
                                                                        monkeypatch):
    from edgeamp.edge_runtime import devices

    monkeypatch.setattr(devices, "available_devices", lambda: ["CPU"])  # a machine without an NPU
    args = ["bench", str(exported_bundles["stateful"]), "--device", "NPU", "--hops", "20", "--warmup", "2",
            "--no-peak", "--out-dir", str(tmp_path / "b")]
    assert main(args) == 2  # as benchmark_app -d NPU: the device that was named, or nothing
    assert "NPU" in capsys.readouterr().err and not (tmp_path / "b" / "bench.json").exists()
    assert main([*args, "--allow-fallback"]) == 0
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert data["fallback"] is True and data["device_requested"] == "NPU" and data["environment"]["device"] == "CPU"
    assert "| stateful.bundle | CPU (FALLBACK from NPU) |" in capsys.readouterr().out
