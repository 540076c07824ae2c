"""benchmarks/report.py: JSON in, README table out (between its markers), PNG written."""

from __future__ import annotations

import importlib.util
import json

import pytest

from .conftest import REPO

spec = importlib.util.spec_from_file_location("bench_report", REPO / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

DOC = {
    "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.11.7"},
    "datetime": "2026-11-25T12:00:00",
    "benchmarks": [
        {"name": "test_openvino_hop[stateful-1]", "group": "hop-stateful",
         "stats": {"mean": 0.002, "median": 0.0019, "max": 0.004, "rounds": 600},
         "extra_info": {"real_time_factor": 5.0, "hop_ms_p99": 3.1, "deadline_misses": 0}},
        {"name": "test_hop_speed[converted]", "group": "convert",
         "stats": {"mean": 0.03, "median": 0.03, "max": 0.05, "rounds": 30}, "extra_info": {"ops": ["Loop"]}},
    ],
}


def test_table_and_readme_update(tmp_path):
    text = report.table(DOC)
    assert "Measured on Test CPU, 2 cores" in text
    assert "| hop-stateful: openvino_hop[stateful-1] | 2.000 | 1.900 | 3.100 | 4.000 | 5.00 | 0 | 600 |" in text
    assert "| convert: hop_speed[converted] | 30.000 | 30.000 | – | 50.000 | – | – | 30 |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold table\n{report.END}\noutro\n")
    src = tmp_path / "b.json"
    src.write_text(json.dumps(DOC))
    report.main([str(src), "--readme", str(readme), "--png", str(tmp_path / "p.png")])
    content = readme.read_text()
    assert "old table" not in content and "openvino_hop[stateful-1]" in content
    assert content.startswith("intro\n") and content.endswith("outro\n")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_missing_markers(tmp_path):
    (tmp_path / "R.md").write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        report.update_readme(tmp_path / "R.md", "x")
