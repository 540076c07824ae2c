"""The one place that knows OpenVINO API differences.

Current releases expose ``openvino.Core``; 2022.3 LTS (the last with the Myriad VPU
plugin, Python <= 3.10) only has ``openvino.runtime``. Everything else in edgeamp goes
through this module, imported lazily so that ``import edgeamp.edge_runtime`` stays cheap.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def ov() -> Any:
    """The module holding ``Core``, ``Tensor``, ``Model`` (``openvino`` or ``openvino.runtime``)."""
    try:
        import openvino

        if hasattr(openvino, "Core"):
            return openvino
    except ImportError as exc:  # pragma: no cover - the base install has openvino
        from edgeamp.core.errors import DeviceError

        raise DeviceError("OpenVINO is not installed: pip install openvino") from exc
    import openvino.runtime as runtime  # 2022.x

    return runtime


def opset8() -> Any:
    """The opset8 builders (``openvino.opset8``, or ``openvino.runtime.opset8`` in 2022.3)."""
    try:
        from openvino import opset8 as ops
    except ImportError:  # 2022.x
        from openvino.runtime import opset8 as ops
    return ops


def opset6() -> Any:
    """The opset6 builders (ReadValue/Assign of the stateful graphs)."""
    try:
        from openvino import opset6 as ops
    except ImportError:  # 2022.x
        from openvino.runtime import opset6 as ops
    return ops


def version() -> str:
    return str(ov().get_version())


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One shared ``Core`` per process (device discovery happens here, never at import)."""
    return ov().Core()


def read_model(xml_path: str) -> Any:
    return core().read_model(xml_path)


def cpu_config(threads: int | None = None, precision: str = "f32", streams: int = 1) -> dict[str, str]:
    """CPU plugin settings: inference precision pinned (bf16 would be the default on
    AVX512_BF16 CPUs), latency hint, ``streams`` requests that may run at once, optional thread
    count per request. The plugin's INFERENCE_NUM_THREADS is the total and it keeps no more
    streams than threads, so the total is threads x streams (with 1 in all, two requests ran one
    after the other: 2.85 ms per seed hop each instead of 1.5)."""
    streams = int(streams)
    cfg = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": str(streams)}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = str(int(threads) * streams)
    return cfg


def op_types(model: Any) -> list[str]:
    """Sorted distinct op type names in a model (``Loop``/``TensorIterator`` must never appear)."""
    return sorted({node.get_type_name() for node in model.get_ordered_ops()})
