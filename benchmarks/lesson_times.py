"""How long each lesson takes to run, cell by cell, as a student runs it (full mode by default).

    python benchmarks/lesson_times.py                       # every lesson, this machine's device
    python benchmarks/lesson_times.py 04 05 --threads 2     # two lessons, PyTorch on 2 CPU threads
    python benchmarks/lesson_times.py --device cpu          # the CPU path even where a GPU is
    python benchmarks/lesson_times.py --keep /tmp/executed  # also keep the executed notebooks
    python benchmarks/lesson_times.py --merge a.json b.json --tag nvidia-h200 --note "..."

Each lesson's solution notebook (``solutions/NN_name/NN_name.ipynb``) is executed top to bottom in
a fresh kernel, in its own folder, with the settings a student has: not fast mode, not grading
(``INFERLAB_FAST`` and ``NBGRADER_EXECUTION`` are removed from the kernel's environment).
An error in a cell is recorded and the lesson goes on, as it would for a student; a cell still
running after ``--cell-timeout`` seconds is interrupted and recorded as such.

Recorded per lesson: the wall time (kernel start included), every cell's time, the slowest cell,
the error cells (exception and first line of its message), and the cells that ran longer than
three minutes with whether they showed a progress bar while they ran, and the headline figures
the lesson measured (its recap, ``inferlab.lab.recap``, read from the executed notebook). The
results file
``benchmarks/results/lesson_times_<tag>.json`` (tag: ``--tag``, else ``cpu-<threads>t`` or the
GPU's name) is written after every lesson, so a run cut short still leaves what it measured, and
``lesson_times_<tag>.md`` is written from it. ``--merge`` joins the results files of runs made
side by side (several lessons at a time on one machine) into one, with ``--note`` saying how.

On a GPU each cell's **GPU-busy seconds** are recorded too: ``nvidia-smi`` samples the share of
time a kernel was running, ten times a second (``GpuBusy``). That splits a lesson's time into work
the GPU did and everything else (Python, the CPU, waiting), and gives an estimate for a slower
card: a T4 reads memory 15x slower than an H200 (320 against 4800 GB/s) and computes fp16 15x
slower (65 against 989 TFLOPS), so ``estimate = time + busy x (15 - 1)`` (``slower_card_estimate``)
- an upper bound when several lessons share the GPU, since each then counts the others' kernels.
A lesson that sizes its GPU work to the card (``gpu_workload_scale``) gets no estimate: a slower
card runs less of its work.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LONG_CELL_S = 180.0          # a cell longer than this must show a progress bar
LESSON_TARGETS_S = {"gpu": 600.0, "cpu": 1200.0}   # full mode: 10 min on a GPU, 20 on 2 cores
PROGRESS = re.compile(r"\d+%\|")   # tqdm's text bar "37%|###..."


class GpuBusy:
    """Samples the GPU's utilization (the share of the last sample period in which a kernel ran)
    with ``nvidia-smi`` ten times a second, in a background thread; ``seconds(t0, t1)`` is the
    GPU-busy time between two ``time.perf_counter()`` readings."""

    def __init__(self, gpu: int = 0, period_ms: int = 100):
        self.samples: list[tuple[float, float]] = []      # (perf_counter, busy fraction)
        self.period = period_ms / 1000
        self.process = subprocess.Popen(
            ["nvidia-smi", f"--id={gpu}", "--query-gpu=utilization.gpu",
             "--format=csv,noheader,nounits", f"-lms={period_ms}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.samples.append((time.perf_counter(), float(line.strip()) / 100))
            except ValueError:      # "[N/A]" and the like: no reading for this period
                continue

    def seconds(self, t0: float, t1: float) -> float:
        return sum(busy for t, busy in self.samples if t0 < t <= t1) * self.period

    def stop(self) -> None:
        self.process.terminate()


def start_gpu_busy() -> GpuBusy | None:
    """A ``GpuBusy`` sampler, or None where ``nvidia-smi`` is missing."""
    try:
        return GpuBusy()
    except OSError:
        return None


SLOWER_CARD = ("T4", 15.0)     # H200 / T4: 4800 / 320 GB/s, 989 / 65 fp16 TFLOPS


def slower_card_estimate(seconds: float, busy: float, factor: float = SLOWER_CARD[1]) -> float:
    """A lesson's time on a card ``factor`` times slower: its GPU work slows down by the
    factor, the rest (Python, CPU, waiting) stays as measured."""
    return seconds + busy * (factor - 1)


def scales_to_card(name: str) -> bool:
    """Whether lesson ``name`` sizes its GPU work to the card (``gpu_workload_scale``): a slower
    card then runs less of it, and the slower-card estimate, which assumes the same work, does
    not apply."""
    source = ROOT / "lessons" / name / f"{name}.py"
    return source.is_file() and "gpu_workload_scale(" in source.read_text()


def lessons(selected: list[str]) -> list[Path]:
    """Solution notebooks of the lessons whose number or name starts with one of ``selected``."""
    found = sorted((ROOT / "solutions").glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb"))
    if selected:
        found = [p for p in found if any(p.stem.startswith(s) for s in selected)]
        if not found:
            raise SystemExit(f"no lesson matches {selected}; lessons are in {ROOT / 'solutions'}")
    return found


def device_facts(device: str) -> dict:
    import torch
    facts = {"torch": torch.__version__, "python": platform.python_version(),
             "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0))}
    for name in ("transformers", "triton", "bitsandbytes"):
        try:
            facts[name] = __import__(name).__version__
        except Exception:  # not installed, or broken: the lessons say so themselves
            facts[name] = None
    if device == "cuda":
        facts["device"] = torch.cuda.get_device_name(0)
        facts["cuda"] = torch.version.cuda
    else:
        from inferlab.lab.bench import device_name
        facts["device"] = device_name("cpu")
    return facts


def showed_progress(cell) -> bool:
    """True when the cell's outputs include a progress bar (a widget, or tqdm's text bar)."""
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            return True
        text = out.get("text", "") or data.get("text/plain", "")
        if PROGRESS.search(text if isinstance(text, str) else "".join(text)):
            return True
    return False


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:80]
    return source.strip()[:80]


def run_lesson(path: Path, env: dict, cell_timeout: int, keep: Path | None, log,
               busy: GpuBusy | None = None) -> dict:
    """Execute one notebook; return its timings (never raises for errors in its cells), and with
    ``busy`` each cell's GPU-busy seconds."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    from inferlab.lab.recap import shown_in

    nb = nbformat.read(path, as_version=4)
    starts: dict[int, float] = {}
    seconds: dict[int, float] = {}
    gpu_seconds: dict[int, float] = {}

    def on_start(cell, cell_index, **_):
        starts[cell_index] = time.perf_counter()

    def on_done(cell, cell_index, **_):
        now = time.perf_counter()
        seconds[cell_index] = now - starts.get(cell_index, now)
        if busy is not None:
            gpu_seconds[cell_index] = busy.seconds(starts.get(cell_index, now), now)
        if seconds[cell_index] > 5:
            log(f"   cell {cell_index:>2} {seconds[cell_index]:7.1f} s  {first_line(cell.source)}")

    km = KernelManager(kernel_name="python3")
    client = NotebookClient(
        nb, km=km, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
        interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=on_start, on_cell_executed=on_done)
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    t0 = time.perf_counter()
    failure = None
    try:
        client.execute()
    except Exception as error:  # a kernel that died: record it, go on with the next lesson
        failure = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
    finally:
        wall = time.perf_counter() - t0
        os.environ.clear()
        os.environ.update(old)
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / path.name)

    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    errors = []
    for i, cell in code:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                message = (out.get("evalue") or "").strip().splitlines()
                errors.append({"cell": i, "error": out.get("ename"),
                               "message": (message[0] if message else "")[:200]})
    times = {i: round(seconds[i], 2) for i, _ in code if i in seconds}
    gpu_times = {i: round(gpu_seconds[i], 2) for i in times if i in gpu_seconds}
    slowest = max(times, key=times.get) if times else None
    long_cells = [{"cell": i, "seconds": times[i], "progress_bar": showed_progress(nb.cells[i]),
                   "code": first_line(nb.cells[i].source)}
                  for i in times if times[i] > LONG_CELL_S]
    return {
        "seconds": round(wall, 1), "cells": len(code), "cells_run": len(times),
        "errors": errors, "failure": failure,
        "slowest": None if slowest is None else {
            "cell": slowest, "seconds": times[slowest],
            "code": first_line(nb.cells[slowest].source)},
        "long_cells": long_cells, "cell_seconds": times, "measured": shown_in(nb),
        **({"gpu_busy_seconds": round(sum(gpu_times.values()), 1),
            "cell_gpu_busy_seconds": gpu_times} if busy is not None else {}),
    }


