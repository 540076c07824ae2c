"""`edgeamp bench --arch`: latency sweeps of random-weight models, no training needed."""

from __future__ import annotations

import json

import pytest

from edgeamp.cli import main
from edgeamp.core.errors import ConfigError
from edgeamp.export.sweep import ArchSpec


def test_arch_spec():
    assert ArchSpec.parse("64,64,1").name == "lstm-64-64-1" and not ArchSpec.parse("64,64,1").head
    assert ArchSpec.parse("32").name == "lstm-32+head" and ArchSpec.parse("32").architecture().head
    gru = ArchSpec.parse("gru:12")
    assert gru.name == "gru-12+head" and gru.architecture().cell == "gru"
    with pytest.raises(ConfigError, match="choose lstm or gru"):
        ArchSpec.parse("rnn:12")
    with pytest.raises(ConfigError, match="layer sizes like 64,64,1"):
        ArchSpec.parse("big")


def test_sweep_cli_writes_table_plot_and_json(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["bench", "--arch", "6,1", "--arch", "gru:4", "--hop-ms", "5,10", "--batch", "1,3", "--device", "CPU",
                 "--threads", "1", "--hops", "20", "--warmup", "2", "--out-dir", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert {(r["arch"], r["hop_ms"]) for r in result["rows"]} == {
        ("lstm-6-1", 5.0), ("lstm-6-1", 10.0), ("gru-4+head", 5.0), ("gru-4+head", 10.0)}
    for r in result["rows"]:  # exported and verified like any bundle, then measured
        assert r["esr_vs_reference"] < 1e-8 and r["hop_ms_p50"] > 0
        assert 0 < r["device_ms_p50"] <= r["hop_ms_p50"] and 0 <= r["overhead_ms_p50"]
    assert {b["batch"] for b in result["batches"]} == {1, 3} and all(b["per_stream_ms"] > 0 for b in result["batches"])
    assert (out / "sweep.png").stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "| lstm-6-1 |" in text and "streams per lane in real time" in text
    assert "Streams per lane in real time = batch x floor(hop / batch p99)" in text  # what the column means
    assert main(["bench", "--hop-ms", "5,10", str(out)]) == 2  # several hops without --arch
    assert "add --arch" in capsys.readouterr().err
