"""Model bundle: round trip, schema checks, bad bundles, atomic writes, `edgeamp info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeamp.cli import main as cli_main
from edgeamp.core import atomic
from edgeamp.core.bundle import (
    Bundle,
    Manifest,
    read_bundle,
    replace_manifest,
    verify_golden,
    write_bundle,
)
from edgeamp.core.errors import BundleError
from edgeamp.core.model import Architecture, Knob, Streaming, random_weights


def make_bundle(mode="stateful", knobs=()) -> Bundle:
    arch = Architecture((8, 4), head=True, skip=True, knobs=knobs)
    streaming = Streaming("window", 48, 96) if mode == "window" else Streaming("stateful", 48)
    manifest = Manifest(sample_rate=48000, architecture=arch, streaming=streaming, metrics={"esr": 0.01})
    return Bundle(manifest, random_weights(arch, seed=7))


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mode", ["stateful", "window"])
def test_round_trip_is_byte_identical(tmp_path, mode):
    b = make_bundle(mode, knobs=(Knob("gain"),))
    write_bundle(tmp_path / "a", b)
    loaded = read_bundle(tmp_path / "a")
    write_bundle(tmp_path / "b", loaded)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert loaded.manifest == b.manifest
    for name, arr in b.weights.to_arrays().items():
        np.testing.assert_array_equal(loaded.weights.to_arrays()[name], arr)


def test_golden_verifies(tmp_path):
    write_bundle(tmp_path / "a", make_bundle("window"))
    result = verify_golden(read_bundle(tmp_path / "a"))
    assert result["max_abs_error"] < 1e-6  # float32 storage of a float64 result
    assert result["samples"] == 24000


def test_verify_detects_tampered_weights(tmp_path):
    path = write_bundle(tmp_path / "a", make_bundle())
    b = read_bundle(path)
    arrays = b.weights.to_arrays()
    arrays["head/bias"] = arrays["head/bias"] + 0.01
    np.savez(path / "weights.npz", **arrays)
    assert verify_golden(read_bundle(path))["max_abs_error"] == pytest.approx(0.01, rel=1e-3)
    assert cli_main(["info", str(path), "--verify"]) == 1


def test_info_cli(tmp_path, capsys):
    path = write_bundle(tmp_path / "a", make_bundle(knobs=(Knob("gain", 0, 10, 5),)))
    assert cli_main(["info", str(path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "LSTM 8-4 + dense head + input skip" in out
    assert "knob        gain: 0..10 (default 5)" in out
    assert "verify      OK" in out
    assert cli_main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["architecture"]["units"] == [8, 4]


def _edit_manifest(path: Path, **changes):
    doc = json.loads((path / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    (path / "manifest.json").write_text(json.dumps(doc))


BAD_BUNDLES = [
    ("no manifest", lambda p: (p / "manifest.json").unlink(), r"missing manifest.json"),
    ("no weights", lambda p: (p / "weights.npz").unlink(), r"missing weights.npz"),
    ("no golden", lambda p: (p / "golden.npz").unlink(), r"missing golden.npz"),
    (
        "newer schema",
        lambda p: _edit_manifest(p, schema_version=2),
        r"schema_version 2.*reads schema_version 1.*upgrade",
    ),
    ("other format", lambda p: _edit_manifest(p, format="nam"), r"format is 'nam', expected 'edgeamp-bundle'"),
    ("not json", lambda p: (p / "manifest.json").write_text("{"), r"not valid JSON"),
    ("unknown key", lambda p: _edit_manifest(p, colour="red"), r"unknown key\(s\) \['colour'\]"),
    ("missing key", lambda p: _edit_manifest(p, sample_rate=None), r"missing required key 'sample_rate'"),
    (
        "wrong shape",
        lambda p: np.savez(p / "weights.npz", **{**dict(np.load(p / "weights.npz")), "lstm0/bias": np.zeros(3)}),
        r"'lstm0/bias' has shape \(3,\), the architecture needs \(32,\)",
    ),
    (
        "missing weight",
        lambda p: np.savez(p / "weights.npz", **{k: v for k, v in np.load(p / "weights.npz").items() if "head" not in k}),  # noqa: E501
        r"missing \['head/bias', 'head/kernel'\]",
    ),
    (
        "nan weight",
        lambda p: np.savez(p / "weights.npz", **{**dict(np.load(p / "weights.npz")), "head/bias": np.array([np.nan])}),
        r"'head/bias' holds 1 NaN/Inf",
    ),
    ("corrupt npz", lambda p: (p / "weights.npz").write_bytes(b"garbage"), r"weights.npz: unreadable"),
    (
        "architecture mismatch",
        lambda p: _edit_manifest(p, architecture={"units": [8, 5], "head": True, "skip": True, "knobs": []}),
        r"lstm1",
    ),
]


@pytest.mark.parametrize("case,damage,message", BAD_BUNDLES, ids=[c[0] for c in BAD_BUNDLES])
def test_bad_bundles_raise_bundle_error(tmp_path, case, damage, message):
    path = write_bundle(tmp_path / "b", make_bundle())
    damage(path)
    with pytest.raises(BundleError, match=message):
        read_bundle(path)


def test_missing_bundle_and_file_instead_of_dir(tmp_path):
    with pytest.raises(BundleError, match="no bundle at"):
        read_bundle(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(BundleError, match="not a bundle directory"):
        read_bundle(tmp_path / "f")
    assert cli_main(["info", str(tmp_path / "nope")]) == 2


def test_interrupted_write_keeps_previous_bundle(tmp_path, monkeypatch):
    path = write_bundle(tmp_path / "b", make_bundle())
    before = _tree(path)
    other = replace_manifest(make_bundle(), sample_rate=44100)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("edgeamp.core.bundle._save_npz", boom)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(path, other)
    assert _tree(path) == before
    assert read_bundle(path).manifest.sample_rate == 48000
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no partial directory left behind


def test_killed_writer_leaves_previous_bundle_loadable(tmp_path):
    """A real SIGKILL in the middle of a write (not an exception): the old bundle still loads."""
    path = write_bundle(tmp_path / "b", make_bundle())
    before = _tree(path)
    code = f"""
