"""The model bundle: the only hand-off between stages (a directory, see docs/DESIGN.md).

Layout::

    BUNDLE/
      manifest.json   format, schema_version, model spec, knobs, metrics, provenance
      weights.npz     canonical weights (edgeamp.core.model docstring)
      golden.npz      input (T,), knobs (T, n_knobs), output (T,): what every backend must reproduce
      ir/             OpenVINO IR variants (written by edgeamp.export)
      plots/          optional PNGs

Writes go through :func:`edgeamp.core.atomic.atomic_directory`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import reference
from .atomic import atomic_directory, check_writable
from .config import from_dict, to_dict
from .errors import BundleError, ConfigError
from .families import ModelArchitecture
from .hashing import sha256_file
from .metrics import esr
from .model import Architecture, ModelWeights, Streaming

log = logging.getLogger(__name__)

FORMAT = "edgeamp-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
GOLDEN = "golden.npz"
IR_DIR = "ir"


def json_safe(obj):
    """``obj`` with every NaN/Inf float replaced by None, so that it serialises as strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass(frozen=True)
class ExportRecord:
    """One exported IR (an entry of ``manifest.exports``), as ``edgeamp export`` verified it.

    ``xml``: path inside the bundle (``ir/<variant>-<precision>.xml``); ``hop_samples`` and
    ``window_samples``: the graph's input length; ``ops``: op types in the graph; the
    verification figures compare its output with the float64 reference over ``verify_seconds``;
    ``bf16_execution``: the same comparison with bf16 execution where the CPU has it.
    """

    xml: str
    variant: str
    precision: str
    hop_samples: int
    window_samples: int = 0
    ops: tuple[str, ...] = ()
    verify_seconds: float = 0.0
    openvino_version: str = ""
    max_abs_error: float = 0.0
    reference_peak: float = 0.0
    esr_vs_reference: float = 0.0
    bf16_execution: dict = field(default_factory=dict)
    criterion: str = "round_off"  # what passed verification (export.exporter.judge)
    reference_sensitivity: float = 0.0  # max abs move of the reference under an f32-sized input change
    sha256: dict[str, str] = field(default_factory=dict)  # "xml" and "bin": the files' SHA-256 at export

    def __post_init__(self) -> None:
        if not self.xml or "\x00" in self.xml or len(self.xml) > 255:
            raise ConfigError(f"export {self.variant[:40]!r}: xml must name a file inside ir/, got {self.xml[:60]!r}")
        for kind, digest in self.sha256.items():
            if kind not in ("xml", "bin") or not isinstance(digest, str) or len(digest) != 64 or any(
                    c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"export {self.variant[:40]!r}: sha256 holds SHA-256 hex digests of 'xml' and "
                                  f"'bin', got {str(kind)[:40]!r}")


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``. ``metrics`` and ``provenance`` are free-form JSON objects; ``exports``
    maps a key such as ``stateful-f32`` to its :class:`ExportRecord`."""

    sample_rate: int
    architecture: ModelArchitecture  # a family in families.py, told apart by its "family" key
    streaming: Streaming
    input_gain: float = 1.0
    output_gain: float = 1.0
    latency_samples: int = 0
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    exports: dict[str, ExportRecord] = field(default_factory=dict)
    format: str = FORMAT
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.sample_rate < 1000:
            raise ConfigError(f"sample_rate {self.sample_rate} Hz is not an audio rate")
        for name in ("input_gain", "output_gain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value != 0):
                raise ConfigError(f"{name} must be a finite, non-zero number, got {value!r}")

    def to_json(self) -> str:
        """Strict JSON: a non-finite figure (an ESR over silence is infinite) is written as null."""
        return json.dumps(json_safe(to_dict(self)), indent=2, sort_keys=True, allow_nan=False) + "\n"


@dataclass(frozen=True)
class Golden:
    """Golden data: ``input`` (T,) float32 audio, ``knobs`` (T, n_knobs) normalised, ``output`` (T,)."""

    input: np.ndarray
    knobs: np.ndarray
    output: np.ndarray


@dataclass(frozen=True)
class Bundle:
    manifest: Manifest
    weights: ModelWeights
    golden: Golden | None = None
    path: Path | None = None

    @property
    def architecture(self) -> Architecture:
        return self.manifest.architecture

    def ir_dir(self) -> Path:
        if self.path is None:
            raise BundleError("this bundle was not loaded from disk, it has no ir/ folder")
        return self.path / IR_DIR

    def ir_path(self, record: ExportRecord) -> Path:
        """The IR file of ``record``; a path that leaves the bundle's ``ir/`` folder is refused."""
        ir_dir = self.ir_dir().resolve()
        path = (self.path / record.xml).resolve()
        if ir_dir not in path.parents:
            raise BundleError(f"{self.path}: export {record.variant}-{record.precision} points at {record.xml!r}, "
                              f"outside the bundle's {IR_DIR}/ folder; re-export the bundle")
        return path

    def checked_ir(self, record: ExportRecord) -> Path:
        """:meth:`ir_path`, after checking the IR files against the hashes recorded at export (a
        corrupted ``.bin`` or another bundle's IR is refused, naming the file)."""
        xml = self.ir_path(record)
        for kind, expected in sorted(record.sha256.items()):
            f = xml.with_suffix("." + kind)
            if not f.is_file():
                raise BundleError(f"{self.path}: {f.name} is missing; re-export the bundle (`edgeamp export`)")
            if sha256_file(f) != expected:
                raise BundleError(f"{self.path}: {f.name} does not match the hash recorded at export (corrupted, "
                                  "or copied from another bundle); re-export the bundle (`edgeamp export`)")
        return xml


