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
         "extra_info": {"real_time_factor": 5.0, "hop_ms_p99": 3.1, "deadline_misses": 0, "compile_seconds": 0.05,
                        "memory_mib": 12.5, "esr_vs_reference": 8.3e-15, "fraction_of_peak": 0.196}},
        {"name": "test_hop_speed[converted]", "group": "convert",
         "stats": {"mean": 0.03, "median": 0.03, "max": 0.05, "rounds": 30}, "extra_info": {"ops": ["Loop"]}},
        {"name": "test_concurrent_realtime_streams", "group": "service",
         "stats": {"mean": 6.0, "median": 6.0, "max": 6.0, "rounds": 1},
         "extra_info": {"max_streams_held": 2, "first_not_held": 4, "levels": [
             {"streams": 2, "rtt_ms_p50": 5.4, "rtt_ms_p99": 9.1, "rtt_ms_max": 10.3, "late_hops": 0, "held": True},
             {"streams": 4, "rtt_ms_p50": 7.9, "rtt_ms_p99": 23.0, "rtt_ms_max": 29.4, "late_hops": 0, "held": False},
         ]}},
    ],
}


def test_table_and_readme_update(tmp_path):
    text = report.table(DOC)
    assert "Measured on Test CPU, 2 cores" in text
    row = "| hop-stateful: openvino_hop[stateful-1] | 1.900 | 3.100 | 4.000 | 5.00 | 0 | 0.05 | 12.5 | 8.3e-15 | 19.6 |"
    assert row in text
    assert "| convert: hop_speed[converted] | 30.000 | – | 50.000 | – | – | – | – | – | – |" in text
    assert "| 4 | 7.90 | 23.00 | 29.40 | 0 | no |" in text and "streams held: **2**" in text
    assert "| seed | unbatched | **2** | 2 | 4 | 9.10 |" in text  # held, strictly, first level not held
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


def test_runs_merge_later_benchmarks_replacing_earlier_ones():
    later = {"benchmarks": [{**DOC["benchmarks"][0], "stats": {**DOC["benchmarks"][0]["stats"], "median": 0.001}},
                            {"name": "test_imported[x]", "group": "imported",
                             "stats": {"mean": 0.001, "median": 0.001, "max": 0.002, "rounds": 5}}]}
    merged = report.merge([DOC, later])
    names = [b["name"] for b in merged["benchmarks"]]
    assert sorted(names) == sorted([b["name"] for b in DOC["benchmarks"]] + ["test_imported[x]"])
    assert next(b for b in merged["benchmarks"] if b["name"] == "test_openvino_hop[stateful-1]")["stats"][
        "median"] == 0.001
    assert merged["machine_info"] == DOC["machine_info"]
