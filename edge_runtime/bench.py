"""Per-hop latency of a bundle on a device, with what is needed to compare it across machines.

:func:`bench_bundle` compiles the bundle for the device (timed), runs ``hops`` hops of noise
through a fresh processor with blocks of exactly one hop (as a live callback does), and
reports per-hop p50/p99/max, real-time factor, deadline misses, memory taken, ESR against the
float64 numpy reference on the same input (speed is never bought silently with quality), the
model's FLOPs per second of audio and the fraction of this machine's measured f32 matrix
peak (an OpenVINO MatMul, same device and threads) that the hop reaches.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import resource
import time

import numpy as np

from edgeamp.core import version
from edgeamp.core.bundle import Bundle, read_bundle
from edgeamp.core.metrics import esr
from edgeamp.core.reference import run_stateful, run_window

from . import ov_compat
from .session import ProcessorFactory, RuntimeOptions

ESR_SECONDS = 1.0  # of the run, scored against the numpy reference
log = logging.getLogger(__name__)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    core = ov_compat.core()
    family = device.split(":")[-1].split(",")[0].split(".")[0]
    try:
        full_name = str(core.get_property(family, "FULL_DEVICE_NAME")) if family != "numpy" else "numpy"
    except Exception:  # AUTO or a plugin without the property
        full_name = device
    import os

    return {"device": device, "device_name": full_name, "cpu": cpu_name(), "cores": os.cpu_count(),
            "machine": platform.machine(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "openvino": ov_compat.version(), "numpy": np.__version__,
            "edgeamp": version()}


def matmul_peak_gflops(device: str = "CPU", threads: int | None = None, n: int = 512, runs: int = 20) -> float:
    """f32 GEMM throughput of an OpenVINO MatMul (n x n x n) on ``device``: the practical peak."""
    ov, ops = ov_compat.ov(), ov_compat.opset8()
    a = ops.parameter([n, n], np.float32, name="a")
    b = ops.constant(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
    model = ov.Model([ops.matmul(a, b, False, False)], [a], "peak")
    config = ov_compat.cpu_config(threads) if device.upper().startswith("CPU") else {}
    req = ov_compat.core().compile_model(model, device, config).create_infer_request()
    req.get_input_tensor(0).data[:] = 1.0
    for _ in range(3):
        req.infer()
    t0 = time.perf_counter()
    for _ in range(runs):
        req.infer()
    return 2 * n**3 * runs / (time.perf_counter() - t0) / 1e9


def _reference(bundle: Bundle, mode: str, hop: int, x: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    m = bundle.manifest
    inp = np.concatenate([x[:, None] * m.input_gain, knobs], axis=1)[None].astype(np.float64)
    if mode == "window":
        y = run_window(m.architecture, bundle.weights, inp, m.streaming.window_samples, hop)
    else:
        y, _ = run_stateful(m.architecture, bundle.weights, inp)
    return (np.asarray(y)[0] * m.output_gain).astype(np.float32)


def rss_mib() -> float:
    """Resident memory of this process now (MiB); the peak so far where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_for_bench(bundle: Bundle, options: RuntimeOptions | None = None, **overrides):
    """``(factory, processor, compile seconds)``: a fresh aligned processor, compile timed (and the
    memory it took: ``processor.bench_rss_before``). ``overrides`` replace fields of ``options``."""
    rss_before = rss_mib()
    t0 = time.perf_counter()
    factory = ProcessorFactory(bundle, options, **overrides)
    proc = factory.new(aligned=True)
    compile_s = time.perf_counter() - t0
    proc.bench_rss_before = rss_before
    return factory, proc, compile_s


class _DeviceClock:
    """Installed on an engine instance in place of its ``compute()`` (the device's part of a hop: an
    InferRequest's start_async + wait, the native kernel's call), it times each call, so that the hop
    and the device's part of it come from the same hop loop."""

    def __init__(self, engine, n: int) -> None:
        self._engine, self._compute = engine, engine.compute
        self.ns = np.zeros(n, np.int64)
        self.calls = 0

    def __call__(self) -> None:
        t0 = time.perf_counter_ns()
        self._compute()
        self.ns[self.calls % self.ns.shape[0]] = time.perf_counter_ns() - t0
        self.calls += 1

    def __enter__(self) -> _DeviceClock:
        self._engine.compute = self
        return self

    def __exit__(self, *exc) -> None:
        del self._engine.compute  # the class's own method again


