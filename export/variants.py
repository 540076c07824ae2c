"""Names shared by the exporter and its CLI (no OpenVINO import: the CLI must start on any runtime)."""

VARIANTS = ("stateful", "explicit_state", "window")
PRECISIONS = ("f32", "f16")
F32_TOLERANCE = 1e-5  # max abs error of an f32 IR against the numpy reference
