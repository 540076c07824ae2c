"""From recordings to a verified, exported bundle with held-out metrics and plots."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeamp.core import version as edgeamp_version
from edgeamp.core.bundle import (
    IR_DIR,
    Bundle,
    Manifest,
    announce_replacement,
    check_bundle_target,
    make_golden,
    read_bundle,
    write_bundle,
)
from edgeamp.core.config import to_dict
from edgeamp.core.errors import ConfigError, InputError
from edgeamp.core.hashing import sha256_file
from edgeamp.core.metrics import all_metrics, format_esr
from edgeamp.core.model import Architecture, Knob
from edgeamp.edge_runtime.render import render
from edgeamp.edge_runtime.session import ProcessorFactory, RuntimeOptions

from . import nam_inputs
from .data import PairSpec, load_pair
from .dataset import Segment, make_segment, split_tail
from .fit import fit
from .presets import TrainConfig

log = logging.getLogger(__name__)
GOLDEN_SECONDS = 0.5


@dataclass(frozen=True)
class DataOptions:
    channel: int | None = None
    resample: bool = False
    align: bool = True


def _worker_index() -> int:
    """This process's index in a TF_CONFIG cluster (0 when there is none, or for the chief)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    task = json.loads(raw).get("task", {})
    return 0 if task.get("type") == "chief" else int(task.get("index", 0))


def load_segments(specs: list[PairSpec], knobs: tuple[Knob, ...], options: DataOptions):
    """Load and check every pair; returns segments, sample rate and per-pair reports."""
    segments: list[Segment] = []
    reports = []
    rate = None
    for spec in specs:
        pair = load_pair(spec.input, spec.target, channel=options.channel, allow_resample=options.resample,
                         align=options.align)
        if rate is None:
            rate = pair.report.sample_rate
        elif pair.report.sample_rate != rate:
            raise InputError(f"{spec.input} is {pair.report.sample_rate} Hz but earlier pairs are {rate} Hz")
        segments.append(make_segment(pair.x, pair.y, knobs, dict(spec.knobs), Path(spec.input).name))
        reports.append(pair.report)
    return segments, rate, reports


def split_held_out(segments: list[Segment], reports: list | None, fraction: float) -> tuple[list, list]:
    """Training and held-out parts of each pair: NAM's own split for NAM's standard inputs (whose v3
    plays its validation clip at the start too: a plain tail split would score on trained audio),
    else the last ``fraction``. ``reports`` None: plain tail splits."""
    train, held_out = [], []
    for i, seg in enumerate(segments):
        report = reports[i] if reports is not None else None
        layout = nam_inputs.detect(report.input_path) if report is not None else None
        if layout is None:
            a, b = split_tail(seg, fraction)
        else:
            (t0, t1), (v0, v1) = layout.ranges(seg.y.shape[0], report.input_offset)
            log.info("%s is NAM's standard input v%s (by %s): held out as NAM does, samples %d-%d; trained on "
                     "%d-%d", Path(report.input_path).name, layout.version, layout.how, v0, v1, t0, t1)
            a = Segment(seg.x[t0:t1], seg.y[t0:t1], seg.name + "[train]")
            b = Segment(seg.x[v0:v1], seg.y[v0:v1], seg.name + "[held-out]")
        train.append(a)
        held_out.append(b)
    return train, held_out


def split_three_ways(segments: list[Segment], reports: list, fraction: float) -> tuple[list, list, list]:
    """Training, validation (model selection, schedules) and test (scored once, at the end) parts of
    each pair: the test part is the last ``fraction`` (NAM's validation clip for NAM's inputs), the
    validation part as long again just before it."""
    rest, test = split_held_out(segments, reports, fraction)
    train, val = [], []
    for seg, t in zip(rest, test):
        a, b = split_tail(seg, min(0.5, t.y.shape[0] / max(seg.y.shape[0], 1)))
        train.append(a)
        val.append(Segment(b.x, b.y, b.name.replace("[held-out]", "[validation]")))
    return train, val, [Segment(t.x, t.y, t.name.replace("[held-out]", "[test]")) for t in test]


def segment_knobs(knobs, seg: Segment) -> dict[str, float]:
    """A segment's knob settings in knob units (its input columns hold them normalised)."""
    out = {}
    for i, knob in enumerate(knobs):
        norm = float(seg.x[0, 1 + i])
        out[knob.name] = round(knob.denormalise(norm), 6)  # the knob's own model range (AIDA-X's is [0, 1])
    return out


def per_setting_metrics(proc, segments: list[Segment]) -> list[dict]:
    """Held-out ESR for each distinct knob setting (a conditioned model's report card)."""
    groups: dict[tuple, list[Segment]] = {}
    for seg in segments:
        groups.setdefault(tuple(segment_knobs(proc.arch.knobs, seg).items()), []).append(seg)
    out = []
    for setting, segs in groups.items():
        m, y, _ = evaluate_processor(proc, segs)
        out.append({"knobs": dict(setting), "seconds": round(y.shape[0] / proc.sample_rate, 2), "esr": m["esr"],
                    "esr_pre_emphasis": m["esr_pre_emphasis"]})
    return out