import os, signal
import edgeamp.core.bundle as B
from tests.edge_runtime.test_bundle import make_bundle
real = B._save_npz
def save_then_die(p, arrays):
    real(p, arrays)
    os.kill(os.getpid(), signal.SIGKILL)
B._save_npz = save_then_die
B.write_bundle({str(path)!r}, B.replace_manifest(make_bundle(), sample_rate=44100))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    assert proc.returncode == -9
    assert _tree(path) == before
    partial = [p for p in tmp_path.iterdir() if p.name != "b"]
    assert partial and all(p.name.startswith(".b.partial-") for p in partial)
    with pytest.raises(BundleError, match="missing manifest.json"):
        read_bundle(partial[0])  # the half-written one never loads


@pytest.mark.parametrize("exchange", [True, False])
def test_rewrite_replaces_and_cleans_up(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_renameat2_exchange", lambda a, b: False)
    path = write_bundle(tmp_path / "b", make_bundle())
    write_bundle(path, replace_manifest(make_bundle(), sample_rate=44100))
    assert read_bundle(path).manifest.sample_rate == 44100
    assert sorted(os.listdir(tmp_path)) == ["b"]


def test_rewrite_keeps_ir_folder(tmp_path):
    path = write_bundle(tmp_path / "b", make_bundle())
    (path / "ir").mkdir()
    (path / "ir" / "x.xml").write_text("<net/>")
    write_bundle(path, replace_manifest(read_bundle(path), metrics={"esr": 0.5}))
    assert (path / "ir" / "x.xml").read_text() == "<net/>"


# ---- regressions from outside testing (issue 16) ---------------------------------------------

def test_info_verify_fails_on_nan_golden_data(tmp_path, capsys):
    path = write_bundle(tmp_path / "a", make_bundle())
    with np.load(path / "golden.npz") as g:
        arrays = {k: g[k] for k in g.files}
    arrays["output"][10] = np.nan
    np.savez(path / "golden.npz", **arrays)
    assert cli_main(["info", str(path), "--verify"]) == 1  # was: printed FAILED, exit 0
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("gain", [float("nan"), float("inf"), 0.0])
def test_a_non_finite_gain_is_refused_at_load(tmp_path, gain):
    path = write_bundle(tmp_path / "a", make_bundle())
    doc = json.loads((path / "manifest.json").read_text())
    doc["output_gain"] = gain
    (path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="output_gain must be a finite, non-zero number"):
        read_bundle(path)


def test_ir_files_are_checked_against_export_hashes(tmp_path, exported_bundles, capsys):
    import shutil

    from edgeamp.edge_runtime.session import ProcessorFactory

    path = tmp_path / "amp.bundle"
    shutil.copytree(exported_bundles["stateful"], path)
    assert cli_main(["info", str(path), "--verify"]) == 0
    capsys.readouterr()
    b = read_bundle(path)
    bin_path = (path / b.manifest.exports["stateful-f32"].xml).with_suffix(".bin")
    data = bytearray(bin_path.read_bytes())
    data[100] ^= 0xFF  # one flipped byte in the weights
    bin_path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="stateful-f32.bin does not match the hash recorded at export"):
        ProcessorFactory(path, device="CPU", backend="openvino")  # the native engine reads no IR
    assert cli_main(["info", str(path), "--verify"]) == 1
    assert "ir stateful-f32: FAILED" in capsys.readouterr().out
    # another bundle's IR copied in: refused the same way
    shutil.copy(exported_bundles["window"] / "ir" / "window-f32.bin", bin_path)
    with pytest.raises(BundleError, match="does not match the hash"):
        ProcessorFactory(path, device="CPU", backend="openvino")  # the native engine reads no IR


