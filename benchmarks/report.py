"""Turn pytest-benchmark JSON into the README's performance table (and a PNG of per-hop latency).

usage:
  .venv/bin/python benchmarks/report.py benchmarks/results/latest.json            # print the table
  .venv/bin/python benchmarks/report.py benchmarks/results/latest.json --readme README.md --png docs/latency.png

With --readme, the table replaces the text between the markers
<!-- bench:start --> and <!-- bench:end --> in that file. Several JSON files (runs on the same
machine, e.g. `make bench` and a later run of one suite) are merged; a benchmark in a later file
replaces the same benchmark in an earlier one. The CPU engines table (benchmarks/test_cpu_peers.py) goes
between <!-- cpu-peers:start --> and <!-- cpu-peers:end -->; a JSON of that suite alone updates only it:
  .venv/bin/python benchmarks/report.py benchmarks/results/cpu_peers.json --readme README.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
CPU_START, CPU_END = "<!-- cpu-peers:start -->", "<!-- cpu-peers:end -->"


def rows(doc: dict) -> list[dict]:
    out = []
    for b in doc["benchmarks"]:
        s, info = b["stats"], b.get("extra_info", {})
        out.append({
            "group": b.get("group") or "",
            "name": b["name"].removeprefix("test_"),
            "mean_ms": 1000 * s["mean"],
            "median_ms": 1000 * s["median"],
            "max_ms": 1000 * s["max"],
            "rounds": s["rounds"],
            "rtf": info.get("real_time_factor"),
            "p99": info.get("hop_ms_p99"),
            "misses": info.get("deadline_misses"),
            "compile": info.get("compile_seconds"),
            "memory": info.get("memory_mib"),
            "esr": info.get("esr_vs_reference"),
            "peak": info.get("fraction_of_peak"),
            "gflops": info.get("model_gflops_per_audio_second"),
            "info": info,
        })
    return out


def table(doc: dict) -> str:
    m = doc.get("machine_info", {})
    cpu = m.get("cpu", {}).get("brand_raw", "?")
    lines = [
        f"Measured on {cpu}, {m.get('cpu', {}).get('count', '?')} cores, Python {m.get('python_version', '?')}, "
        f"{doc.get('datetime', '')[:10]} (`make bench`, then `make report`). Hops of noise through a fresh "
        "processor; ESR against the float64 numpy reference on the same input; % of peak: model FLOPs per "
        "second reached, against an OpenVINO f32 MatMul on the same threads; memory: resident memory the "
        "compiled model and its buffers added.",
        "",
        "| benchmark | median ms | p99 ms | max ms | real-time factor | deadline misses | compile s | memory MiB "
        "| ESR vs ref | % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    service, engines = [], []
    for r in sorted(rows(doc), key=lambda r: (r["group"], r["name"])):
        if "max_streams_held" in r["info"]:
            service.append(r)
            continue
        if "columns" in r["info"]:
            engines.append(r)
            continue
        lines.append(f"| {r['group']}: {r['name']} | {r['median_ms']:.3f} | {fmt(r['p99'], '.3f')} "
                     f"| {r['max_ms']:.3f} | {fmt(r['rtf'], '.2f')} | {fmt(r['misses'], 'd')} "
                     f"| {fmt(r['compile'], '.2f')} | {fmt(r['memory'], '.1f')} | {fmt(r['esr'], '.1e')} "
                     f"| {fmt(None if r['peak'] is None else 100 * r['peak'], '.1f')} |")
    if engines:
        lines += ["", *cpu_engines_table(engines)]
    if service:
        lines += ["", "Streaming service on loopback (10 ms float32 frames paced in real time; the client runs on the "
                  "same cores; held = round-trip p99 <= 20 ms and at most 0.1 % late hops, strictly = no late hop):",
                  "", "| model | service | streams held | held strictly | first level not held "
                  "| round trip p99 ms there |",
                  "|---|---|---|---|---|---|"]
        for r in service:
            info = r["info"]
            best = [lv for lv in info["levels"] if lv["held"]]
            strict = [lv["streams"] for lv in info["levels"] if lv.get("held_strict", lv["held"])]
            lines.append(f"| {info.get('preset', 'seed')} | {info.get('mode', 'unbatched')} "
                         f"| **{info['max_streams_held']}** | {max(strict) if strict else 0} "
                         f"| {fmt(info.get('first_not_held'), 'd')} "
                         f"| {fmt(best[-1]['rtt_ms_p99'] if best else None, '.2f')} |")
    for r in service:
        info = r["info"]
        lines += ["", f"{info.get('preset', 'seed')}, {info.get('mode', 'unbatched')}:", "",
                  "| concurrent streams | round trip p50 ms | p99 ms | max ms | late hops | held | server CPU, cores |",
                  "|---|---|---|---|---|---|---|"]
        for lv in info["levels"]:
            if "error" in lv:  # connections refused or answers missing: past capacity
                lines.append(f"| {lv['streams']} | – | – | – | – | no ({lv['error'][:60]}) | – |")
                continue
            lines.append(f"| {lv['streams']} | {lv['rtt_ms_p50']:.2f} | {lv['rtt_ms_p99']:.2f} "
                         f"| {lv['rtt_ms_max']:.2f} | {lv['late_hops']} | {'yes' if lv['held'] else 'no'} "
                         f"| {fmt(lv.get('server_cpu_cores'), '.2f')} |")
        lines.append(f"\nMost concurrent real-time streams held: **{info['max_streams_held']}**.")
    return "\n".join(lines) + "\n"


ENGINE_COLUMNS = ("edgeamp native", "edgeamp native bf16", "edgeamp OpenVINO f32", "edgeamp OpenVINO bf16",
                  "RTNeural", "NAM Core", "NAM Core fast tanh")


def cpu_engines_table(engines: list[dict]) -> list[str]:
    """benchmarks/test_cpu_peers.py's rows: per-hop p50 of each engine, the best peer, native against it."""
    first = engines[0]["info"]
    lines = [f"CPU engines side by side (`benchmarks/test_cpu_peers.py`): one run, pinned to CPU {first.get('cpu')}, "
             "one thread, 10 ms hops (480 samples at 48 kHz), p50 of 1000 hops of noise, each engine's best of "
             f"{first.get('rounds', 1)} rounds (the engines take turns round by round); edgeamp "
             f"{first.get('edgeamp_commit', '?')}, RTNeural {first.get('rtneural_commit', '?')}, NeuralAmpModelerCore "
             f"{first.get('nam_core_commit', '?')} (peers built with -O3 -march=native); in brackets, ESR against the "
             "float64 reference (edgeamp) or max abs difference from it (peers, same noise):", "",
             "| model | " + " | ".join(ENGINE_COLUMNS) + " | native vs best peer |",
             "|---|" + "---|" * (len(ENGINE_COLUMNS) + 1)]
    order = {name: i for i, name in enumerate(first.get("rows", []))}
    for r in sorted(engines, key=lambda r: order.get(r["info"]["row"], 99)):
        info, cells = r["info"], []
        for name in ENGINE_COLUMNS:
            c = info["columns"].get(name)
            if not c or "p50_ms" not in c:
                cells.append("–")
                continue
            extra = c.get("esr", c.get("max_abs_vs_reference"))
            cells.append(f"{c['p50_ms']:.3f} ms" + ("" if extra is None else f" ({extra:.0e})"))
        ratio = info.get("native_vs_best_peer")
        lines.append(f"| {info['row']} | " + " | ".join(cells) + f" | {'–' if ratio is None else f'{ratio:.2f}x'} |")
    return lines


