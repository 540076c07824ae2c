"""Models in and out: other tools' model files as bundles (``edgeamp import``) and bundles as
other tools' model files (``edgeamp export-model``).

- :mod:`.nam`: Neural Amp Modeler ``.nam`` (the LSTM architecture; WaveNet is refused);
- :mod:`.rtneural`: RTNeural JSON, as AIDA-X (``.aidax``), GuitarML and Guitarix load it;
- Keras-2 ``.h5`` of the original experiment: :mod:`edgeamp.interop.keras_h5`.

No TensorFlow and no torch: the formats are JSON and numpy. The bundle stays the only hand-off:
an imported model exports, renders, benches and serves like a trained one.
"""