def ir_hashes(xml: Path) -> dict[str, str]:
    """SHA-256 of an IR's ``.xml`` and ``.bin`` (recorded at export, checked at load)."""
    return {kind: sha256_file(xml.with_suffix("." + kind)) for kind in ("xml", "bin")}


def golden_signal(sample_rate: int, seconds: float = 0.5, seed: int = 1234) -> np.ndarray:
    """A deterministic guitar-like test signal: decaying plucked partials, a chord, a pause, noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    x = np.zeros(n)
    for onset, f0, amp in [(0.0, 82.4, 0.6), (0.12, 196.0, 0.4), (0.12, 246.9, 0.3), (0.3, 329.6, 0.5)]:
        env = np.where(t >= onset, np.exp(-(t - onset) * 6.0), 0.0)
        for k in range(1, 6):
            x += amp / k * env * np.sin(2 * np.pi * f0 * k * (t - onset))
    x[(t > 0.22) & (t < 0.28)] = 0.0
    x += 0.003 * rng.standard_normal(n)
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def compute_output(manifest: Manifest, weights: ModelWeights, audio: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """The reference output for mono ``audio`` (T,) and normalised ``knobs`` (T, n_knobs), float64."""
    arch = manifest.architecture
    x = np.concatenate([audio[:, None] * manifest.input_gain, knobs], axis=1)[None].astype(np.float64)
    s = manifest.streaming
    if s.mode == "window":
        hop = s.hop_samples
        n = audio.shape[0]
        padded_len = -(-n // hop) * hop
        x = np.pad(x, ((0, 0), (0, padded_len - n), (0, 0)))
        y = reference.run_window(arch, weights, x, s.window_samples, hop)[0, :n]
    else:
        y, _ = reference.run_stateful(arch, weights, x)
        y = y[0]
    return y * manifest.output_gain


def make_golden(manifest: Manifest, weights: ModelWeights, audio: np.ndarray | None = None) -> Golden:
    """Golden data from ``audio`` (default: :func:`golden_signal`), knobs at their defaults."""
    if audio is None:
        audio = golden_signal(manifest.sample_rate)
    audio = np.asarray(audio, dtype=np.float32)
    arch = manifest.architecture
    knobs = np.tile(
        np.array([k.normalise(k.default) for k in arch.knobs], dtype=np.float32), (audio.shape[0], 1)
    ).reshape(audio.shape[0], len(arch.knobs))
    out = compute_output(manifest, weights, audio, knobs).astype(np.float32)
    return Golden(audio, knobs, out)


def check_bundle_target(path: Path | str) -> None:
    """A bundle may be written to ``path``: nothing there, or a bundle (replaced atomically). An
    existing file, or a directory with other things in it, is refused before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BundleError(f"{path} exists and is not a directory: choose another output path for the bundle")
    if path.is_dir() and not (path / MANIFEST).is_file() and any(path.iterdir()):
        raise BundleError(f"{path} is a directory that is not an edgeamp bundle: refusing to replace it "
                          "(choose a new path, e.g. {path}/amp.bundle)".replace("{path}", str(path)))
    check_writable(path)


