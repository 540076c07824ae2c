"""The headless streaming service: audio over WebSocket, control and metrics over HTTP (aiohttp).

Protocol (one WebSocket per stream, at ``/stream``):

1. The client's first message is JSON text::

       {"sample_rate": 48000, "format": "float32", "block_size": 480, "knobs": {"gain": 7}}

   ``format`` is ``float32`` or ``int16`` (little-endian PCM), ``block_size`` the samples per
   frame (default: the model's hop), ``knobs`` and ``bypass`` optional. The service answers
   ``{"type": "ready", "stream": ID, "latency_samples": L, ...}`` or ``{"type": "error",
   "reason": ...}`` followed by a close (1003 unsupported, 1008 policy).
2. Then binary frames of exactly ``block_size`` samples in; one processed frame of the same
   size and format comes back for each, in order. The output is the model's output delayed
   by ``latency_samples`` (0 when ``block_size`` is a multiple of the hop).
3. Text messages mid-stream: ``{"type": "knobs", "knobs": {...}}``, ``{"type": "reset"}``,
   ``{"type": "bypass", "on": true}``, ``{"type": "stats"}``. The service may send text too:
   ``warning`` (a frame held NaN/Inf, zeroed), ``swapped`` (a new model took over the stream),
   ``error``.

A frame of the wrong size closes the stream with 1007 and the reason (frames are the clock:
guessing would shift everything after). Nothing a client sends touches another stream: each
has its own processor (own InferRequest and state) and its own lock.

HTTP: ``/healthz``, ``/readyz``, ``GET /model``, ``GET /streams``, ``POST /knobs``,
``POST /reset``, ``POST /bypass``, ``POST /swap`` (hot swap: streams move to the new model at
their next frame, none is dropped), ``/metrics`` (Prometheus). With a token, every path but
the health checks needs ``Authorization: Bearer TOKEN`` (or ``?token=`` for WebSocket clients
that cannot set headers).

Layout of this package (one module per seam): ``protocol`` (limits, handshake, close codes),
``model`` (the model held and its batched engine), ``stream`` (one stream's state), ``pool``
(real-time-first worker threads), ``metrics`` (Prometheus), ``security`` (Origin/Host/content
type and token), ``control`` (HTTP routes), ``streams`` (WebSocket I/O), ``local_audio`` (a sound
card through the same model), ``app`` (the Service and its lifecycle). The batched engine is
``edge_runtime.batching``, which knows nothing of HTTP.
"""

from .app import Service
from .protocol import Limits, check_exposure, is_loopback

__all__ = ["Limits", "Service", "check_exposure", "is_loopback"]