def test_ir_paths_must_stay_inside_the_bundle(tmp_path, exported_bundles):
    import shutil

    from edgeamp.edge_runtime.session import ProcessorFactory

    path = tmp_path / "amp.bundle"
    shutil.copytree(exported_bundles["stateful"], path)
    doc = json.loads((path / "manifest.json").read_text())
    doc["exports"]["stateful-f32"]["xml"] = "../../elsewhere/model.xml"
    (path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="outside the bundle's ir/ folder"):
        ProcessorFactory(path, device="CPU", variant="stateful", precision="f32")


def test_rewriting_a_symlinked_bundle_keeps_the_link(tmp_path):
    real = write_bundle(tmp_path / "real.bundle", make_bundle())
    link = tmp_path / "current.bundle"
    link.symlink_to(real)
    changed = replace_manifest(read_bundle(link), metrics={"esr": 0.5})
    write_bundle(link, changed)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert read_bundle(real).manifest.metrics == {"esr": 0.5}
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_a_killed_writer_leaves_nothing_the_next_write_keeps(tmp_path):
    path = write_bundle(tmp_path / "a", make_bundle())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.partial-{dead.stdout.strip()}-xyz"
    stale.mkdir()
    (stale / "weights.npz").write_bytes(b"half")
    live = tmp_path / f".a.partial-{os.getpid()}-live"  # a writer that still runs is left alone
    live.mkdir()
    write_bundle(path, read_bundle(path))
    assert not stale.exists() and live.exists()


def test_an_inflating_weights_file_is_refused_unread(tmp_path):
    import zipfile

    path = write_bundle(tmp_path / "a", make_bundle())
    arrays = read_bundle(path).weights.to_arrays()
    arrays["lstm0/kernel"] = np.zeros((20000, 8000), np.float32)  # 640 MB of zeros, compresses to little
    with zipfile.ZipFile(path / "weights.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr)
    assert (path / "weights.npz").stat().st_size < 5_000_000
    with pytest.raises(BundleError, match="refused unread"):
        read_bundle(path)


def test_non_finite_metrics_are_written_as_strict_json(tmp_path):
    b = replace_manifest(make_bundle(), metrics={"esr": float("inf"), "mse": 0.1})
    path = write_bundle(tmp_path / "a", b)
    text = (path / "manifest.json").read_text()
    assert "Infinity" not in text and json.loads(text)["metrics"]["esr"] is None


def test_an_export_record_without_hop_is_a_named_error(tmp_path, exported_bundles):
    import shutil

    path = tmp_path / "amp.bundle"
    shutil.copytree(exported_bundles["stateful"], path)
    doc = json.loads((path / "manifest.json").read_text())
    del doc["exports"]["stateful-f32"]["hop_samples"]
    (path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"exports\['stateful-f32'\]: missing required key 'hop_samples'"):
        read_bundle(path)


def test_ir_without_recorded_hashes_must_reproduce_the_reference(tmp_path, exported_bundles, caplog):
    """A manifest that records no IR hashes (an older edgeamp, or edited by hand) is checked against the
    golden input instead of silently running whatever IR files are there."""
    import shutil

    from edgeamp.edge_runtime.session import ProcessorFactory

    path = tmp_path / "amp.bundle"
    shutil.copytree(exported_bundles["stateful"], path)
    doc = json.loads((path / "manifest.json").read_text())
    for record in doc["exports"].values():
        record["sha256"] = {}
    (path / "manifest.json").write_text(json.dumps(doc))
    with caplog.at_level("INFO", logger="edgeamp"):
        ProcessorFactory(path, device="CPU", variant="stateful", precision="f32")
    assert "IR without recorded hashes reproduced the reference" in caplog.text
    b = read_bundle(path)
    bin_path = (path / b.manifest.exports["stateful-f32"].xml).with_suffix(".bin")
    data = bytearray(bin_path.read_bytes())
    for i in range(64, len(data), 97):  # scattered weights changed: a tampered model that still loads
        data[i] ^= 0x40
    bin_path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="has no hash recorded at export and does not reproduce the model"):
        ProcessorFactory(path, device="CPU", variant="stateful", precision="f32")


