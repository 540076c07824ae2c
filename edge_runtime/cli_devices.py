"""List the inference devices OpenVINO sees and what edgeamp would run on each.

'stateful graphs' says whether the device keeps LSTM state inside the graph
(ReadValue/Assign); where not (Myriad VPU), edgeamp loads the explicit-state IR and carries
the state itself. `--device auto` picks NPU, then Myriad, then GPU, then CPU.
"""

from __future__ import annotations

import argparse
import json

from . import native, ov_compat
from .devices import choose_device, describe_devices


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    rows = describe_devices()
    auto = choose_device("auto")
    if args.json:
        print(json.dumps({"openvino": ov_compat.version(), "devices": rows, "auto": auto.__dict__,
                          "native": {"target": native.target(), "unavailable": native.unavailable_reason(),
                                     "bf16": native.bf16_reason() is None}},
                         indent=2))
        return 0
    print(f"OpenVINO {ov_compat.version()}")
    for r in rows:
        print(f"{r['device']:8s} {r['name']}")
        print(f"         precisions/capabilities: {', '.join(r['capabilities']) or '?'}")
        print(f"         stateful graphs: {'yes' if r['stateful_graphs'] else 'no'}; edgeamp loads the "
              f"{r['variant']} IR")
    print(f"auto  -> {auto.device} ({auto.variant} IR, {auto.precision} weights): {auto.reason}")
    why = native.unavailable_reason()
    print(f"native CPU engine: {'built for ' + native.target() if why is None else why}"
          + ("; --backend auto runs a model on it when the device is the CPU" if why is None else ""))
    if why is None:
        bf16 = native.bf16_reason()
        print("native bf16 (--inference-precision bf16): " + (
            "recurrent layers with 32 KB or more of step weights (smaller ones run f32)" if bf16 is None else bf16))
    return 0