def announce_replacement(path: Path | str, what: str) -> None:
    """Say, before long work, that the bundle already at ``path`` will be replaced (kept as it is
    until the new one is complete: nothing is lost if the work fails or is interrupted)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        log.warning("%s holds a bundle already: %s replaces it once the new one is complete (until then it "
                    "stays as it is)", path, what)


def write_bundle(
    path: Path | str, bundle: Bundle, *, keep_ir: bool = True, folders: dict[str, Path] | None = None
) -> Path:
    """Write ``bundle`` to ``path`` atomically; returns the path.

    ``keep_ir``: carry over the ``ir/`` and ``plots/`` folders of the bundle already at ``path``
    (or of ``bundle.path``) so that rewriting a manifest does not drop exported graphs.
    ``folders``: sub-folder name -> directory to copy in instead (e.g. a freshly staged ``ir``).
    """
    path = Path(path)
    check_bundle_target(path)
    golden = bundle.golden or make_golden(bundle.manifest, bundle.weights)
    sources = [p for p in (path, bundle.path) if p is not None and Path(p).is_dir()]
    folders = dict(folders or {})
    if keep_ir:
        for sub in (IR_DIR, "plots"):
            src = next((Path(s) / sub for s in sources if (Path(s) / sub).is_dir()), None)
            if src is not None:
                folders.setdefault(sub, src)
    with atomic_directory(path) as tmp:
        _save_npz(tmp / WEIGHTS, bundle.weights.to_arrays())
        _save_npz(tmp / GOLDEN, {"input": golden.input, "knobs": golden.knobs, "output": golden.output})
        for sub, src in sorted(folders.items()):
            shutil.copytree(src, tmp / sub)
        # the manifest goes last: a directory without one is never taken for a bundle
        (tmp / MANIFEST).write_text(bundle.manifest.to_json())
    return path


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Deterministic npz (fixed zip timestamps) so that identical bundles are byte-identical."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[name]), allow_pickle=False)


MAX_ARRAY_BYTES = 64 << 20  # no array of a bundle is near this; a header that claims more is refused
MAX_NPZ_BYTES = 128 << 20  # nor is a whole weights.npz or golden.npz
MAX_MANIFEST_BYTES = 4 << 20
GOLDEN_ARRAYS = {"input": 1, "knobs": 2, "output": 1}  # name -> dimensions


def _load_npz(path: Path, expected: dict[str, tuple[int, ...] | int]) -> dict[str, np.ndarray]:
    """Read an npz after checking its entries and every array's header (names, shape, dtype, size)
    before any data: a small file that would inflate to hundreds of MB, arrays nobody asked for, or an
    array of the wrong shape is refused unread. ``expected``: name -> shape, or name -> dimensions."""
    if not path.is_file():
        raise BundleError(f"{path.parent}: missing {path.name}")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename.removesuffix(".npy") for i in infos]
            extra, missing = sorted(set(names) - set(expected)), sorted(set(expected) - set(names))
            if extra or missing or len(names) != len(set(names)):
                raise BundleError(f"{path}: arrays do not match what the bundle needs (missing {missing[:8]}, "
                                  f"unexpected {[n[:60] for n in extra[:8]]}{', duplicated names' * (not extra)})")
            total, headers = 0, {}
            for info, name in zip(infos, names):
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                        np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(fh)
                if dtype.hasobject:
                    raise BundleError(f"{path}: array {name!r} holds Python objects; a bundle holds numbers only")
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                total += nbytes
                if nbytes > MAX_ARRAY_BYTES or nbytes > info.file_size or total > MAX_NPZ_BYTES:
                    raise BundleError(f"{path}: array {name!r} claims shape {shape} ({nbytes / 2**20:.0f} MiB) in "
                                      f"an entry of {info.file_size / 2**20:.1f} MiB; refused unread")
                headers[name] = tuple(shape)
            for name, want in expected.items():  # in the architecture's order: the first layer named first
                shape = headers[name]
                if isinstance(want, int) and len(shape) != want:
                    raise BundleError(f"{path}: array {name!r} has shape {shape}, expected {want} dimension(s)")
                if isinstance(want, tuple) and shape != want:
                    raise BundleError(f"weight {name!r} has shape {shape}, the architecture needs {want}")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, SyntaxError) as exc:
        raise BundleError(f"{path}: unreadable ({str(exc)[:300]})") from exc


def read_manifest(path: Path | str) -> Manifest:
    path = Path(path)
    if not path.exists():
        raise BundleError(f"no bundle at {path}")
    if not path.is_dir():
        raise BundleError(f"{path} is not a bundle directory (a capture file .nam/.aidax/.json opens with "
                          "edgeamp.load(path), which imports it, or `edgeamp import FILE OUT.bundle`)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path}: missing {MANIFEST}, this is not a (complete) edgeamp bundle")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath}: {mpath.stat().st_size / 2**20:.1f} MiB; a manifest is a few KB "
                          f"(at most {MAX_MANIFEST_BYTES >> 20} MiB read)")
    try:
        raw = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise BundleError(f"{mpath}: not valid JSON ({str(exc)[:200]})") from exc
    except RecursionError as exc:
        raise BundleError(f"{mpath}: not valid JSON (nested too deeply)") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise BundleError(f"{mpath}: format is {found!r}, expected {FORMAT!r}")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        hint = "a newer edgeamp wrote it: upgrade" if isinstance(version, int) and version > SCHEMA_VERSION else (
            "re-export it with this edgeamp"
        )
        raise BundleError(
            f"{mpath}: schema_version {version!r}, this edgeamp reads schema_version {SCHEMA_VERSION} ({hint})"
        )
    arch = raw.get("architecture")
    if isinstance(arch, dict) and "lstm_units" in arch and "units" not in arch:  # the key before GRU
        raw["architecture"] = {("units" if k == "lstm_units" else k): v for k, v in arch.items()}
    try:
        return from_dict(Manifest, raw, "manifest")
    except ConfigError as exc:
        raise BundleError(f"{mpath}: {exc}") from exc


def read_bundle(path: Path | str) -> Bundle:
    """Load and check a bundle; every problem raises :class:`BundleError` naming the file."""
    path = Path(path)
    manifest = read_manifest(path)
    weights = manifest.architecture.load_weights(_load_npz(path / WEIGHTS, manifest.architecture.expected_shapes()))
    g = _load_npz(path / GOLDEN, GOLDEN_ARRAYS)
    golden = Golden(g["input"], g["knobs"], g["output"])
    if golden.output.shape != golden.input.shape:
        raise BundleError(f"{path / GOLDEN}: output has {golden.output.shape[0]} samples, input "
                          f"{golden.input.shape[0]}; re-export the bundle")
    if golden.knobs.shape != (golden.input.shape[0], len(manifest.architecture.knobs)):
        raise BundleError(
            f"{path / GOLDEN}: knobs shape {golden.knobs.shape} does not match input length "
            f"{golden.input.shape[0]} and {len(manifest.architecture.knobs)} knob(s)"
        )
    return Bundle(manifest, weights, golden, path)


def replace_manifest(bundle: Bundle, **changes) -> Bundle:
    return dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, **changes))


def verify_golden(bundle: Bundle) -> dict[str, float]:
    """Recompute the golden output with the reference; max abs error and ESR against the stored one."""
    g = bundle.golden
    if g is None:
        raise BundleError("bundle has no golden data")
    y = compute_output(bundle.manifest, bundle.weights, g.input, g.knobs)
    err = y - g.output.astype(np.float64)
    return {
        "max_abs_error": float(np.max(np.abs(err))) if err.size else 0.0,
        "esr": esr(g.output, y),
        "samples": int(g.input.shape[0]),
    }
