"""benchmarks/lesson_times.py: runs lessons as a student does and records what a reader needs."""
import json

import nbformat
import pytest

from benchmarks import lesson_times


def test_progress_bars_are_recognised():
    bar = nbformat.v4.new_output("stream", name="stderr", text="teacher writes:  37%|###   | 6/16")
    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "HBox()"})
    plain = nbformat.v4.new_output("stream", name="stdout", text="trained 100 steps in 37 s")
    assert lesson_times.showed_progress({"outputs": [bar]})
    assert lesson_times.showed_progress({"outputs": [widget]})
    assert not lesson_times.showed_progress({"outputs": [plain]})


def test_a_lesson_with_an_error_and_a_slow_cell_is_recorded(tmp_path, monkeypatch):
    """Errors do not stop the run; the slowest cell, the error and the totals are written."""
    folder = tmp_path / "solutions" / "98_sample"
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# sample"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(0.3)"),
        nbformat.v4.new_code_cell("# comment first\nraise ValueError('broken on purpose')"),
        nbformat.v4.new_code_cell("print('still runs')"),
        nbformat.v4.new_code_cell("from inferlab.lab import recap\n"
                                  "recap.note('decode', 12.0, 'tok/s', 'CPU Y')\nrecap.show()"),
        nbformat.v4.new_code_cell("recap.note('decode', 34.5, 'tok/s', 'GPU X')\n"
                                  "recap.note('speed-up', 2.25, 'x', 'GPU X')\nrecap.show()"),
    ])
    nbformat.write(nb, folder / "98_sample.ipynb")
    monkeypatch.setattr(lesson_times, "ROOT", tmp_path)
    out = tmp_path / "results"
    assert lesson_times.main(["98", "--device", "cpu", "--out", str(out), "--tag", "t",
                              "--keep", str(tmp_path / "kept")]) == 0
    result = json.loads((out / "lesson_times_t.json").read_text())
    lesson = result["lessons"]["98_sample"]
    assert lesson["cells"] == 5 and lesson["cells_run"] == 5 and lesson["failure"] is None
    assert lesson["errors"] == [{"cell": 2, "error": "ValueError", "message": "broken on purpose"}]
    assert lesson["slowest"]["cell"] == 1 and lesson["slowest"]["seconds"] >= 0.3
    assert lesson["slowest"]["code"] == "import time"
    kept = nbformat.read(tmp_path / "kept" / "98_sample.ipynb", as_version=4)
    assert kept.cells[3].outputs[0]["text"] == "still runs\n"
    table = (out / "lesson_times_t.md").read_text()
    assert "| 98_sample |" in table and "2: ValueError" in table
    # the headline figures are the last recap's: a figure noted again replaces the first reading
    assert lesson["measured"] == [{"what": "decode", "value": 34.5, "unit": "tok/s",
                                   "device": "GPU X"},
                                  {"what": "speed-up", "value": 2.25, "unit": "x",
                                   "device": "GPU X"}]
    assert "| 98_sample | decode | 34.5 tok/s | GPU X |" in table
    assert "| 98_sample | speed-up | 2.25 x | GPU X |" in table


def test_runs_made_side_by_side_merge_into_one_table(tmp_path):
    facts = {"device": "GPU X", "torch": "2", "transformers": "5", "triton": "3",
             "bitsandbytes": None, "cpus": 16}
    def run(name, seconds):
        lesson = {"seconds": seconds, "cells": 1, "cells_run": 1, "errors": [], "failure": None,
                  "slowest": None, "long_cells": [], "cell_seconds": {}}
        return {"date": "2026-12-02", "device_kind": "cuda", "facts": facts, "threads": 4,
                "fast": False, "lessons": {name: lesson}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(run("01_x", 700.0)))
    b.write_text(json.dumps(run("00_y", 12.0)))
    assert lesson_times.main(["--merge", str(a), str(b), "--tag", "m", "--out", str(tmp_path),
                              "--note", "two at a time"]) == 0
    merged = json.loads((tmp_path / "lesson_times_m.json").read_text())
    assert list(merged["lessons"]) == ["00_y", "01_x"] and merged["note"] == "two at a time"
    table = (tmp_path / "lesson_times_m.md").read_text()
    assert "two at a time" in table and "| 01_x | 700 s (over) |" in table
    other = json.loads(b.read_text())
    other["facts"] = {**facts, "device": "GPU Y"}
    b.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different machines"):
        lesson_times.main(["--merge", str(a), str(b), "--tag", "m", "--out", str(tmp_path)])


def test_gpu_busy_seconds_come_from_nvidia_smi_samples(tmp_path, monkeypatch):
    """The sampler reads nvidia-smi's utilization lines (a stand-in script here: 50 %, then a
    line without a reading) and integrates them over a time window."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nwhile true; do echo 50; echo '[N/A]'; sleep 0.02; done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{lesson_times.os.environ['PATH']}")
    busy = lesson_times.start_gpu_busy()
    t0 = lesson_times.time.perf_counter()
    lesson_times.time.sleep(0.5)
    t1 = lesson_times.time.perf_counter()
    busy.stop()
    readings = [b for t, b in busy.samples if t0 < t <= t1]
    assert readings and set(readings) == {0.5}
    assert busy.seconds(t0, t1) == pytest.approx(len(readings) * 0.5 * busy.period)
    assert busy.seconds(t1, t1 + 10) <= 0.5 * busy.period    # nothing after the window


def test_a_slower_card_estimate_scales_only_the_gpu_work(tmp_path, monkeypatch):
    assert lesson_times.slower_card_estimate(100.0, 0.0) == 100.0        # nothing on the GPU
    assert lesson_times.slower_card_estimate(100.0, 10.0, factor=15) == 240.0
    facts = {"device": "GPU X", "torch": "2", "transformers": "5", "triton": "3",
             "bitsandbytes": None, "cpus": 16}
    lesson = {"seconds": 100.0, "cells": 1, "cells_run": 1, "errors": [], "failure": None,
              "slowest": None, "long_cells": [], "cell_seconds": {}, "gpu_busy_seconds": 10.0}
    results = {"date": "2026-12-03", "device_kind": "cuda", "facts": facts, "threads": 4,
               "fast": False, "lessons": {"01_x": lesson}}
    lesson_times.write_markdown(results, tmp_path / "t.md")
    table = (tmp_path / "t.md").read_text()
    assert "estimate on a T4" in table
    assert f"| 01_x | 100 s | 10 s | {(100 + 10 * 14) / 60:.1f} min |" in table
    # a lesson that sizes its GPU work to the card gets no estimate: a slower card runs less
    monkeypatch.setattr(lesson_times, "ROOT", tmp_path)
    source = tmp_path / "lessons" / "04_y" / "04_y.py"
    source.parent.mkdir(parents=True)
    source.write_text("steps = round(1000 * gpu_workload_scale(device))\n")
    results["lessons"]["04_y"] = dict(lesson, seconds=300.0)
    lesson_times.write_markdown(results, tmp_path / "t.md")
    table = (tmp_path / "t.md").read_text()
    assert "| 04_y | 300 s | 10 s | scales its work to the card |" in table
    assert f"| 01_x | 100 s | 10 s | {(100 + 10 * 14) / 60:.1f} min |" in table
