"""How many concurrent real-time streams the service holds, batched and unbatched (seed topology
64-64-1 and the product's `stateful` preset, 10 ms blocks). A real `edgeamp serve` process on
loopback; N clients in this process each send 10 ms float32 frames paced in real time (start phases
spread across the block, as independent sound cards would be) for a few seconds. The clients are
`ws_load.py`'s (plain sockets, one thread): aiohttp's client cost as much CPU per frame as the
service and, on the same 2 cores, ran out first. A level is *held* when the service reports no late
hop and the client-side round trip per frame has p99 <= 20 ms (two blocks of buffering) and at most
0.1 % of hops are late (the issue's "no late hop" flipped on one VM hiccup in 1200 hops: the
`stateful` preset unbatched held 16 streams in one run and 2 in the next; both counts are recorded).
N goes up until a level is overloaded (more than 1 % late hops or p99 over 40 ms); the count held is
the largest level held, and the first level not held is recorded too. Each level also records the
server's CPU use (cores busy, all threads): steadier than the held count, which one VM hiccup flips,
and what capacity planning needs.
Goals (issue: throughput): batched holds at least twice the unbatched count, and
>= 16 streams on 2 AVX-512 cores; a lone stream's p99 no worse than unbatched by more than the
batch wait. Process workers (`processes`: --processes 2, unbatched): 1.5x the single process's
count, with server CPU per stream-hop within 1.5x of the bare engine's hop (both recorded).
The client runs on the same 2 cores (lean as it is), so every figure is a lower bound.
Run: make bench   (or .venv/bin/python -m pytest benchmarks/test_service.py --benchmark-only)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from ws_load import run_streams

LEVELS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128)
SECONDS = 3.0
BLOCK, SR = 480, 48000
P99_LIMIT_MS = 20.0


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        total = 0.0
        for line in r.read().decode().splitlines():
            if line.startswith(name):
                total += float(line.split()[-1])
        return total


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, and of its worker processes (Linux /proc:
    `edgeamp serve --processes N` is a supervisor and N workers)."""
    import os

    def one(p: int) -> float:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return one(pid) + sum(one(int(c)) for c in children.split())


def _level(url: str, port: int, n: int, pid: int | None = None) -> dict:
    frames = int(SECONDS * SR / BLOCK)
    late0 = _metric(port, "edgeamp_late_hops_total")
    hops0 = _metric(port, "edgeamp_hops_total")
    cpu0, t0 = (_cpu_seconds(pid) if pid else 0.0), time.perf_counter()

    try:
        rtt = run_streams(url, n, frames, BLOCK, SR)
        cpu = (_cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0) if pid else None
        late = _metric(port, "edgeamp_late_hops_total") - late0
        hops = _metric(port, "edgeamp_hops_total") - hops0
    except OSError as exc:  # connections not taken, answers or /metrics missing: past capacity
        return {"streams": n, "error": f"{type(exc).__name__}: {exc}", "held": False, "held_strict": False,
                "late_hops": 0, "hops": 0, "rtt_ms_p99": float("inf"), "server_cpu_ms_per_stream_hop": None}
    p50, p99 = np.percentile(rtt, [50, 99])
    return {"streams": n, "rtt_ms_p50": float(p50), "rtt_ms_p99": float(p99), "rtt_ms_max": float(rtt.max()),
            "late_hops": int(late), "hops": int(hops),
            "server_cpu_cores": cpu,  # the server's CPU time over the level's wall time (all threads, processes)
            # what one stream's hop costs the server: to compare with the bare engine's per-hop time
            "server_cpu_ms_per_stream_hop": cpu * BLOCK / SR * 1000 / n if cpu is not None else None,
            "held": bool(late <= 0.001 * n * frames and p99 <= P99_LIMIT_MS),
            "held_strict": bool(late == 0 and p99 <= P99_LIMIT_MS)}


def _overloaded(level: dict) -> bool:
    """Past what the server can carry: the sweep stops here. A level that only misses "held" by a
    few late hops (one VM pause) does not stop it, so the levels above still show their CPU."""
    return ("error" in level or level["late_hops"] > 0.01 * level["hops"]
            or level["rtt_ms_p99"] > 2 * P99_LIMIT_MS)


MODES = {"unbatched": ["--processes", "1"], "batched": ["--batch"], "processes": ["--processes", "2"]}


def _bare_hop_ms(bundle) -> float:
    """The engine alone (the service's default backend, one thread): p50 of a 10 ms hop."""
    from edgeamp.edge_runtime.bench import bench_bundle

    return bench_bundle(bundle.path, device="CPU", threads=1, hops=500, warmup=50, peak=False)["hop_ms_p50"]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("preset", ["seed", "stateful"])
def test_concurrent_realtime_streams(benchmark, bundles, preset, mode):
    """``processes``: two service processes on the port (--processes 2), unbatched: the goal is 1.5x
    the single process's streams held (``unbatched``) with server CPU per stream-hop within 1.5x
    of the bare engine's hop."""
    bundle = bundles(preset)
    cmd = [sys.executable, "-m", "edgeamp", "serve", str(bundle.path), "--port", "0",
           "--device", "CPU", "--max-streams", str(max(LEVELS)), "--max-pending-per-peer", str(max(LEVELS))]
    cmd += MODES[mode]  # every client connects from loopback at once
    bare = _bare_hop_ms(bundle)
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"serve did not start: {line!r}"
        port = int(match.group(1))
        url = f"ws://127.0.0.1:{port}/stream"
        levels: list[dict] = []

        def sweep():
            levels.clear()
            for n in LEVELS:
                levels.append(_level(url, port, n, server.pid))
                print(json.dumps(levels[-1]))
                if _overloaded(levels[-1]):
                    break

        benchmark.group = f"service {preset} {mode}"
        benchmark.pedantic(sweep, rounds=1, iterations=1)
        held = [lv for lv in levels if lv["held"]]
        best = held[-1] if held else None
        missed = [lv["streams"] for lv in levels if not lv["held"]]
        benchmark.extra_info.update({
            "preset": preset, "mode": mode,
            "max_streams_held": best["streams"] if best else 0,
            "first_not_held": missed[0] if missed else None,
            "rtt_ms_p50": best["rtt_ms_p50"] if best else None,
            "rtt_ms_p99": best["rtt_ms_p99"] if best else None,
            "bare_engine_hop_ms_p50": bare,
            "server_cpu_per_stream_hop_vs_bare": (best["server_cpu_ms_per_stream_hop"] / bare
                                                  if best and best["server_cpu_ms_per_stream_hop"] else None),
            "levels": levels,
        })
    finally:
        server.terminate()
        server.wait(20)
