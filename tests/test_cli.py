"""CLI conventions: verbosity flags anywhere, one spelling per idea (old spellings still accepted)."""

from __future__ import annotations

import argparse

import pytest

from edgeamp.cli import build_parser


def test_verbosity_flags_work_after_the_subcommand():
    p = build_parser()
    assert p.parse_args(["-q", "info", "B"]).quiet is True
    assert p.parse_args(["info", "B", "-q"]).quiet is True  # was: "unrecognized arguments: -q"
    assert p.parse_args(["info", "B", "-vv"]).verbose == 2
    assert p.parse_args(["info", "B"]).verbose == 0 and p.parse_args(["info", "B"]).quiet is False


@pytest.mark.parametrize("argv, dest, value", [
    (["render", "B", "i.wav", "o.wav", "--block-size", "512"], "block", 512),
    (["render", "B", "i.wav", "o.wav", "--block", "512"], "block", 512),
    (["demo", "--out-dir", "x"], "out", "x"),
    (["demo", "--out", "x"], "out", "x"),
    (["demo", "--demo-seconds", "30"], "seconds", 30.0),
    (["demo-data", "d", "--seconds", "30"], "seconds", 30.0),
    (["live", "B", "--audio-device", "2"], "audio_device", "2"),
])
def test_unified_flags_and_their_old_spellings(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_old_spellings_are_hidden_from_help(capsys):
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["render"].format_help()
    assert "--block-size" in text and "--block " not in text and "--block," not in text
    demo = sub.choices["demo"].format_help()
    assert "--out-dir" in demo and "--demo-seconds" in demo and "--seconds" not in demo


def test_the_demo_trains_the_default_recipe():
    """Regression (quality by default): the demo trained `stateful` + 512 FIR taps on the pre-emphasised
    loss only while `edgeamp train` defaulted to `cab`; both now take train's default preset as it is."""
    p = build_parser()
    demo, train = p.parse_args(["demo"]), p.parse_args(["train", "--demo", "out"])
    assert demo.preset == train.preset == "cab" and demo.fir_taps is None
