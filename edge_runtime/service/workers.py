"""Process workers: ``edgeamp serve --processes N`` runs N service processes on one port.

One Python process computes its hops under one GIL, so on a 2-core machine a single service
cannot use both cores for its streams' Python work. A supervisor (this module's
:func:`supervise`, the process ``edgeamp serve`` starts as) starts N workers, each a whole
service (:class:`~.app.Service`) with its own streams, model and threads, all listening on the
same TCP port with ``SO_REUSEPORT``: the kernel spreads new connections over them.

What spans the workers:

- **Control.** Each worker also listens on a Unix socket in the supervisor's private folder
  (mode 0700). A control request (``/knobs``, ``/reset``, ``/bypass``, ``/swap``) that lands on a
  worker is applied there and relayed, with the caller's headers, to the others' sockets; one
  naming a stream (ids are ``wK-sN``: worker K) goes to its worker only. ``GET /streams`` lists
  every worker's streams. A relayed request is never relayed again (only the Unix socket's are
  taken as relayed).
- **Metrics.** prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` in the same
  folder): any worker's ``/metrics`` is the sum over all of them, counters of workers that
  ended included; ``process_*`` series carry a ``worker`` label, one per live worker.
- **Drain.** SIGTERM or SIGINT to the supervisor goes to every worker, each drains as a single
  service does; the supervisor exits 0 when all did (systemd's control-group kill reaches them
  too, with the same result).
- **A worker that dies** is started again (its streams are lost; its clients reconnect), at most
  :data:`MAX_RESTARTS` times a minute; past that the supervisor stops the others and exits 1.
  Workers end with the supervisor (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_RESTARTS = 5  # a minute, per supervisor
READY_SECONDS = 300.0  # a worker's start (model load, compile, native verification) may take this long
ENV_WORKER, ENV_DIR, ENV_ARGS = "EDGEAMP_SERVE_WORKER", "EDGEAMP_SERVE_DIR", "EDGEAMP_SERVE_ARGS"


@dataclass(frozen=True)
class WorkerInfo:
    """Which worker this process is (1-based ``index`` of ``count``) and the supervisor's folder."""

    index: int
    count: int
    folder: Path

    def socket_path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.sock"

    def others(self) -> list[int]:
        return [k for k in range(1, self.count + 1) if k != self.index]

    def stream_id(self, n: int) -> str:
        return f"w{self.index}-s{n}"

    @staticmethod
    def owner(stream_id: str) -> int | None:
        """The worker a stream id belongs to (``w2-s5``: 2), None for an id of no worker."""
        head, sep, _ = stream_id.partition("-")
        if sep and head[:1] == "w" and head[1:].isdigit():
            return int(head[1:])
        return None

    @classmethod
    def from_env(cls) -> WorkerInfo | None:
        spec = os.environ.get(ENV_WORKER)
        if not spec:
            return None
        index, count = (int(v) for v in spec.split("/"))
        return cls(index, count, Path(os.environ[ENV_DIR]))


def worker_pids(folder: Path) -> dict[int, int]:
    """Live workers' process ids by worker index (from the pid files they write at start)."""
    pids = {}
    for f in folder.glob("worker-*.pid"):
        try:
            index, pid = int(f.stem.split("-")[1]), int(f.read_text())
        except (ValueError, OSError):
            continue
        if Path(f"/proc/{pid}").exists() or _alive(pid):
            pids[index] = pid
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class WorkerProcessCollector:
    """``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds`` and
    ``process_start_time_seconds`` of every live worker, labelled ``worker`` (read from /proc)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096
        try:
            with open("/proc/stat") as f:
                self._boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        except (OSError, StopIteration):
            self._boot = 0.0

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        cpu = CounterMetricFamily("process_cpu_seconds", "User and system CPU time, by worker", labels=["worker"])
        rss = GaugeMetricFamily("process_resident_memory_bytes", "Resident memory, by worker", labels=["worker"])
        fds = GaugeMetricFamily("process_open_fds", "Open file descriptors, by worker", labels=["worker"])
        start = GaugeMetricFamily("process_start_time_seconds", "Start time since the epoch, by worker",
                                  labels=["worker"])
        for index, pid in sorted(worker_pids(self.folder).items()):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                n_fds = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
            label = [str(index)]
            cpu.add_metric(label, (int(fields[11]) + int(fields[12])) / self._tick)
            rss.add_metric(label, int(fields[21]) * self._page)
            fds.add_metric(label, n_fds)
            start.add_metric(label, self._boot + int(fields[19]) / self._tick)
        yield from (cpu, rss, fds, start)


# ---- the supervisor ---------------------------------------------------------------------------
def default_processes(args: argparse.Namespace) -> int:
    """``--processes auto``: one per core for network streams; one with --audio-device (the sound
    card belongs to one process) or --batch (one batch gathers every stream; its lanes use the cores)."""
    if args.audio_device is not None or args.audio_host_api or args.batch:
        return 1
    return usable_cores()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: taskset, a container's cpuset), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _bound_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT: it resolves port 0 to a
    free port the workers then share, and holds it until they listen."""
    from edgeamp.core.errors import ConfigError

    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--processes needs SO_REUSEPORT (Linux, BSD); use --processes 1 here")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        s = socket.socket(family, kind, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    return s