def update_readme(path: Path, text: str, start: str = START, end: str = END) -> None:
    content = path.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{path}: markers {start} ... {end} not found")
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{text}{end}", content, flags=re.S)
    path.write_text(new)


def plot(doc: dict, path: Path) -> None:
    """Real-time factor per configuration (log scale), with real time and the 15x goal marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = sorted((r for r in rows(doc) if r["rtf"]), key=lambda r: r["rtf"])
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rs) + 1.5))
    colors = ["#3b7dd8" if r["rtf"] >= 1 else "#d8553b" for r in rs]
    ax.barh([f"{r['group']}: {r['name']}" for r in rs], [r["rtf"] for r in rs], color=colors)
    ax.axvline(1.0, color="k", ls=":", label="real time")
    ax.axvline(15.0, color="g", ls="--", label="goal: 15x (seed topology, stateful)")
    ax.set_xscale("log")
    ax.set_xlabel("real-time factor (higher is better)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def merge(docs: list[dict]) -> dict:
    """One pytest-benchmark document from several: later runs replace a benchmark of the same name."""
    by_name: dict[str, dict] = {}
    for doc in docs:
        for b in doc["benchmarks"]:
            by_name[b.get("fullname") or b["name"]] = b
    return {**docs[0], "benchmarks": list(by_name.values())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", type=Path, nargs="+")
    p.add_argument("--readme", type=Path)
    p.add_argument("--png", type=Path)
    args = p.parse_args(argv)
    doc = merge([json.loads(path.read_text()) for path in args.json])
    text = table(doc)
    engines = [r for r in rows(doc) if "columns" in r["info"]]
    if args.readme and engines and CPU_START in args.readme.read_text():  # benchmarks/test_cpu_peers.py's table
        update_readme(args.readme, "\n".join(cpu_engines_table(engines)) + "\n", CPU_START, CPU_END)
    if args.readme and not [r for r in rows(doc) if "columns" not in r["info"]]:
        return 0  # a run of the peer benchmark alone: the main table stays as it is
    if args.readme:
        update_readme(args.readme, text)
    else:
        print(text)
    if args.png:
        plot(doc, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
