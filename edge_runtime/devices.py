"""Which OpenVINO device runs the model, and which IR variant that device needs.

``auto`` prefers NPU, then a Myriad VPU, then GPU, then CPU. NPU and GPU go through
OpenVINO's ``AUTO`` with an explicit priority list ending in CPU (``AUTO`` falls back when
a device fails; ``HETERO`` would not). A Myriad VPU (OpenVINO 2022.3 only) has no
ReadValue/Assign, so it gets the ``explicit_state`` IR and edgeamp carries the state;
NPU gets it too (stateful-graph support varies by NPU driver). The device list can be
injected, so the logic is tested without the hardware.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgeamp.core.errors import DeviceError

log = logging.getLogger(__name__)

AUTO_PRIORITY = ("NPU", "MYRIAD", "GPU", "CPU")
EXPLICIT_STATE_DEVICES = ("NPU", "MYRIAD")
NO_READVALUE_DEVICES = ("MYRIAD",)


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # what compile_model gets, e.g. "CPU", "AUTO:NPU,CPU", "MYRIAD"
    variant: str  # IR variant to load: "stateful", "explicit_state" or "window"
    precision: str  # weights precision of the IR to load
    reason: str


def _family(name: str) -> str:
    return name.split(".")[0].split(":")[0].upper()


def available_devices() -> list[str]:
    from . import ov_compat

    return list(ov_compat.core().available_devices)


def choose_device(
    requested: str = "auto",
    *,
    mode: str = "stateful",
    available: list[str] | None = None,
    strict: bool = False,
) -> DeviceChoice:
    """Pick the device string and IR variant for ``requested`` given the ``available`` devices.

    ``mode`` is the streaming semantics wanted (``stateful`` or ``window``). A requested
    device that is missing falls back to CPU with one log line, or raises with ``strict``.
    """
    if available is None:
        available = available_devices()
    families = {_family(d) for d in available}
    req = requested.strip()
    if req.lower() == "auto":
        order = [d for d in AUTO_PRIORITY if d in families]
        if not order:
            raise DeviceError(f"OpenVINO reports no usable device (available: {available})")
        first = order[0]
        if first == "MYRIAD":
            return _choice("MYRIAD", mode, "auto: Myriad VPU found (explicit-state IR, FP16)")
        if first == "CPU":
            return _choice("CPU", mode, "auto: only CPU available")
        chain = [d for d in order if d != "MYRIAD"]
        device = "AUTO:" + ",".join(chain)
        return _choice(device, mode, f"auto: priority {','.join(chain)}", family=first)

    wanted = [_family(part) for part in req.split(":", 1)[-1].split(",")] if ":" in req else [_family(req)]
    if req.upper().startswith(("AUTO", "HETERO", "MULTI")):
        missing = [w for w in wanted if w not in families]
        present = [w for w in wanted if w in families]
        if not present:
            return _fallback(req, available, strict, mode)
        if missing:
            log.info("devices %s not present; %s continues with %s", missing, req.split(":")[0], present)
        return _choice(req, mode, f"as requested ({req})", family=present[0])
    if wanted[0] not in families:
        return _fallback(req, available, strict, mode)
    return _choice(req, mode, f"as requested ({req})")


def _choice(device: str, mode: str, reason: str, family: str | None = None) -> DeviceChoice:
    fam = family or _family(device)
    if mode == "window":
        variant = "window"  # stateless graph: runs everywhere
    else:
        variant = "explicit_state" if fam in EXPLICIT_STATE_DEVICES else "stateful"
    precision = "f16" if fam in EXPLICIT_STATE_DEVICES else "f32"
    return DeviceChoice(device, variant, precision, reason)


def _fallback(req: str, available: list[str], strict: bool, mode: str) -> DeviceChoice:
    message = f"device {req!r} not available (OpenVINO sees: {', '.join(available) or 'none'})"
    if strict:
        raise DeviceError(message + "; not falling back because of --strict")
    if "CPU" not in {_family(d) for d in available}:
        raise DeviceError(message + "; no CPU to fall back to")
    log.warning("%s: falling back to CPU", message)
    return _choice("CPU", mode, f"fallback from {req}")


def describe_devices() -> list[dict]:
    """What `edgeamp devices` prints: name, full name, precisions, whether graphs may keep state."""
    from . import ov_compat

    core = ov_compat.core()
    rows = []
    def prop(dev, key, default=""):
        try:
            return core.get_property(dev, key)
        except RuntimeError:
            return default

    for dev in core.available_devices:
        fam = _family(dev)
        rows.append({
            "device": dev,
            "name": str(prop(dev, "FULL_DEVICE_NAME")),
            "capabilities": [str(c) for c in (prop(dev, "OPTIMIZATION_CAPABILITIES", []) or [])],
            "stateful_graphs": fam not in NO_READVALUE_DEVICES,
            "variant": _choice(dev, "stateful", "").variant,
        })
    return rows
