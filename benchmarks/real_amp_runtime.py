"""The runtime carries the real amplifier's knob model: the CLI, the Python API and the service's
knob messages, each run on the conditioned bundle of benchmarks/real_amp_knobs.py and compared.

1. ``edgeamp render BUNDLE file_9_input.wav OUT --knob bass=4`` (the CLI, a subprocess);
2. the Python API: ``amp = edgeamp.load(BUNDLE); amp.bass = 4; amp(x, sr)``, against the render;
3. the service: ``edgeamp serve BUNDLE`` (a subprocess), a stream whose handshake sets bass=4,
   against the render; then a stream at bass=2 that sends ``{"type": "knobs", "knobs": {"bass": 8}}``
   at 1 s, against the API making the same change at the same sample, and the largest
   sample-to-sample step around the change against the same stream without it (clicks).

Run by hand (a minute; needs ../shared/data/real-amp and a conditioned bundle)::

    .venv/bin/python benchmarks/real_amp_runtime.py out/k17.bundle [--json out/runtime.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DI = REPO.parent / "shared" / "data" / "real-amp" / "knob-sweeps" / "file_9_input.wav"
SR = 44100
CHANGE_AT_S = 1.0


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "edgeamp", *args]
    print("$ edgeamp " + " ".join(args), flush=True)
    if kw.pop("background", False):
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stream_with_change(url: str, x: np.ndarray, knobs: dict, change: dict | None, at: int) -> np.ndarray:
    """One frame in flight at a time (so that a knob message lands between two known frames)."""
    import aiohttp

    from edgeamp.edge_runtime.stream_client import open_stream
    from edgeamp.edge_runtime.wire import decode_into, encode

    async with aiohttp.ClientSession() as session:
        ws, ready = await open_stream(session, url, {"sample_rate": SR, "format": "float32", "knobs": knobs})
        block, lat = ready["block_size"], ready["latency_samples"]
        frames = -(-(x.shape[0] + lat) // block)
        padded = np.zeros(frames * block, np.float32)
        padded[: x.shape[0]] = x
        out = np.zeros_like(padded)
        for i in range(frames):
            if change is not None and i * block == at:
                await ws.send_str(json.dumps({"type": "knobs", "knobs": change}))
                reply = json.loads((await ws.receive()).data)
                assert reply == {"type": "ok", "for": "knobs"}, reply
            await ws.send_bytes(encode(padded[i * block : (i + 1) * block], "float32"))
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    decode_into(msg.data, "float32", out[i * block : (i + 1) * block])
                    break
        await ws.close()
    return out[lat : lat + x.shape[0]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="the conditioned bundle (knobs bass, mid, treble)")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    import edgeamp

    x, sr = sf.read(DI, dtype="float32")
    assert sr == SR, sr
    x = np.ascontiguousarray((x[:, 0] if x.ndim == 2 else x)[: 4 * SR])  # the DI is channel 1
    results: dict = {"bundle": args.bundle, "clip": DI.name, "seconds": x.shape[0] / SR}
    with tempfile.TemporaryDirectory() as tmp:
        sf.write(f"{tmp}/di.wav", x, SR, subtype="FLOAT")
        run_cli("render", args.bundle, f"{tmp}/di.wav", f"{tmp}/out.wav", "--device", "CPU", "--knob", "bass=4")
        rendered, _ = sf.read(f"{tmp}/out.wav", dtype="float32")
    amp = edgeamp.load(args.bundle, device="CPU")
    neutral = amp(x, SR)
    amp.bass = 4
    api = amp(x, SR)
    results["render_vs_api_max_abs"] = float(np.max(np.abs(rendered - api)))
    results["bass4_vs_bass5_rms_db"] = float(20 * np.log10(np.sqrt(np.mean((api - neutral) ** 2))
                                                          / np.sqrt(np.mean(neutral**2))))
    hop = amp.hop_samples  # the model's hop at 44.1 kHz (no resampling: the model's own rate)
    at = int(CHANGE_AT_S * SR) // hop * hop
    # the API with the same change at the same sample: chunks, then aligned by the stream's latency
    amp.bass = 2
    amp.reset()
    first = amp(x[:at], SR, reset=False)
    amp.bass = 8
    lat = amp.latency_samples
    api_changed = np.concatenate([first, amp(np.concatenate([x[at:], np.zeros(lat, np.float32)]), SR,
                                             reset=False)])[lat:]
    port = free_port()
    server = run_cli("serve", args.bundle, "--port", str(port), "--device", "CPU", background=True)
    try:
        url = f"ws://127.0.0.1:{port}/stream"
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    output = server.stdout.read() if server.poll() is not None else ""
                    raise RuntimeError("the service did not start:\n" + output) from None
                time.sleep(0.3)
        served = asyncio.run(stream_with_change(url, x, {"bass": 4.0}, None, 0))
        results["service_vs_render_max_abs"] = float(np.max(np.abs(served - rendered)))
        steady = asyncio.run(stream_with_change(url, x, {"bass": 2.0}, None, 0))
        changed = asyncio.run(stream_with_change(url, x, {"bass": 2.0}, {"bass": 8.0}, at))
    finally:
        server.terminate()
        server.wait(10)
    window = slice(at - 2048, at + 4096)
    step = lambda y: float(np.max(np.abs(np.diff(y[window]))))  # noqa: E731
    results.update({
        "knob_message_at_sample": at,
        "service_change_vs_api_change_max_abs": float(np.max(np.abs(changed - api_changed))),
        "max_step_with_change": step(changed), "max_step_without": step(steady),
        "max_step_whole_clip": float(np.max(np.abs(np.diff(steady)))),
        "change_moved_output_rms_db": float(20 * np.log10(np.sqrt(np.mean((changed[at:] - steady[at:]) ** 2))
                                                          / np.sqrt(np.mean(steady[at:] ** 2)))),
    })
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
