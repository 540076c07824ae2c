"""Names shared by the exporter and its CLI (no OpenVINO import: the CLI must start on any runtime)."""

VARIANTS = ("stateful", "explicit_state", "window", "batched")
PRECISIONS = ("f32", "f16")
# max abs error of an f32 IR against the numpy reference, per unit of the reference's peak when
# that exceeds full scale (float32 rounding grows with the signal: a loud model at peak 1.7 shows
# 1.2e-5 with an ESR of 4e-13)
F32_TOLERANCE = 1e-5


def f32_limit(peak: float, tolerance: float = F32_TOLERANCE) -> float:
    return tolerance * max(1.0, float(peak))
