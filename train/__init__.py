"""Training: audio I/O and checks, demo data, Keras model presets, fit loop, evaluation."""
