"""Latency sweeps that need no trained model: for VPU/NPU latency benchmarkers.

For each architecture and hop, a bundle with random weights (seeded, so a sweep is repeatable) is
written, exported and verified like any bundle, then measured on the device with
:func:`edgeamp.edge_runtime.bench.bench_bundle` (per-hop p50/p99, real-time factor, the device's own
inference time apart from edgeamp's overhead, ESR against the reference). With batch sizes, the
``batched`` IR is timed at each batch size too: what batching buys on that device.

``edgeamp bench --arch 64,64,1 --arch 32 --hop-ms 1,2.5,5,10 --batch 1,4,16 --device NPU``
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeamp.core.bundle import Bundle, Manifest, write_bundle
from edgeamp.core.errors import ConfigError, EdgeampError
from edgeamp.core.model import Architecture, Streaming, hop_from_ms, random_weights
from edgeamp.core.progress import progress
from edgeamp.core.wavenet import nam_preset
from edgeamp.core.wavenet import random_weights as wavenet_random_weights
from edgeamp.edge_runtime.bench import bench_bundle
from edgeamp.edge_runtime.session import ProcessorFactory, RuntimeOptions

from .exporter import export_bundle

log = logging.getLogger(__name__)
SAMPLE_RATE = 48000


@dataclass(frozen=True)
class ArchSpec:
    """``64,64,1``: stacked LSTM sizes; ``gru:12``: a GRU stack. A last layer of 1 unit is the
    output (the original experiment); otherwise a dense head follows the last layer (edgeamp's
    presets, NAM's and AIDA-X's models). ``wavenet:standard`` (``lite``, ``feather``, ``nano``):
    NAM's WaveNet sizes."""

    units: tuple[int, ...]
    cell: str = "lstm"
    wavenet: str = ""  # a NAM WaveNet size instead of a recurrent stack

    @classmethod
    def parse(cls, text: str) -> ArchSpec:
        cell, _, sizes = text.rpartition(":")
        cell = cell.strip().lower() or "lstm"
        if cell == "wavenet":
            nam_preset(sizes.strip().lower())  # names the sizes when unknown
            return cls((), "wavenet", sizes.strip().lower())
        if cell not in ("lstm", "gru"):
            raise ConfigError(f"--arch cell {cell!r}: choose lstm or gru (e.g. gru:12), or wavenet (wavenet:standard)")
        try:
            units = tuple(int(u) for u in sizes.split(","))
        except ValueError:
            raise ConfigError(f"--arch takes layer sizes like 64,64,1, 32 or gru:12; got {text!r}") from None
        if not units or min(units) < 1:
            raise ConfigError(f"--arch sizes must be positive, got {text!r}")
        return cls(units, cell)

    @property
    def head(self) -> bool:
        return not (len(self.units) > 1 and self.units[-1] == 1)

    @property
    def name(self) -> str:
        if self.wavenet:
            return f"wavenet-{self.wavenet}"
        return f"{self.cell}-" + "-".join(map(str, self.units)) + ("+head" if self.head else "")

    def architecture(self):
        if self.wavenet:
            return nam_preset(self.wavenet)
        return Architecture(self.units, head=self.head, cell=self.cell)

    def weights(self, seed: int):
        if self.wavenet:
            return wavenet_random_weights(self.architecture(), seed=seed)
        return random_weights(self.architecture(), seed=seed, scale=0.5)


def sweep_bundle(root: Path, spec: ArchSpec, hop: int, seed: int = 0) -> Path:
    """A random-weight bundle of ``spec`` at ``hop`` under ``root``, exported and verified (reused when
    a previous sweep left it there)."""
    path = root / f"{spec.name}-hop{hop}.bundle"
    if (path / "manifest.json").is_file():
        return path
    arch = spec.architecture()
    manifest = Manifest(SAMPLE_RATE, arch, Streaming("stateful", hop),
                        provenance={"made_by": "edgeamp bench --arch (random weights, for latency only)", "seed": seed})
    write_bundle(path, Bundle(manifest, spec.weights(seed)))
    export_bundle(path, verify_seconds=0.5)
    return path


def batch_times_ms(bundle_path: Path, options: RuntimeOptions, batch: int, runs: int = 100) -> np.ndarray:
    """Inference time of the ``batched`` IR at ``batch`` rows on the options' device, in ms."""
    factory = ProcessorFactory(bundle_path, options)
    engine = factory.batched_engine(max_batch=batch)
    try:
        slots = [engine.slot() for _ in range(batch)]
        hop = factory.hop_samples
        _, inputs = engine.batch_inputs(slots)
        inputs["audio"] = np.random.default_rng(0).uniform(-0.5, 0.5, (batch, hop)).astype(np.float32)
        for _ in range(5):
            engine.request().infer(inputs)
        t = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter_ns()
            engine.request().infer(inputs)
            t[i] = time.perf_counter_ns() - t0
        return t / 1e6
    finally:
        engine.close()