def evaluate_processor(proc, segments: list[Segment]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Render each held-out segment (knobs from the segment) and score them together."""
    ys, yhs = [], []
    for seg in segments:
        for name, value in segment_knobs(proc.arch.knobs, seg).items():
            proc.set_knob(name, value)
        proc.reset()
        y_hat, _ = render(proc, seg.x[:, 0], desc="held-out")
        ys.append(seg.y)
        yhs.append(y_hat)
    y, y_hat = np.concatenate(ys), np.concatenate(yhs)
    return all_metrics(y, y_hat), y, y_hat


def train_to_bundle(
    config: TrainConfig,
    specs: list[PairSpec],
    out: Path | str,
    *,
    knobs: tuple[Knob, ...] = (),
    val_specs: list[PairSpec] | None = None,
    test_specs: list[PairSpec] | None = None,
    options: DataOptions = DataOptions(),
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    resume: bool = False,
    export: bool = True,
    strategy: str | None = None,
    init: Bundle | None = None,
) -> Bundle:
    """Train a model on ``specs`` and write, export and score its bundle at ``out``.

    ``init``: fine-tune this bundle (an imported NAM/AIDA-X capture, or an earlier model): its
    architecture, knobs and weights are the start; the preset gives the recipe and schedule."""
    out = Path(out)
    worker = _worker_index()
    if worker:  # multi-worker: only worker 0 writes the real bundle
        out = out.with_name(f"{out.name}.worker{worker}")
    check_bundle_target(out)  # a file or a foreign folder at OUT is refused now, not after training
    announce_replacement(out, "training")
    t_start = time.time()
    segments, rate, reports = load_segments(specs, knobs, options)
    given = {}
    for name, extra in (("validation", val_specs), ("test", test_specs)):
        if extra:
            segs, xrate, xreports = load_segments(extra, knobs, options)
            if xrate != rate:
                raise InputError(f"{name} audio is {xrate} Hz, training audio {rate} Hz")
            given[name] = segs
            reports = reports + xreports
    n_train = len(specs)
    if not given:  # three ways out of the training pairs
        train_segs, val_segs, test_segs = split_three_ways(segments, reports[:n_train], config.val_fraction)
    elif "validation" in given and "test" in given:
        train_segs, val_segs, test_segs = segments, given["validation"], given["test"]
    elif "validation" in given:  # the test clip is the training pairs' tail
        train_segs, test_segs = split_held_out(segments, reports[:n_train], config.val_fraction)
        val_segs = given["validation"]
    else:
        train_segs, val_segs = split_held_out(segments, reports[:n_train], config.val_fraction)
        test_segs = given["test"]
    arch = config.architecture(knobs) if init is None else check_fine_tune(init, knobs, rate, config)
    streaming = config.streaming(rate)
    checkpoint_dir = out.with_name(out.name + ".checkpoint")
    result = fit(config, arch, train_segs, val_segs, rate, steps=steps, minutes=minutes, seed=seed,
                 checkpoint_dir=checkpoint_dir, resume=resume, strategy=strategy,
                 init=init.weights if init is not None else None)
    log.info("trained %d steps in %.0f s (%s), %.0f samples/s; best validation ESR %.4g", result.steps,
             result.seconds, result.stopped_by, result.samples_per_second, result.best_val_esr)

    import keras
    import tensorflow as tf

    latencies = sorted({r.latency_samples for r in reports})
    provenance = {
        "preset": config.name,
        "config": to_dict(config),
        "seed": seed,
        "strategy": strategy,
        "data": [{**asdict(r), "input_sha256": sha256_file(r.input_path), "target_sha256": sha256_file(r.target_path)}
                 for r in reports],
        "knob_values": [dict(s.knobs) for s in specs],
        "steps": result.steps,
        "training_seconds": round(result.seconds, 1),
        "samples_per_second": round(result.samples_per_second),
        "stopped_by": result.stopped_by,
        "best_validation_esr": result.best_val_esr,
        "versions": {"edgeamp": edgeamp_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": platform.machine(),
        "wall_seconds": round(time.time() - t_start, 1),
    }
    if init is not None:
        source = init.manifest.provenance
        provenance["fine_tuned_from"] = {"bundle": str(init.path), "architecture": init.architecture.describe(),
                                         **{k: source[k] for k in ("imported_from", "imported_sha256", "source_format")
                                            if k in source}}
    manifest = Manifest(rate, arch, streaming, latency_samples=int(latencies[-1]) if latencies else 0,
                        provenance=provenance)
    golden_audio = val_segs[0].x[: int(GOLDEN_SECONDS * rate), 0]
    bundle = Bundle(manifest, result.weights, make_golden(manifest, result.weights, golden_audio))
    # Everything is staged in a sibling folder and swapped in at the very end: a bundle already at
    # `out` stays as it was until the new one is complete, exported and verified (Ctrl-C included).
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-{os.getpid()}-", dir=out.absolute().parent))
    try:
        staged = _stage(bundle, staging / out.name, result, config, val_segs, test_segs, rate, export)
        write_bundle(out, staged, folders={sub: staged.path / sub for sub in (IR_DIR, "plots")
                                           if (staged.path / sub).is_dir()})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return read_bundle(out)


def check_fine_tune(init: Bundle, knobs: tuple[Knob, ...], rate: int, config: TrainConfig) -> Architecture:
    """The architecture to fine-tune: ``init``'s, after checking it fits the data and the recipe."""
    m = init.manifest
    where = f"--init-from {init.path}"
    if m.architecture.family != "recurrent":
        raise ConfigError(f"{where}: a {m.architecture.describe()}; edgeamp trains recurrent models (LSTM/GRU), "
                          "not this family")
    if m.architecture.front or m.architecture.hidden:
        raise ConfigError(f"{where}: the model has dense layers around its recurrent stack "
                          f"({m.architecture.describe()}), which edgeamp's trainer does not build")
    if m.sample_rate != rate:
        raise ConfigError(f"{where}: the model runs at {m.sample_rate} Hz, the recordings are {rate} Hz")
    if tuple(k.name for k in knobs) != m.architecture.knob_names:
        raise ConfigError(f"{where}: the model's knobs are {list(m.architecture.knob_names) or 'none'}, the data's "
                          f"{[k.name for k in knobs] or 'none'}")
    if m.input_gain != 1.0 or m.output_gain != 1.0:
        raise ConfigError(f"{where}: the bundle has input/output gains ({m.input_gain:g}, {m.output_gain:g}) the "
                          "trainer's model has no place for")
    if m.streaming.mode != ("window" if config.recipe == "window" else "stateful"):
        raise ConfigError(f"{where}: a {m.streaming.mode}-mode model; the {config.name} preset trains "
                          f"{config.recipe} models (choose a preset with the model's mode)")
    return m.architecture


def _stage(bundle: Bundle, path: Path, result, config: TrainConfig, val_segs, test_segs, rate: int,
           export: bool) -> Bundle:
    """Write, export and score the new bundle at ``path`` (a staging folder); returns it.

    ``manifest.metrics``: the test clip's figures at the top (``scored_on: "test"``: audio that
    neither training nor model selection saw), the validation clip's apart under ``validation``."""
    from .plots import comparison, training_curves

    with tempfile.TemporaryDirectory() as tmp:
        plots = Path(tmp) / "plots"
        plots.mkdir()
        training_curves(result.history, plots / "training.png", f"{config.name}: {result.steps} steps")
        (plots / "training_curves.json").write_text(json.dumps(result.history))
        write_bundle(path, bundle, keep_ir=False, folders={"plots": plots})
    if not export:
        return read_bundle(path)
    from edgeamp.export.exporter import export_bundle

    bundle = export_bundle(path)  # default verification: 10 s per stateful variant, 2 s for the window one
    proc = ProcessorFactory(bundle, RuntimeOptions(device="CPU")).new()
    validation, _, _ = evaluate_processor(proc, val_segs)
    validation["seconds"] = round(sum(s.y.shape[0] for s in val_segs) / rate, 2)
    metrics, y, y_hat = evaluate_processor(proc, test_segs)
    log.info("test clip (CPU, %.1f s, never used for selection): ESR %s, pre-emphasised %s; validation ESR %s",
             y.shape[0] / rate, format_esr(metrics["esr"]), format_esr(metrics["esr_pre_emphasis"]),
             format_esr(validation["esr"]))
    metrics["scored_on"] = "test"
    metrics["held_out_seconds"] = round(y.shape[0] / rate, 2)
    metrics["test_clips"] = [s.name for s in test_segs]
    metrics["validation"] = validation
    if not np.isfinite(metrics["esr"]):
        log.warning("the test target is digital silence: its ESR is undefined (stored as null); test on a clip "
                    "with signal (--test-input/--test-target or --test-pattern)")
    if bundle.architecture.knobs:
        metrics["per_setting"] = per_setting_metrics(proc, test_segs)
        for entry in metrics["per_setting"]:
            log.info("test clip at %s: ESR %s, pre-emphasised %s", entry["knobs"], format_esr(entry["esr"]),
                     format_esr(entry["esr_pre_emphasis"]))
    # what FP16 weights (the Myriad/NPU IR) cost against the target audio, not only against the reference
    proc16 = ProcessorFactory(bundle, RuntimeOptions(device="CPU", precision="f16")).new()
    metrics16, _, _ = evaluate_processor(proc16, test_segs)
    metrics["esr_f16_weights"] = metrics16["esr"]
    metrics["esr_pre_emphasis_f16_weights"] = metrics16["esr_pre_emphasis"]
    with tempfile.TemporaryDirectory() as tmp:
        plots = Path(tmp) / "plots"
        shutil.copytree(path / "plots", plots)
        comparison(y, y_hat, rate, plots / "held_out.png", f"{config.name}: test clip (never used for selection)")
        final = dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, metrics=metrics))
        write_bundle(path, final, folders={"plots": plots})
    return read_bundle(path)
