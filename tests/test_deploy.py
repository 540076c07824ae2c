"""deploy/: two `edgeamp serve` instances behind the real HAProxy (Debian's package) on loopback.

Streams are placed by the balancer; draining one instance with SIGTERM ends its streams with 1001
while a stream on the other instance loses no frame, and new streams go to the survivor.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from .conftest import REPO
from .edge_runtime.test_service import SR, Server, _close, _offline, _signal

aiohttp = pytest.importorskip("aiohttp")
pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy not installed (Debian haproxy; .ci/system-deps installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def balanced(exported_bundles, tmp_path):
    servers = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copytree(exported_bundles["stateful"], tmp_path / name / f"{name}.bundle")
        servers[name] = Server(tmp_path / name / f"{name}.bundle", "--workers", "1", "--drain-timeout", "2")
    port = _free_port()
    env = {**os.environ, "EDGEAMP_LB_BIND": f"127.0.0.1:{port}",
           "EDGEAMP_A": f"127.0.0.1:{servers['a'].port}", "EDGEAMP_B": f"127.0.0.1:{servers['b'].port}"}
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(REPO / "deploy" / "haproxy.cfg")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # both servers up behind the balancer
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    time.sleep(1.5)  # two health checks (inter 500 ms, rise 2)
    yield f"ws://127.0.0.1:{port}/stream", servers
    haproxy.terminate()
    try:
        haproxy.wait(10)
    except subprocess.TimeoutExpired:
        haproxy.kill()
    for s in servers.values():
        if s.proc.poll() is None:
            s.stop()


def test_drain_behind_haproxy(balanced, exported_bundles):
    url, servers = balanced
    x = _signal(3.0, seed=3)
    frames = x.shape[0] // 480

    async def scenario():
        async with aiohttp.ClientSession() as session:
            streams = []
            for _ in range(2):
                ws = await session.ws_connect(url)
                await ws.send_json({"sample_rate": SR, "block_size": 480})
                ready = await ws.receive_json()
                streams.append((ws, ready["model"]["bundle"]))
            homes = [b.rsplit("/", 1)[-1].split(".")[0] for _, b in streams]
            assert sorted(homes) == ["a", "b"], homes  # least connections: one stream each
            victim = homes[0]
            outputs: list[list[np.ndarray]] = [[], []]
            closes: list = [None, None]

            async def run(i):
                ws = streams[i][0]
                for k in range(frames):
                    if k == frames // 3 and i == 0:  # the instance holding stream 0 is drained mid-stream
                        servers[victim].proc.send_signal(15)
                    await ws.send_bytes(x[k * 480 : (k + 1) * 480].tobytes())
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        closes[i] = (msg.type, ws.close_code)
                        return
                    outputs[i].append(np.frombuffer(msg.data, np.float32))
                    await asyncio.sleep(0.005)
                await ws.close()

            await asyncio.gather(run(0), run(1))
            assert servers[victim].proc.wait(20) == 0  # drained and exited cleanly
            # a new stream goes to the surviving instance
            ws = await session.ws_connect(url)
            await ws.send_json({"sample_rate": SR, "block_size": 480})
            ready = await ws.receive_json()
            await ws.close()
            return homes, outputs, closes, ready["model"]["bundle"]

    homes, outputs, closes, new_home = asyncio.run(scenario())
    survivor = homes[1]
    assert closes[0] is not None and closes[0][1] == 1001, closes  # "going away"
    assert closes[1] is None and len(outputs[1]) == frames  # the other stream lost no frame
    _close(np.concatenate(outputs[1]), _offline(exported_bundles["stateful"], x[: frames * 480]))
    assert new_home.rsplit("/", 1)[-1].split(".")[0] == survivor
