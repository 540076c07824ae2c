"""Device choice and fallback, with injected device lists (no hardware needed)."""

from __future__ import annotations

import logging

import pytest

from edgeamp.core.errors import DeviceError
from edgeamp.edge_runtime.devices import choose_device


@pytest.mark.parametrize(
    "available,device,variant,precision",
    [
        (["CPU"], "CPU", "stateful", "f32"),
        (["CPU", "GPU"], "AUTO:GPU,CPU", "stateful", "f32"),
        (["CPU", "GPU.0", "GPU.1"], "AUTO:GPU,CPU", "stateful", "f32"),
        (["CPU", "GPU", "NPU"], "AUTO:NPU,GPU,CPU", "explicit_state", "f16"),
        (["CPU", "MYRIAD"], "MYRIAD", "explicit_state", "f16"),
        (["CPU", "GPU", "MYRIAD"], "MYRIAD", "explicit_state", "f16"),
        (["CPU", "MYRIAD", "NPU"], "AUTO:NPU,CPU", "explicit_state", "f16"),
    ],
)
def test_auto_priority(available, device, variant, precision):
    choice = choose_device("auto", available=available)
    assert (choice.device, choice.variant, choice.precision) == (device, variant, precision)


def test_window_mode_always_uses_window_graph():
    assert choose_device("auto", mode="window", available=["CPU", "MYRIAD"]).variant == "window"


def test_explicit_device_present():
    choice = choose_device("GPU.1", available=["CPU", "GPU.0", "GPU.1"])
    assert (choice.device, choice.variant) == ("GPU.1", "stateful")


def test_missing_device_falls_back_to_cpu_with_one_log_line(caplog):
    with caplog.at_level(logging.WARNING):
        choice = choose_device("NPU", available=["CPU"])
    assert choice.device == "CPU" and choice.reason == "fallback from NPU"
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "device 'NPU' not available (OpenVINO sees: CPU): falling back to CPU" in lines[0].message


def test_missing_device_with_strict_raises():
    with pytest.raises(DeviceError, match="'MYRIAD' not available.*--strict"):
        choose_device("MYRIAD", available=["CPU"], strict=True)


def test_auto_list_keeps_present_devices():
    choice = choose_device("AUTO:NPU,CPU", available=["CPU"])
    assert choice.device == "AUTO:NPU,CPU" and choice.variant == "stateful"
    with pytest.raises(DeviceError):
        choose_device("AUTO:NPU,GPU", available=["CPU"], strict=True)


def test_no_devices_at_all():
    with pytest.raises(DeviceError, match="no usable device"):
        choose_device("auto", available=[])


def test_real_device_list_has_cpu():
    from edgeamp.edge_runtime.devices import available_devices, describe_devices

    assert "CPU" in available_devices()
    rows = describe_devices()
    cpu = next(r for r in rows if r["device"] == "CPU")
    assert cpu["stateful_graphs"] and "FP32" in cpu["capabilities"]
