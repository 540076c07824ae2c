"""GPU readiness (`make gpu-check`): a short seed-recipe and stateful-recipe training on a GPU.

Fails (exit 1) unless TensorFlow sees a GPU and the LSTM layers run cuDNN's kernel: every LSTM is
built with ``use_cudnn=True``, which Keras refuses where cuDNN cannot run the layer, and one step
is run on the GPU first. Then each recipe trains --steps steps on the demo data on the GPU and on
the CPU, and steps per second are reported for both (the mission trains on a desktop GPU; the test
suite never sees one).

Run: make gpu-check   (or .venv/bin/python benchmarks/gpu_check.py --steps 50 --json out.json)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def cudnn_probe(tf, keras) -> str:
    """One forward/backward step of a cuDNN-only LSTM on the GPU; raises where cuDNN cannot run it."""
    with tf.device("/GPU:0"):
        layer = keras.layers.LSTM(8, return_sequences=True, use_cudnn=True)
        x = tf.random.normal((4, 32, 1))
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_mean(y**2)
        tape.gradient(loss, layer.trainable_variables)
        return y.device


def steps_per_second(preset: str, device: str, steps: int, segments, sample_rate: int) -> float:
    import tensorflow as tf

    from edgeamp.train.fit import fit
    from edgeamp.train.presets import get_preset

    overrides = {"val_every_steps": steps + 1}
    config = get_preset(preset, **overrides)
    train, val = segments
    with tf.device(device), tempfile.TemporaryDirectory() as tmp:
        fit(config, config.architecture(), train, val, sample_rate, steps=2, seed=0, checkpoint_dir=tmp)  # warm up
        t0 = time.perf_counter()
        fit(config, config.architecture(), train, val, sample_rate, steps=steps, seed=0, checkpoint_dir=tmp)
        return steps / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="training steps per recipe and device (default 50)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    from edgeamp.train.fit import _tf

    tf, keras = _tf()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("gpu-check: FAILED: TensorFlow sees no GPU (tensorflow-cpu installed, no CUDA driver, or "
              "CUDA_VISIBLE_DEVICES hides it). Install 'tensorflow[and-cuda]' on a machine with an NVIDIA GPU.",
              file=sys.stderr)
        return 1
    try:
        where = cudnn_probe(tf, keras)
    except Exception as exc:  # Keras refuses use_cudnn=True where cuDNN cannot run the layer
        print(f"gpu-check: FAILED: the LSTM does not run cuDNN's kernel: {exc}", file=sys.stderr)
        return 1
    from edgeamp.train.data import load_pair
    from edgeamp.train.dataset import make_segment, split_tail
    from edgeamp.train.demo_data import write_demo_data

    with tempfile.TemporaryDirectory() as tmp:
        demo = write_demo_data(tmp, seconds=30)
        pair = load_pair(demo.di, next(iter(demo.targets.values())))
    train, val = split_tail(make_segment(pair.x, pair.y, (), {}, "demo"), 0.15)
    figures = {"gpu": [g.name for g in gpus], "cudnn_probe_device": where}
    for preset in ("seed", "stateful"):
        gpu = steps_per_second(preset, "/GPU:0", args.steps, ([train], [val]), pair.report.sample_rate)
        cpu = steps_per_second(preset, "/CPU:0", args.steps, ([train], [val]), pair.report.sample_rate)
        figures[preset] = {"gpu_steps_per_s": gpu, "cpu_steps_per_s": cpu, "speedup": gpu / cpu}
        print(f"{preset:9s} GPU {gpu:8.2f} steps/s   CPU {cpu:8.2f} steps/s   {gpu / cpu:5.1f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    print(f"gpu-check: OK: {len(gpus)} GPU(s), LSTM on cuDNN ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
