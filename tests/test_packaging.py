"""Packaging promises: one namespace, no TensorFlow on the device side, a teaching CLI."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("edgeamp-*.whl")
    return path


def test_wheel_installs_only_the_edgeamp_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"edgeamp", next(t for t in top if t.endswith(".dist-info"))}, top
    for stage in ("edge_runtime", "export", "train"):
        assert f"edgeamp/{stage}/__init__.py" in names
    assert "edgeamp/__init__.py" in names  # the public API (api/ in the source tree)
    assert "edgeamp/edge_runtime/service/app.py" in names  # subpackages too
    assert not any(n.startswith(("train/", "export/", "edge_runtime/", "api/", "tests/", "benchmarks/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Python: >=3.10" in meta
    base = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any("tensorflow" in line or "keras" in line for line in base), base


BLOCK_TF = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import edgeamp, edgeamp.edge_runtime as er, edgeamp.export as ex
assert callable(edgeamp.load) and edgeamp.__version__
for pkg in (er, ex):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):
        if not m.name.endswith('__main__'):
            importlib.import_module(m.name)
assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)
from edgeamp.cli import main
try:
    main(['--help'])
except SystemExit as exc:
    assert exc.code == 0, exc.code
"""


def test_edge_runtime_and_export_run_without_tensorflow():
    proc = subprocess.run([sys.executable, "-c", BLOCK_TF], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "edgeamp" in proc.stdout


def test_cli_version_and_help():
    proc = subprocess.run([sys.executable, "-m", "edgeamp", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("edgeamp ")
    proc = subprocess.run([sys.executable, "-m", "edgeamp", "--help"], capture_output=True, text=True)
    assert "typical flow" in proc.stdout and "import-legacy" in proc.stdout


def test_importing_edge_runtime_does_no_work():
    heavy = ("openvino", "sounddevice", "soundfile", "h5py")
    code = f"import sys, edgeamp.edge_runtime; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_building_the_cli_imports_no_heavy_runtime():
    """`edgeamp --help` must start anywhere, OpenVINO 2022.3 included: commands import lazily."""
    heavy = ("openvino", "tensorflow", "keras", "sounddevice", "h5py")
    code = ("import sys; from edgeamp.cli import build_parser; build_parser(); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("containerfile", ["Containerfile", "Containerfile.myriad"])
def test_the_containerfile_copies_every_package_and_builds(tmp_path, containerfile):
    """deploy/Containerfile's (and the Myriad variant's) COPY lines are all the source its `pip
    install .` sees: lay out exactly those files and build the wheel from them (no container engine
    runs here)."""
    import re
    import shutil

    lines = (REPO / "deploy" / containerfile).read_text().splitlines()
    copies = [line.split()[1:] for line in lines if line.startswith("COPY ")]
    src = tmp_path / "src"
    src.mkdir()
    for *sources, _dest in copies:
        for name in sources:
            path = REPO / name
            (shutil.copytree if path.is_dir() else shutil.copy)(path, src / name)
    package_dirs = set(re.findall(r'"edgeamp[.\w]*" = "(\w+)"', (REPO / "pyproject.toml").read_text()))
    assert package_dirs <= {p.name for p in src.iterdir()}, package_dirs - {p.name for p in src.iterdir()}
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = zipfile.ZipFile(next(out.glob("edgeamp-*.whl"))).namelist()
    assert "edgeamp/interop/importer.py" in names and "edgeamp/core/wavenet.py" in names


def test_the_systemd_template_gives_each_instance_its_own_port_and_the_npu():
    """Two models on one host: each instance reads its own environment file (%i.env) after the shared
    one, its port and address come from there, and the dynamic user may open the NPU's device node."""
    unit = (REPO / "deploy" / "edgeamp-serve@.service").read_text()
    service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    lines = [line.strip() for line in service.splitlines() if line.strip() and not line.startswith("#")]
    env_files = [line.split("=", 1)[1] for line in lines if line.startswith("EnvironmentFile=")]
    assert env_files == ["-/etc/edgeamp/serve.env", "-/etc/edgeamp/%i.env"]  # later files override earlier
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert "--port ${EDGEAMP_PORT}" in exec_start and "--host ${EDGEAMP_HOST}" in exec_start
    assert "--processes ${EDGEAMP_PROCESSES}" in exec_start  # one process per core unless the file says
    assert "/var/lib/edgeamp/models/%i.bundle" in exec_start
    assert "SupplementaryGroups=render" in lines and "DynamicUser=yes" in lines
    assert "pip install edgeamp" not in unit  # not published: installed from a checkout
    readme = (REPO / "README.md").read_text()
    assert "systemctl enable --now edgeamp-serve@amp edgeamp-serve@clean" in readme


@pytest.mark.skipif(__import__("shutil").which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_template_passes_systemd_analyze(tmp_path):
    import shutil

    shutil.copy(REPO / "deploy" / "edgeamp-serve@.service", tmp_path / "edgeamp-serve@amp.service")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "edgeamp-serve@amp.service")],
                          capture_output=True, text=True, timeout=60)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines()
                  if line.strip() and "/opt/edgeamp/bin/edgeamp is not executable" not in line]
    assert not complaints, complaints  # only that edgeamp is not installed at /opt/edgeamp on this machine