def run_sweep(archs: list[ArchSpec], hops_ms: list[float], batches: list[int], options: RuntimeOptions,
              out_dir: Path, *, hops: int = 300, warmup: int = 30) -> dict:
    """Measure every (architecture, hop) and, for each, every batch size; returns the results."""
    bundles = out_dir / "bundles"
    rows, batch_rows = [], []
    points = [(a, h) for a in archs for h in hops_ms]
    for spec, hop_ms in progress(points, desc="sweep", unit="point"):
        hop = hop_from_ms(hop_ms, SAMPLE_RATE)
        path = sweep_bundle(bundles, spec, hop)
        r = bench_bundle(path, options.replace(hop_samples=None, hop_ms=None), hops=hops, warmup=warmup, peak=False)
        r.pop("hop_times_ms")
        r.update(arch=spec.name, parameters=spec.architecture().parameter_count())
        rows.append(r)
        for b in batches:
            if b == 1 and len(batches) == 1:
                continue
            try:
                t = batch_times_ms(path, options, b)
            except EdgeampError as exc:  # e.g. a device without dynamic shapes for the batched IR
                batch_rows.append({"arch": spec.name, "hop_ms": hop_ms, "batch": b, "error": str(exc)})
                continue
            p50, p99 = (float(v) for v in np.percentile(t, [50, 99]))
            batch_rows.append({"arch": spec.name, "hop_ms": hop_ms, "batch": b, "batch_ms_p50": p50,
                               "batch_ms_p99": p99, "per_stream_ms": p50 / b,
                               "streams_per_lane_in_real_time": b * int(hop_ms // p99)})
    return {"rows": rows, "batches": batch_rows, "device": rows[0]["environment"] if rows else {}}


def markdown(result: dict) -> str:
    lines = ["| model | parameters | hop ms | variant | p50 ms | p99 ms | device p50 ms | edgeamp overhead ms "
             "| real-time factor | ESR vs ref |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['arch']} | {r['parameters']} | {r['hop_ms']:g} | {r['variant']} {r['precision']} "
                     f"| {r['hop_ms_p50']:.3f} | {r['hop_ms_p99']:.3f} | {r.get('device_ms_p50', float('nan')):.3f} "
                     f"| {r.get('overhead_ms_p50', float('nan')):.3f} | {r['real_time_factor']:.1f} "
                     f"| {r['esr_vs_reference']:.1e} |")
    if result["batches"]:
        lines += ["", "| model | hop ms | batch | batch p50 ms | batch p99 ms | per stream ms | streams per lane in "
                  "real time |", "|---|---|---|---|---|---|---|"]
        for b in result["batches"]:
            if "error" in b:
                lines.append(f"| {b['arch']} | {b['hop_ms']:g} | {b['batch']} | – | – | – | {b['error']} |")
                continue
            lines.append(f"| {b['arch']} | {b['hop_ms']:g} | {b['batch']} | {b['batch_ms_p50']:.3f} "
                         f"| {b['batch_ms_p99']:.3f} | {b['per_stream_ms']:.3f} "
                         f"| {b['streams_per_lane_in_real_time']} |")
    env = result["device"]
    if env:
        lines += ["", f"{env['device_name']} ({env['cpu']}, {env['cores']} cores), OpenVINO {env['openvino']}, "
                      f"edgeamp {env['edgeamp']}; random weights, 48 kHz; device time = the inference alone (the "
                      "InferRequest as benchmark_app measures it, or the native kernel's call), timed inside the same "
                      "hops; edgeamp overhead = the p50 of each hop's time less its device part; real-time factor = "
                      "hop / p50"]
        if result["batches"]:
            lines.append("Streams per lane in real time = batch x floor(hop / batch p99): the streams one "
                         "inference request keeps in real time running batches back to back (0: one batch's p99 "
                         "is longer than the hop)")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> bool:
    """Per-hop p50/p99 and real-time factor against hop, one line per model; per-stream cost against
    batch size. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = 3 if result["batches"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for i, name in enumerate(sorted({r["arch"] for r in result["rows"]})):
        rows = sorted((r for r in result["rows"] if r["arch"] == name), key=lambda r: r["hop_ms"])
        x = [r["hop_ms"] for r in rows]
        color = f"C{i}"
        axes[0].plot(x, [r["hop_ms_p50"] for r in rows], "o-", color=color, label=f"{name} p50")
        axes[0].plot(x, [r["hop_ms_p99"] for r in rows], "s--", color=color, label=f"{name} p99")
        axes[1].plot(x, [r["real_time_factor"] for r in rows], "o-", color=color, label=name)
        if panels == 3:
            for j, hop in enumerate(sorted({b["hop_ms"] for b in result["batches"] if b["arch"] == name})):
                bs = sorted((b for b in result["batches"] if b["arch"] == name and b["hop_ms"] == hop
                             and "error" not in b), key=lambda b: b["batch"])
                axes[2].plot([b["batch"] for b in bs], [b["per_stream_ms"] for b in bs], "o-", color=color,
                             alpha=1.0 - 0.2 * j, label=f"{name}, {hop:g} ms hop")
    hops = sorted({r["hop_ms"] for r in result["rows"]})
    axes[0].plot(hops, hops, "k:", label="deadline (the hop)")
    axes[0].set(xlabel="hop (ms)", ylabel="compute per hop (ms)", title="per-hop latency", xscale="log", yscale="log")
    axes[1].axhline(1.0, color="k", linestyle=":", label="real time")
    axes[1].set(xlabel="hop (ms)", ylabel="real-time factor", title="real-time factor", xscale="log")
    if panels == 3:
        axes[2].set(xlabel="batch (streams per inference)", ylabel="ms per stream per hop",
                    title="what batching buys", xscale="log")
    from matplotlib.ticker import ScalarFormatter

    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
    env = result["device"]
    fig.suptitle(f"{env.get('device_name', '')}: random-weight models, 48 kHz")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
