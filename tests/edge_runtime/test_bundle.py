"""Model bundle: round trip, schema checks, bad bundles, atomic writes, `edgeamp info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeamp.edge_runtime import atomic
from edgeamp.edge_runtime.bundle import (
    Bundle,
    Manifest,
    read_bundle,
    replace_manifest,
    verify_golden,
    write_bundle,
)
from edgeamp.edge_runtime.cli import main as cli_main
from edgeamp.edge_runtime.errors import BundleError
from edgeamp.edge_runtime.model import Architecture, Knob, Streaming, random_weights


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
    assert doc["schema_version"] == 1 and doc["architecture"]["lstm_units"] == [8, 4]


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
        lambda p: _edit_manifest(p, architecture={"lstm_units": [8, 5], "head": True, "skip": True, "knobs": []}),
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

    monkeypatch.setattr("edgeamp.edge_runtime.bundle._save_npz", boom)
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
import edgeamp.edge_runtime.bundle as B
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
