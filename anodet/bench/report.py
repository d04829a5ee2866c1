"""bench.md / bench.json / bench.png and the machine description. Torch-free."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from anodet import __version__


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(float(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def gpus() -> list[str]:
    """nvidia-smi's "name, memory, driver" line per NVIDIA GPU; empty without one."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            check=False, capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - a broken install is the same as none here
        return None
    return getattr(mod, "__version__", "unknown")


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, GPUs, library versions, load and date: what makes numbers comparable."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    providers = None
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": _mem_total_gb(),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "onnxruntime_providers": providers,
        "tensorrt": _version("tensorrt"),
        "anodet": __version__,
        "load_average_1_5_15": load,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _f(value: Any, fmt: str = ".1f", na: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return na
    return format(value, fmt)


def _status(row: dict[str, Any]) -> str:
    return row["status"] if not row.get("reason") else f"{row['status']} ({row['reason']})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _parity(row: dict[str, Any]) -> str:
    """max |difference| of map or score from onnx-cpu, and the verdict at the row's bound."""
    par = row.get("parity")
    if not par:
        return "n/a"
    worst = max(par["max_abs_map"], par["max_abs_score"])
    if par["ok"] is None:
        return f"{worst:.1e} (not gated)"
    return f"{'ok' if par['ok'] else 'FAIL'} {worst:.1e} (bound {par['tolerance']:g})"


def _busy_limit(result: dict[str, Any]) -> float:
    m = result["machine"]
    cores = m.get("usable_cores") or m.get("logical_cores") or 1
    return 1.5 * cores  # the measured process itself accounts for up to ``cores``


def busy_rows(result: dict[str, Any]) -> list[str]:
    """Rows measured while the 1-minute load average exceeded 1.5 x the usable cores."""
    limit = _busy_limit(result)
    out = []
    for row in result["rows"]:
        loads = [x for x in (row.get("load_before"), row.get("load_after")) if x is not None]
        if loads and max(loads) > limit:
            out.append(row["name"])
    return out


def format_table(result: dict[str, Any]) -> str:
    """The main markdown table: one line per row and batch size, settings above it."""
    s = result["settings"]
    ref = f"{s['reference']} at batch {s['reference_batch']}"
    par = result.get("parity_reference") or {}
    lines = [
        (f"Latency percentiles over {s['runs']} timed runs after {s['warmup']} warm-up runs per batch size "
         f"(threads: {s['threads'] or 'library default'}), host numpy in and out; speed-up = p50 per frame of "
         f"{ref} / this row's. Parity: max |map or score difference| from onnx-cpu on "
         + (f"the first {par['frames']} test frames." if "frames" in par else f"nothing ({par.get('error')}).")),
        "",
        ("| backend | runs on | precision | status | batch | p50 ms | p95 ms | p99 ms | p50 ms/frame | frames/s "
         "| speed-up | parity vs onnx-cpu | peak RSS MB | size MB | image AUROC | AU-PRO |"),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lats = row.get("latency") or [{}]
        for i, lat in enumerate(lats):
            first = i == 0
            speed = row.get("speedup_vs_reference") if lat.get("batch") == s["reference_batch"] else None
            if row["name"] == s["reference"] and lat.get("batch") == s["reference_batch"]:
                speed_txt = "1.00x (ref)"
            else:
                speed_txt = _f(speed, ".2f") + "x" if speed is not None else ""
            head = [row["name"], _cell(row.get("runs_on", "")), row.get("precision", ""), _cell(_status(row))]
            tail = [_parity(row) if row["status"] != "skipped" else "", _f(row.get("peak_rss_mb"), ".0f", ""),
                    _f(row.get("size_mb"), ".1f", ""), _f(row.get("image_auroc"), ".3f", ""),
                    _f(row.get("au_pro"), ".3f", "")]
            timing = [str(lat.get("batch", "")), *(_f(lat.get(k), ".1f", "") for k in (
                "p50_ms", "p95_ms", "p99_ms", "p50_ms_per_frame")), _f(lat.get("throughput_fps"), ".2f", ""),
                speed_txt]
            cells = (head if first else ["", "", "", ""]) + timing + (tail if first else [""] * 5)
            lines.append("| " + " | ".join(cells) + " |")
    notes = []
    busy = busy_rows(result)
    if busy:
        notes.append(f"the machine was busy while measuring {', '.join(busy)} (1-min load average above "
                     f"{_busy_limit(result):.1f}): other jobs share these cores, so those timings are noisy; "
                     "rerun on an idle machine or compare p50s only.")
    if not any(r["name"] == s["reference"] and r["status"] == "ok" for r in result["rows"]):
        notes.append(f"speed-ups need the {s['reference']} row (add it to the backends).")
    if any(r["name"] == "torch-seed" for r in result["rows"]):
        notes.append("torch-seed is the seed-faithful latency reference (upsample then reduce, DFR widths on "
                     "half the channels, random aligner/autoencoder weights): accuracy and parity n/a by design.")
    notes.append("peak RSS = VmHWM of the row's own process after the timed runs (model, runtime, test "
                 "frames; evaluation excluded).")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def format_stages(stages: dict[str, Any] | None) -> str:
    if not stages:
        return "_no stage breakdown (needs a checkpoint and PyTorch)_"
    if "error" in stages:
        return f"_stage breakdown failed: {stages['error']}_"
    lines = [
        (f"{stages['model']}; {stages['engine']}; p50/p95 over {stages['runs']} runs after {stages['warmup']} "
        "warm-up runs. MACs: every conv2d (modules and functional), out elements x in/groups x kh x kw; "
        "interpolation and pooling not counted."),
        "",
        "| stage | p50 ms | p95 ms | share | GMAC |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in stages["stages"]:
        lines.append(f"| {r['name']} | {_f(r['p50_ms'], '.2f')} | {_f(r['p95_ms'], '.2f')} | "
                     f"{_f(100 * r['share'], '.1f')}% | {_f(r['gmac'], '.3f') if r['gmac'] else '-'} |")
    full = stages["full_model"]
    lines.append(f"| sum of stages | {_f(stages['stage_sum_p50_ms'], '.2f')} | | 100% | |")
    lines.append(f"| full model forward (graph part) | {_f(full['p50_ms'], '.2f')} | {_f(full['p95_ms'], '.2f')} | "
                 f"| {_f(full['gmac'], '.3f')} |")
    ratio = stages["ratio_full_to_backbone"]
    lines += ["", (f"Full model / backbone alone: {_f(ratio['time'], '.2f')}x the time, "
                  f"{_f(ratio['macs'], '.2f')}x the MACs.")]
    seed = stages.get("seed")
    if seed:
        parts = ", ".join(f"{k} {_f(v, '.2f')}" for k, v in seed["gmac"].items())
        lines.append(f"Seed-faithful reference, {seed['model']}: {_f(seed['total_gmac'], '.2f')} GMAC ({parts}) "
                     f"vs {_f(full['gmac'], '.2f')} GMAC for this model ({_f(seed['total_gmac'] / full['gmac'], '.1f')}x).")
    return "\n".join(lines)


def format_machine(m: dict[str, Any]) -> str:
    gpus = "; ".join(m.get("gpus") or []) or "none found (nvidia-smi)"
    return "\n".join([
        (f"- CPU: {m['cpu']} ({m['usable_cores']} usable of {m['logical_cores']} logical cores), "
        f"{_f(m.get('memory_gb'))} GB RAM"),
        f"- GPU: {gpus}",
        f"- load average at start (1/5/15 min): {m.get('load_average_1_5_15')}",
        (f"- {m['os']}; Python {m['python']}, numpy {m['numpy']}, torch {m['torch'] or '-'}, onnxruntime "
        f"{m['onnxruntime'] or '-'} ({', '.join(m.get('onnxruntime_providers') or [])}), tensorrt "
        f"{m['tensorrt'] or '-'}, anodet {m['anodet']}"),
        f"- date: {m['date']}",
    ])


def format_report(result: dict[str, Any]) -> str:
    """The whole bench.md."""
    return "\n".join([
        "# anodet-bench",
        "",
        ", ".join([f"checkpoint `{result['checkpoint']}`"] * bool(result["checkpoint"])
                  + [f"{kind} file `{path}`" for kind, path in result["models"].items()])
        + f" on the test split of `{result['data']}`; total {result['seconds']:.0f} s.",
        "",
        "## Backends",
        "",
        format_table(result),
        "",
        "## Where the time goes (one frame)",
        "",
        format_stages(result.get("stages")),
        "",
        "## Machine",
        "",
        format_machine(result["machine"]),
        "",
    ])


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency (p50 ms per frame at the reference batch, log x) vs image AUROC per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = result["settings"]["reference_batch"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotted = 0
    for row in result["rows"]:
        lat = next((x for x in row.get("latency") or [] if x["batch"] == b), None)
        if row["status"] != "ok" or lat is None:
            continue
        ms = lat["p50_ms_per_frame"]
        if row.get("image_auroc") is None:
            ax.axvline(ms, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"{row['name']} (no accuracy)", (ms, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=8, color="grey", ha="right", va="bottom")
        else:
            ax.scatter([ms], [row["image_auroc"]], s=40)
            ax.annotate(row["name"], (ms, row["image_auroc"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        plotted += 1
    if plotted:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no backend could be measured", transform=ax.transAxes, ha="center")
    ax.set_xlabel(f"p50 latency per frame at batch {b}, ms (log scale)")
    ax.set_ylabel("image AUROC (test split)")
    ax.set_title("anodet-bench: latency vs accuracy")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "bench.md").write_text(format_report(result))
    plot(result, out_dir / "bench.png")