def run_timed(proc, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``x`` into ``y`` through ``proc`` one hop a call (as a live callback does). Returns each
    hop's time (ms, the whole ``process`` call: what a callback pays) and, timed inside the same call,
    the device's part of it (None for an engine without ``compute``: the numpy reference, a batch row)."""
    hop = proc.hop_samples
    n = x.shape[0] // hop
    hop_ns = np.zeros(n, np.int64)
    clock = _DeviceClock(proc.engine, n) if callable(getattr(proc.engine, "compute", None)) else None
    with clock or contextlib.nullcontext():
        for i in range(n):
            t0 = time.perf_counter_ns()
            proc.process(x[i * hop : (i + 1) * hop], y[i * hop : (i + 1) * hop])
            hop_ns[i] = time.perf_counter_ns() - t0
    device = None
    if clock is not None:
        if clock.calls != n:  # an engine whose hops are not one compute each: no device column
            log.warning("the engine ran %d computes for %d hops: no device time", clock.calls, n)
        else:
            device = clock.ns / 1e6
    return hop_ns / 1e6, device


def noise(hops: int, hop: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.5, 0.5, hops * hop).astype(np.float32)


def figures(bundle: Bundle, factory: ProcessorFactory, proc, x: np.ndarray, y: np.ndarray, *, hops: int,
            compile_s: float, threads: int | None, peak_gflops: float | None,
            hop_times: np.ndarray | None = None, device_times: np.ndarray | None = None) -> dict:
    """Everything reported for one configuration, from a processor that ran ``x`` into ``y`` from reset
    (the last ``hops`` hop times are the sample: ``hop_times`` from :func:`run_timed`, else the engine
    calls the processor timed). ``device_times``: the device's part of the same hops; with it, the
    device's p50/p99 and edgeamp's overhead (the p50 of each hop's time less its device part)."""
    t = (proc.hop_times_ms() if hop_times is None else hop_times)[-hops:]
    rss_after = rss_mib()  # before the reference run below allocates
    hop, sr = proc.hop_samples, proc.sample_rate
    hop_ms = hop / sr * 1000
    n_ref = min(x.shape[0], int(ESR_SECONDS * sr) // hop * hop)
    knob_cols = np.tile(proc.knob_inputs, (n_ref, 1)) if proc.arch.knobs else np.zeros((n_ref, 0), np.float32)
    ref = _reference(bundle, factory.mode, hop, x[:n_ref], knob_cols)
    arch = bundle.manifest.architecture
    achieved = arch.flops_per_sample() * hop / (float(np.median(t)) / 1000)
    result = {
        "bundle": str(bundle.path), "mode": factory.mode, "backend": factory.backend,
        "variant": factory.choice.variant if factory.choice else "numpy",
        "device_requested": factory.options.device,
        "device_choice": factory.choice.reason if factory.choice else "numpy reference",
        "fallback": bool(factory.choice and factory.choice.reason.startswith("fallback")),
        "precision": factory.precision,
        "inference_precision": factory.options.inference_precision,
        "threads": threads, "hop_samples": hop, "hop_ms": hop_ms, "sample_rate": sr,
        "model": arch.describe(), "architecture": arch.summary(), "knobs": proc.knob_values(),
        "hops": int(t.shape[0]),
        "compile_seconds": compile_s,
        "hop_ms_p50": float(np.percentile(t, 50)), "hop_ms_p99": float(np.percentile(t, 99)),
        "hop_ms_max": float(t.max()), "hop_ms_mean": float(t.mean()),
        "real_time_factor": hop_ms / float(np.median(t)),  # from the p50, like the columns beside it
        "real_time_factor_mean": hop_ms / float(t.mean()),
        "deadline_misses": int(np.count_nonzero(t > hop_ms)),
        "rss_mib": rss_after,
        "memory_mib": rss_after - getattr(proc, "bench_rss_before", rss_after),  # compiled model + buffers
        "esr_vs_reference": esr(ref, y[:n_ref]),
        "max_abs_error_vs_reference": float(np.max(np.abs(ref - y[:n_ref]))),
        "model_gflops_per_audio_second": arch.flops_per_sample() * sr / 1e9,
        "achieved_gflops": achieved / 1e9,
        "hop_times_ms": t.tolist(),
        "environment": environment(factory.device),
    }
    if peak_gflops:
        result["peak_gflops_matmul"] = peak_gflops
        result["fraction_of_peak"] = result["achieved_gflops"] / peak_gflops
    if device_times is not None:  # what the device takes, and what edgeamp adds around it, hop by hop
        d = device_times[-hops:]
        result["device_ms_p50"] = float(np.percentile(d, 50))
        result["device_ms_p99"] = float(np.percentile(d, 99))
        result["overhead_ms_p50"] = float(np.percentile(t - d, 50))
        result["overhead_ms_p99"] = float(np.percentile(t - d, 99))
    if factory.compiled is not None:
        result["benchmark_app"] = benchmark_app_command(factory, hops)
    return result


def benchmark_app_command(factory: ProcessorFactory, hops: int) -> str:
    """OpenVINO's own benchmark_app on the same IR, device, precision and threads, one request at a
    time (its defaults differ: throughput hint, several streams, bf16 execution where the CPU has it)."""
    o = factory.options
    cmd = [f"benchmark_app -m {factory.xml_path} -d {factory.choice.device} -api sync -hint none -nstreams 1",
           f"-niter {hops}"]
    if factory.choice.device.upper().startswith("CPU"):
        cmd.append(f"-infer_precision {o.inference_precision}")
        if o.threads:
            cmd.append(f"-nthreads {o.threads}")
    return " ".join(cmd)


def op_profile(factory: ProcessorFactory, hops: int = 200, top: int = 8) -> list[dict] | None:
    """OpenVINO's per-operation counters (``PERF_COUNT``, what ``benchmark_app -pc`` prints) over
    ``hops`` hops of noise on a second compile of the same IR with counting on (counting costs time:
    the timed run never counts). Summed by operation type and the kernel the plugin picked, the
    ``top`` largest, in ms per hop with their share of the counted time. None for the native engine
    and the numpy reference (no OpenVINO graph runs)."""
    if factory.compiled is None:
        return None
    from .engines import OpenVINOEngine, compile_ir, initial_inputs

    m = factory.bundle.manifest
    config = {}
    if factory.choice.device.upper().startswith("CPU"):
        config = ov_compat.cpu_config(factory.options.threads, factory.options.inference_precision)
    compiled = compile_ir(factory.xml_path, factory.choice.device, {**config, "PERF_COUNT": "YES"})
    engine = OpenVINOEngine(factory.xml_path, factory.choice.variant, m.architecture, factory.hop_samples,
                            device=factory.choice.device, window_samples=factory.entry.window_samples,
                            compiled=compiled, initial=initial_inputs(m.architecture, factory.bundle.weights))
    x = noise(hops, factory.hop_samples)
    knobs = np.zeros((factory.hop_samples, len(m.architecture.knobs)), np.float32)
    by: dict[tuple[str, str], float] = {}
    try:
        for i in range(hops):
            engine.run_hop(x[i * factory.hop_samples : (i + 1) * factory.hop_samples], knobs)
            for p in engine.request.profiling_info:
                rt = p.real_time
                us = rt.total_seconds() * 1e6 if hasattr(rt, "total_seconds") else float(rt)
                if us > 0:
                    key = (p.node_type, p.exec_type)
                    by[key] = by.get(key, 0.0) + us
    finally:
        engine.close()
    total = sum(by.values()) or 1.0
    rows = sorted(by.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": op, "kernel": kernel, "ms_per_hop": us / hops / 1000, "share": us / total}
            for (op, kernel), us in rows]


def bench_bundle(bundle: Bundle | str, options: RuntimeOptions | None = None, *, hops: int = 1000,
                 warmup: int = 50, peak: bool = True, profile: bool = False, **overrides) -> dict:
    """Measure one configuration, opened with ``options`` (fields replaced by ``overrides``);
    ``profile``: add OpenVINO's per-operation view (:func:`op_profile`) as ``op_profile``."""
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(bundle)
    factory, proc, compile_s = open_for_bench(bundle, options, **overrides)
    threads = factory.options.threads
    x = noise(warmup + hops, proc.hop_samples)
    y = np.empty_like(x)
    hop_times, device_times = run_timed(proc, x, y)
    peak_gflops = matmul_peak_gflops(factory.choice.device, threads) if peak and factory.choice else None
    result = figures(bundle, factory, proc, x, y, hops=hops, compile_s=compile_s, threads=threads,
                     peak_gflops=peak_gflops, hop_times=hop_times, device_times=device_times)
    if profile:
        result["op_profile"] = op_profile(factory, hops=min(hops, 300))
    return result


def markdown(results: list[dict]) -> str:
    lines = ["| bundle | device | variant | weights / execution | threads | hop ms | p50 ms | p99 ms | max ms "
             "| device p50 ms | edgeamp overhead ms | RTF | misses | compile s | memory MiB | ESR vs ref | % of peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        frac = r.get("fraction_of_peak")
        lines.append(
            f"| {r['bundle'].rsplit('/', 1)[-1]} | {r['environment']['device']}"
            f"{' (FALLBACK from ' + r['device_requested'] + ')' if r.get('fallback') else ''} | {r['variant']} "
            f"| {r['precision']} / {r.get('inference_precision', 'f32')} "
            f"| {r['threads'] or 'auto'} | {r['hop_ms']:g} | {r['hop_ms_p50']:.3f} | {r['hop_ms_p99']:.3f} "
            f"| {r['hop_ms_max']:.3f} | {_opt(r.get('device_ms_p50'))} | {_opt(r.get('overhead_ms_p50'))} "
            f"| {r['real_time_factor']:.2f} | {r['deadline_misses']} "
            f"| {r['compile_seconds']:.2f} | {r['memory_mib']:.1f} | {r['esr_vs_reference']:.1e} "
            f"| {'–' if frac is None else f'{100 * frac:.1f}'} |")
    env = results[0]["environment"]
    lines.append("")
    lines.append(f"{env['device_name']} ({env['cpu']}, {env['cores']} cores), {env['system']}, Python {env['python']}, "
                 f"OpenVINO {env['openvino']}, edgeamp {env['edgeamp']}")
    lines.append("")
    lines.append("p50/p99/max: the whole hop as a callback pays it; device p50: the inference alone (an "
                 "InferRequest's start_async + wait, or the native kernel's call), timed inside the same hops; "
                 "edgeamp overhead: the p50 of each hop's time less its device part; RTF: hop length / p50.")
    for r in results:
        if r.get("benchmark_app"):
            lines += ["", f"The same IR in OpenVINO's own tool: `{r['benchmark_app']}`"]
        if r.get("op_profile"):
            lines += ["", f"OpenVINO's per-operation counters ({r['bundle'].rsplit('/', 1)[-1]}, PERF_COUNT, a "
                          "separate counted run):", "",
                      "| operation | kernel | ms per hop | share of counted |", "|---|---|---|---|"]
            lines += [f"| {p['op']} | {p['kernel']} | {p['ms_per_hop']:.4f} | {100 * p['share']:.1f} % |"
                      for p in r["op_profile"]]
    return "\n".join(lines) + "\n"


def _opt(value, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def histogram_png(result: dict, path) -> bool:
    """Per-hop latency histogram with the deadline; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = np.asarray(result["hop_times_ms"])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(t, bins=80, color="#3b7dd8")
    for q, style in ((50, "--"), (99, ":")):
        v = np.percentile(t, q)
        ax.axvline(v, color="k", linestyle=style, label=f"p{q} {v:.3f} ms")
    if t.max() > 0.5 * result["hop_ms"]:
        ax.axvline(result["hop_ms"], color="r", label=f"deadline {result['hop_ms']:g} ms")
    env = result["environment"]
    ax.set(xlabel="compute time per hop (ms)", ylabel="hops",
           title=f"{env['device_name']}: {result['variant']} {result['precision']}, "
                 f"{result['real_time_factor']:.1f}x real time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