def write_markdown(results: dict, path: Path) -> None:
    kind = "gpu" if results["device_kind"] == "cuda" else "cpu"
    target = LESSON_TARGETS_S[kind]
    facts = results["facts"]
    lines = [
        f"# Lesson times: {facts['device']}",
        "",
        f"{results['date']}; {'fast' if results['fast'] else 'full'} mode; torch {facts['torch']}, "
        f"transformers {facts['transformers']}, triton {facts['triton']}, bitsandbytes "
        f"{facts['bitsandbytes']}; {facts['cpus']} CPUs"
        + (f", PyTorch on {results['threads']} threads" if results.get("threads") else "")
        + f". Written by `benchmarks/lesson_times.py`; target per lesson {target / 60:.0f} min.",
        "",
        *([results["note"], ""] if results.get("note") else []),
    ]
    with_busy = any("gpu_busy_seconds" in r for r in results["lessons"].values())
    card, factor = SLOWER_CARD
    if with_busy:
        lines += [f"| lesson | time | GPU busy | estimate on a {card} (time + busy x "
                  f"{factor - 1:.0f}) | slowest cell | error cells | cells > 3 min "
                  "(progress bar?) |", "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    else:
        lines += ["| lesson | time | slowest cell | error cells | cells > 3 min (progress bar?) |",
                  "| --- | ---: | --- | --- | --- |"]
    total = 0.0
    for name, r in results["lessons"].items():
        total += r["seconds"]
        slow = r["slowest"]
        slow_txt = f"{slow['seconds']:.0f} s: `{slow['code'][:50]}`" if slow else "-"
        errs = ", ".join(f"{e['cell']}: {e['error']}" for e in r["errors"]) or "none"
        if r.get("failure"):
            errs += f" (stopped: {r['failure']})"
        longs = ", ".join(
            f"{c['cell']} ({c['seconds']:.0f} s, {'yes' if c['progress_bar'] else 'NO'})"
            for c in r["long_cells"]) or "none"
        flag = "" if r["seconds"] <= target else " (over)"
        busy_txt = ""
        if with_busy:
            busy = r.get("gpu_busy_seconds")
            if busy is None:
                busy_txt = "- | - | "
            else:
                estimate = ("scales its work to the card" if scales_to_card(name)
                            else f"{slower_card_estimate(r['seconds'], busy) / 60:.1f} min")
                busy_txt = f"{busy:.0f} s | {estimate} | "
        lines.append(f"| {name} | {r['seconds']:.0f} s{flag} | {busy_txt}{slow_txt} | {errs} "
                     f"| {longs} |")
    lines += ["", f"Total: {total / 60:.1f} min for {len(results['lessons'])} lessons.", ""]
    lines += measured_section(results)
    path.write_text("\n".join(lines))


def measured_section(results: dict) -> list[str]:
    """Markdown lines: each lesson's headline figures, as its recap showed them."""
    from inferlab.lab.recap import format_value

    rows = [f"| {name} | {f['what']} | {format_value(f['value'])} {f['unit']} | {f['device']} |"
            for name, r in results["lessons"].items() for f in r.get("measured", [])]
    if not rows:
        return []
    return ["## What each lesson measured", "",
            "Each lesson's recap (its last measured section), as the executed notebook showed it.",
            "", "| lesson | figure | value | measured on |", "| --- | --- | ---: | --- |",
            *rows, ""]


def merge(paths: list[Path], out: Path, tag: str, note: str | None) -> dict:
    """One results file from several made on the same machine (same device, date and versions)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    first = runs[0]
    for run in runs[1:]:
        if run["facts"] != first["facts"] or run["fast"] != first["fast"]:
            raise SystemExit(f"cannot merge runs of different machines or modes: {paths}")
    lessons_ = {name: r for run in runs for name, r in run["lessons"].items()}
    merged = {**first, "lessons": dict(sorted(lessons_.items())), "note": note,
              "threads": first["threads"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lesson_times_{tag}.json").write_text(json.dumps(merged, indent=1) + "\n")
    write_markdown(merged, out / f"lesson_times_{tag}.md")
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="INFERLAB_DEVICE for the lessons (default: the GPU when present)")
    parser.add_argument("--threads", type=int, help="INFERLAB_THREADS for the lessons")
    parser.add_argument("--fast", action="store_true", help="fast mode (the tests' setting)")
    parser.add_argument("--cell-timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--tag", help="results file name part (default: from the device)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--keep", type=Path, help="folder to keep the executed notebooks in")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="join these results files (needs --tag) instead of running lessons")
    parser.add_argument("--note", help="a line saying how the run was made (with --merge)")
    args = parser.parse_args(argv)
    if args.merge:
        if not args.tag:
            raise SystemExit("--merge needs --tag (the name of the joined results file)")
        merge(args.merge, args.out, args.tag, args.note)
        return 0

    sys.path.insert(0, str(ROOT))
    import torch
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no GPU here")
    facts = device_facts(device)
    env = {k: v for k, v in os.environ.items() if k not in ("INFERLAB_FAST", "NBGRADER_EXECUTION")}
    env["INFERLAB_DEVICE"] = device
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.threads:
        env["INFERLAB_THREADS"] = str(args.threads)
    if args.fast:
        env["INFERLAB_FAST"] = "1"
    tag = args.tag or (re.sub(r"[^A-Za-z0-9]+", "-", facts["device"]).strip("-").lower()
                       if device == "cuda" else f"cpu-{args.threads or 'all'}t")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"lesson_times_{tag}.json", args.out / f"lesson_times_{tag}.md"
    results = {"date": datetime.date.today().isoformat(), "device_kind": device, "facts": facts,
               "threads": args.threads, "fast": args.fast, "lessons": {}}

    def log(message: str) -> None:
        print(message, flush=True)

    log(f"{facts['device']}: {len(lessons(args.lessons))} lessons -> {json_path}")
    busy = start_gpu_busy() if device == "cuda" else None
    for path in lessons(args.lessons):
        log(f"== {path.stem}")
        result = run_lesson(path, env, args.cell_timeout, args.keep, log, busy)
        results["lessons"][path.stem] = result
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        write_markdown(results, md_path)
        errs = f", {len(result['errors'])} error cell(s)" if result["errors"] else ""
        log(f"   {path.stem}: {result['seconds']:.0f} s{errs}"
            + (f"; stopped: {result['failure']}" if result["failure"] else ""))
    if busy is not None:
        busy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
