"""Model export: bundle weights -> hand-built OpenVINO graphs; legacy CuDNNLSTM import. No TensorFlow."""