def supervise(args: argparse.Namespace, processes: int, describe) -> int:
    """Run ``processes`` workers of this ``edgeamp serve`` on one port until SIGTERM/SIGINT.
    ``describe(port, ready_text)`` prints the ready line once all listen."""
    from edgeamp.core.errors import ConfigError

    probe = _bound_port(args.host, args.port)
    port = probe.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="edgeamp-serve-"))  # mode 0700: only this user relays
    (folder / "metrics").mkdir()
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    settings.update(port=port, processes=1)
    try:
        settings_json = json.dumps(settings)
    except TypeError as exc:
        raise ConfigError(f"cannot hand these options to worker processes: {exc}") from exc
    env = {**os.environ, ENV_DIR: str(folder), ENV_ARGS: settings_json,
           "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics")}
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    workers: dict[int, subprocess.Popen] = {}

    def start(index: int) -> subprocess.Popen:
        (folder / f"worker-{index}.ready").unlink(missing_ok=True)
        return subprocess.Popen([sys.executable, "-m", "edgeamp.edge_runtime.service.workers"],
                                env={**env, ENV_WORKER: f"{index}/{processes}"}, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)

    try:
        for k in range(1, processes + 1):
            workers[k] = start(k)
        ready_text = _wait_ready(folder, workers, stop)
        if ready_text is None:  # a worker failed to start (it said why on stderr) or we were stopped
            failed = [w.returncode for w in workers.values() if w.poll() is not None and w.returncode]
            _stop_all(workers, args.drain_timeout, folder)
            return 0 if stop["signal"] else (failed[0] if failed and failed[0] > 0 else 2)
        probe.close()
        describe(port, ready_text)
        restarts: list[float] = []
        while stop["signal"] is None:
            time.sleep(0.1)
            for k, w in list(workers.items()):
                if w.poll() is None:
                    continue
                _mark_dead(folder, w.pid)
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60.0] + [now]
                if len(restarts) > MAX_RESTARTS:
                    print(f"edgeamp serve: worker {k} exited ({w.returncode}) and workers restarted "
                          f"{MAX_RESTARTS} times this minute: stopping", file=sys.stderr, flush=True)
                    _stop_all(workers, args.drain_timeout, folder)
                    return 1
                print(f"edgeamp serve: worker {k} (pid {w.pid}) exited ({w.returncode}): starting it again",
                      file=sys.stderr, flush=True)
                workers[k] = start(k)
        return _stop_all(workers, args.drain_timeout, folder)
    finally:
        probe.close()
        for s, handler in old.items():
            signal.signal(s, handler)
        for w in workers.values():
            if w.poll() is None:
                w.kill()
                w.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(folder: Path, workers: dict[int, subprocess.Popen], stop: dict) -> str | None:
    """The first worker's ready text once every worker listens; None if one ended first."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and stop["signal"] is None:
        if any(w.poll() is not None for w in workers.values()):
            return None
        texts = [(folder / f"worker-{k}.ready") for k in sorted(workers)]
        if all(t.exists() for t in texts):
            return texts[0].read_text()
        time.sleep(0.05)
    if stop["signal"] is None:
        print(f"edgeamp serve: workers not ready within {READY_SECONDS:g} s", file=sys.stderr, flush=True)
    return None


def _stop_all(workers: dict[int, subprocess.Popen], drain_seconds: float, folder: Path) -> int:
    """SIGTERM to every worker (each drains), then wait; 0 when every worker exited 0."""
    for w in workers.values():
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + drain_seconds + 10.0
    code = 0
    for w in workers.values():
        try:
            w.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
        _mark_dead(folder, w.pid)
        if w.returncode not in (0, -signal.SIGTERM):
            code = 1
    return code


def _mark_dead(folder: Path, pid: int) -> None:
    """prometheus-client: a dead worker's live gauges (active streams, model info) stop counting."""
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(folder / "metrics"))
    except (ImportError, OSError):
        pass


# ---- a worker -----------------------------------------------------------------------------
def worker_main() -> int:
    """A worker's entry (``python -m edgeamp.edge_runtime.service.workers``, started by
    :func:`supervise`): the service of the supervisor's options, in worker mode."""
    from edgeamp.core.errors import EdgeampError

    from ..cli_serve import serve

    worker = WorkerInfo.from_env()
    if worker is None:
        print("this module is started by `edgeamp serve --processes N`, not by hand", file=sys.stderr)
        return 2
    args = argparse.Namespace(**json.loads(os.environ[ENV_ARGS]))
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format=f"[worker {worker.index}] %(message)s", stream=sys.stderr)
    (worker.folder / f"worker-{worker.index}.pid").write_text(str(os.getpid()))
    try:
        return serve(args, worker=worker)
    except EdgeampError as exc:
        print(f"edgeamp serve (worker {worker.index}): error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        (worker.folder / f"worker-{worker.index}.pid").unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(worker_main())
