"""The model families a bundle can hold, in one table.

A family is an architecture type (a frozen dataclass with a ``family`` literal, stored as the
manifest's ``architecture``), a weights type (``weights.npz``), and its numpy reference
(``forward``, ``initial_state``). Everything generic (bundle, processor, engines, batching,
service, ``edgeamp.load``, the CLIs) asks the architecture for ``state_sizes``,
``expected_shapes``, ``input_channels``, ``knobs``, ``describe``, ``summary`` and
``load_weights``, and the reference through :mod:`reference`, which dispatches here; the
exporter picks the family's graph builder from its own table (``export/graphs.py``).

- ``recurrent``: LSTM/GRU stacks with an optional head, FIR stage and input skip (``model.py``,
  ``reference.py``);
- ``wavenet``: NAM's A1 WaveNet (``wavenet.py``).
"""

from __future__ import annotations

from . import wavenet
from .model import Architecture
from .wavenet import WaveNetArchitecture

ModelArchitecture = Architecture | WaveNetArchitecture
FAMILIES = {"recurrent": Architecture, "wavenet": WaveNetArchitecture}
# the numpy reference of each family other than the recurrent one (reference.py holds that)
REFERENCES = {"wavenet": (wavenet.forward, wavenet.initial_state, wavenet.zero_state)}