def _bomb_header(path: Path, name: str, shape: tuple[int, ...]) -> None:
    """Replace array ``name`` of an npz by a header claiming ``shape`` (float32) and no data."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    entries[f"{name}.npy"] = _npy_header(shape)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for fname, data in entries.items():
            zf.writestr(fname, data)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _add_arrays(path: Path, count: int, mib: int) -> None:
    import zipfile

    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            with zf.open(f"extra{i}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.zeros(mib << 18, np.float32))


def _huge_int_manifest(path: Path) -> None:
    _edit_manifest(path, sample_rate=None)
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[:-1] + ', "sample_rate": ' + "9" * 5000 + "}")


NPZ_BOMBS = [
    ("golden header claims 1 GiB", lambda p: _bomb_header(p / "golden.npz", "input", (1 << 28,)), r"refused unread"),
    ("golden with extra arrays", lambda p: _add_arrays(p / "golden.npz", 3, 60), r"unexpected \['extra0'"),
    ("weights with extra arrays", lambda p: _add_arrays(p / "weights.npz", 1, 60), r"unexpected \['extra0'"),
    ("golden output shorter", lambda p: np.savez(p / "golden.npz", **{**dict(np.load(p / "golden.npz")),
                                                                       "output": np.zeros(10, np.float32)}),
     r"output has 10 samples"),
    ("manifest nested deeply", lambda p: (p / "manifest.json").write_text("[" * 100000 + "]" * 100000),
     r"not valid JSON"),
    ("manifest with a 5000-digit int", lambda p: _huge_int_manifest(p), r"not valid JSON"),
    ("manifest of 5 MiB", lambda p: (p / "manifest.json").write_text(" " * (5 << 20) + "{}"),
     r"a manifest is a few KB"),
]


@pytest.mark.parametrize("case,damage,message", NPZ_BOMBS, ids=[c[0] for c in NPZ_BOMBS])
def test_npz_and_manifest_bombs_are_refused_unread(tmp_path, case, damage, message):
    """Regression: a 1.2 MB golden.npz claiming 1 GiB peaked at 2.2 GB before numpy refused it, and a
    0.9 MB golden.npz with 12 extra 60 MiB arrays was accepted (844 MB)."""
    import resource

    path = write_bundle(tmp_path / "b", make_bundle())
    damage(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BundleError, match=message):
        read_bundle(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 << 10  # KiB: nothing big was read


def test_export_record_hash_keys_are_checked(tmp_path):
    """Regression: a sha256 key "/x" in a manifest raised ValueError from deep inside path handling."""
    from edgeamp.export.exporter import export_bundle

    path = write_bundle(tmp_path / "b", make_bundle())
    export_bundle(path, variants=("stateful",), precisions=("f32",), verify_seconds=0.1)
    doc = json.loads((path / "manifest.json").read_text())
    record = next(iter(doc["exports"].values()))
    record["sha256"] = {"/x": "0" * 64}
    (path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="SHA-256 hex digests"):
        read_bundle(path)
