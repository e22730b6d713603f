"""autograder.grading.submission: whatever a student hands in -> the code of each answer cell.

The corpus is built here from the committed releases and solutions: the solved notebook as
JupyterLab saves it, then as Google Colab, VS Code, the classic Notebook and old nbformat
versions save it, with the things students do to notebooks (duplicated, moved, deleted and
edited cells, scratch cells, big GPU outputs), and files that are not notebooks at all.
Fast: no kernel runs, each notebook is read once per session.
"""
from __future__ import annotations

import base64
import copy
import functools
import json
import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPOSITORY, assignments, release_path, source_path
from autograder.grading.submission import (
    MAX_BYTES,
    Answers,
    SubmissionError,
    find_notebook,
    read_answers,
)
from autograder.pipeline import answer_code, solved_release

LESSONS = ["01_quantization", "06_batching", "07_paged_attention", "12_knowledge_check"]
SUBMIT = ("submit the .ipynb file your editor saved (Jupyter: File > Save; Colab: File > "
          "Download > Download .ipynb)")


# ------------------------------------------------------------------------------ the corpus
@functools.cache
def release(lesson: str) -> nbformat.NotebookNode:
    return nbformat.read(release_path(REPOSITORY, lesson), as_version=4)


@functools.cache
def expected(lesson: str) -> dict[str, str]:
    """grade_id -> the solution's answer code, straight from the solutions notebook."""
    solution = nbformat.read(source_path(REPOSITORY, lesson), as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: answer_code(c.source) for c in solution.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


@functools.cache
def stubs(lesson: str) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in release(lesson).cells
            if c.metadata.get("nbgrader", {}).get("solution")}


@functools.cache
def _solved_text(lesson: str) -> str:
    return nbformat.writes(solved_release(lesson, REPOSITORY))


def solved(lesson: str) -> dict:
    """The solved release as JupyterLab 4 saves it (nbformat 4.5, ids, nbgrader metadata)."""
    return json.loads(_solved_text(lesson))


def ids(lesson: str) -> list[str]:
    return list(stubs(lesson))


def at(nb: dict, grade_id: str) -> int:
    """Index of the cell whose nbgrader grade_id is ``grade_id`` (in the unmodified layout)."""
    return next(i for i, c in enumerate(nb["cells"])
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def code_cell(source: str, **metadata) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": metadata, "outputs": [],
            "source": source.splitlines(keepends=True)}


def text(cell: dict) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def read(tmp_path: Path, lesson: str, nb: dict | str | bytes, name: str | None = None) -> Answers:
    path = tmp_path / (name or f"{lesson}.ipynb")
    if isinstance(nb, bytes):
        path.write_bytes(nb)
    else:
        path.write_text(nb if isinstance(nb, str) else json.dumps(nb, indent=1), encoding="utf-8")
    return read_answers(path, release(lesson))


def content_note(lesson: str, grade_ids: list[str] | None = None) -> str:
    grade_ids = ids(lesson) if grade_ids is None else grade_ids
    n = len(grade_ids)
    return (f"{n} answer cell{'' if n == 1 else 's'} ({', '.join(grade_ids)}) "
            f"{'was' if n == 1 else 'were'} found by content: the notebook lost nbgrader's cell "
            "metadata (Colab and some editors drop it)")


# --------------------------------------------------------------------------- the editors
def colab(nb: dict) -> dict:
    """Google Colab: no nbgrader metadata and no cell ids, its own keys, nbformat 4.0."""
    nb = copy.deepcopy(nb)
    nb["nbformat_minor"] = 0
    nb["metadata"] = {"colab": {"provenance": [], "gpuType": "T4", "name": "notebook.ipynb"},
                      "kernelspec": {"name": "python3", "display_name": "Python 3"},
                      "language_info": {"name": "python"}, "accelerator": "GPU"}
    for i, cell in enumerate(nb["cells"]):
        cell.pop("id", None)
        cell["metadata"] = {"id": f"aB3xQ{i:07d}"}
        if cell["cell_type"] == "code":
            cell["metadata"]["colab"] = {"base_uri": "https://localhost:8080/"}
            cell["execution_count"] = i + 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ok\n"],
                                "metadata": {"outputId": f"o{i}"}}]
    return nb


def vscode(nb: dict, drop_nbgrader: tuple[str, ...] = ()) -> dict:
    """VS Code: cell ids dropped, its own keys; the nbgrader metadata of some cells lost."""
    nb = copy.deepcopy(nb)
    nb["nbformat_minor"] = 2
    nb["metadata"]["vscode"] = {"interpreter": {"hash": "3b1f" * 16}}
    for cell in nb["cells"]:
        cell.pop("id", None)
        cell["metadata"]["vscode"] = {"languageId": "python"}
        if cell["metadata"].get("nbgrader", {}).get("grade_id") in drop_nbgrader:
            del cell["metadata"]["nbgrader"]
    return nb


def nbformat44(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        cell.pop("id", None)
    return nb


def jupyterlab4(nb: dict) -> dict:
    """JupyterLab 4: execution timing, tags, collapsed headings, the widgets' state."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb["cells"]):
        cell["metadata"]["tags"] = []
        cell["metadata"]["trusted"] = True
        if cell["cell_type"] == "code":
            cell["execution_count"] = i
            cell["metadata"]["scrolled"] = True
            cell["metadata"]["execution"] = {"iopub.execute_input": "2025-01-02T10:00:00.1Z",
                                             "shell.execute_reply": "2025-01-02T10:00:01.2Z"}
        else:
            cell["metadata"]["jp-MarkdownHeadingCollapsed"] = True
    state = {f"model{i}": {"model_name": "FloatSliderModel", "state": {"value": i * 0.5}}
             for i in range(200)}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": state, "version_major": 2, "version_minor": 0}}
    return nb


def classic(nb: dict) -> dict:
    """The classic Notebook with its usual extensions' metadata."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["metadata"].update(collapsed=False, ExecuteTime={
                "start_time": "2025-01-02T10:00:00.000Z", "end_time": "2025-01-02T10:00:01.000Z"})
    nb["metadata"]["toc"] = {"base_numbering": 1, "nav_menu": {}, "number_sections": True}
    nb["metadata"]["varInspector"] = {"cols": {"lenName": 16}, "window_display": False}
    return nb


def gpu_outputs(nb: dict) -> dict:
    """Every code cell ran on a GPU machine: long logs, big images, an error, attachments."""
    nb = copy.deepcopy(nb)
    png = base64.b64encode(os.urandom(300_000)).decode()
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            cell["attachments"] = {"plot.png": {"image/png": png[:1000]}}
            continue
        cell["execution_count"] = i
        cell["outputs"] = [
            {"output_type": "stream", "name": "stderr",
             "text": [f"step {k}: 31.2 GB on cuda:0\n" for k in range(2000)]},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": png, "text/plain": ["<Figure size 640x480>"]}},
            {"output_type": "error", "ename": "OutOfMemoryError", "evalue": "CUDA out of memory",
             "traceback": ["\x1b[0;31mOutOfMemoryError\x1b[0m"] * 50},
        ]
    return nb


# ------------------------------------------------------------------- release and solution
@pytest.mark.parametrize("lesson", assignments(REPOSITORY))
def test_the_unmodified_release_maps_every_answer_to_its_stub(lesson):
    answers = read_answers(release_path(REPOSITORY, lesson), release(lesson))
    assert answers.sources == stubs(lesson)
    assert answers.notes == []
    assert all(answers.found(g) for g in stubs(lesson))


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_solved_notebook_as_jupyterlab_saves_it(tmp_path, lesson):
    answers = read(tmp_path, lesson, solved(lesson))
    assert answers.sources == expected(lesson)
    assert answers.notes == []
    assert [answers.cells[g] for g in ids(lesson)] == [at(solved(lesson), g) for g in ids(lesson)]


# ------------------------------------------------------------------------------ editors
@pytest.mark.parametrize("lesson", LESSONS)
@pytest.mark.parametrize("editor", [nbformat44, jupyterlab4, classic, vscode, gpu_outputs])
def test_editors_that_keep_nbgrader_metadata(tmp_path, lesson, editor):
    answers = read(tmp_path, lesson, editor(solved(lesson)))
    assert answers.sources == expected(lesson)
    assert answers.notes == []


@pytest.mark.parametrize("lesson", LESSONS)
def test_colab_drops_metadata_and_ids_answers_found_by_content(tmp_path, lesson):
    answers = read(tmp_path, lesson, colab(solved(lesson)))
    assert answers.sources == expected(lesson)
    assert answers.notes == [content_note(lesson)]
    assert all(answers.found(g) for g in ids(lesson))


@pytest.mark.parametrize("lesson", LESSONS)
def test_vscode_lost_the_metadata_of_some_cells(tmp_path, lesson):
    lost = tuple(ids(lesson)[::2])
    answers = read(tmp_path, lesson, vscode(solved(lesson), drop_nbgrader=lost))
    assert answers.sources == expected(lesson)
    assert answers.notes == [content_note(lesson, list(lost))]


@pytest.mark.parametrize("lesson", LESSONS)
def test_nbformat_3_is_converted(tmp_path, lesson):
    old = nbformat.writes(nbformat.convert(nbformat.reads(_solved_text(lesson), as_version=4), 3),
                          version=3)
    assert '"worksheets"' in old
    answers = read(tmp_path, lesson, old)
    assert answers.sources == expected(lesson)
    assert answers.notes == ["the notebook was in the old format nbformat 3; it was converted "
                             "to nbformat 4 to be graded"]


def test_windows_line_endings_and_a_byte_order_mark(tmp_path):
    nb = solved("06_batching")
    for cell in nb["cells"]:
        cell["source"] = text(cell).replace("\n", "\r\n")
    answers = read(tmp_path, "06_batching", b"\xef\xbb\xbf" + json.dumps(nb).encode())
    assert answers.sources == expected("06_batching")
    assert answers.notes == []


# ------------------------------------------------------------------- what students do
@pytest.mark.parametrize("editor", [lambda nb: nb, colab])
@pytest.mark.parametrize("last_is_right", [True, False])
def test_a_duplicated_answer_cell_the_last_copy_counts(tmp_path, editor, last_is_right):
    lesson, gid = "01_quantization", "zeropoint"
    nb = solved(lesson)
    i = at(nb, gid)
    wrong = copy.deepcopy(nb["cells"][i])  # copy and paste keeps nbgrader's metadata
    wrong.pop("id")
    wrong["source"] = text(wrong).replace("qmax = 2 ** bits - 1", "qmax = 2 ** bits")
    assert text(wrong) != expected(lesson)[gid]
    nb["cells"][i:i] = [wrong]               # right above the original
    if not last_is_right:
        nb["cells"][i], nb["cells"][i + 1] = nb["cells"][i + 1], nb["cells"][i]
    answers = read(tmp_path, lesson, editor(nb))
    want = dict(expected(lesson), **({} if last_is_right else {gid: text(wrong)}))
    assert answers.sources == want
    assert answers.cells[gid] == i + 1
    duplicate = (f"answer 'zeropoint' appears 2 times (cells {i + 1}, {i + 2}): the last one, "
                 f"cell {i + 2}, is graded, as running the notebook from top to bottom would "
                 "leave it")
    assert answers.notes == ([content_note(lesson), duplicate] if editor is colab
                             else [duplicate])


@pytest.mark.parametrize("lesson", ["01_quantization", "07_paged_attention",
                                    "12_knowledge_check"])
def test_moved_answer_cells_are_identified_by_their_signature(tmp_path, lesson):
    nb = colab(solved(lesson))
    answer_cells = [nb["cells"][at(solved(lesson), g)] for g in ids(lesson)]
    others = [c for c in nb["cells"] if not any(c is a for a in answer_cells)]
    nb["cells"] = others[:2] + answer_cells[::-1] + others[2:]   # all at the top, reversed
    answers = read(tmp_path, lesson, nb)
    assert answers.sources == expected(lesson)
    assert [answers.cells[g] for g in ids(lesson)] == list(range(len(ids(lesson)) + 1, 1, -1))
    assert answers.notes == [content_note(lesson)]


def test_a_renamed_answer_in_colab_is_found_by_its_position(tmp_path):
    nb = colab(solved("12_knowledge_check"))
    i = at(solved("12_knowledge_check"), "answer_q3")
    nb["cells"][i]["source"] = 'answr_q3 = "A"\n'          # a typo: it defines no answer_q3
    answers = read(tmp_path, "12_knowledge_check", nb)
    assert answers.sources == dict(expected("12_knowledge_check"), answer_q3='answr_q3 = "A"\n')
    assert answers.found("answer_q3") and answers.cells["answer_q3"] == i
    others = [g for g in ids("12_knowledge_check") if g != "answer_q3"]
    assert answers.notes == [
        content_note("12_knowledge_check", others),
        f"answer 'answer_q3' was found by its position: cell {i + 1} ('answr_q3 = \"A\"'), where "
        "the answer cell stood; it does not define answer_q3"]


def test_a_half_written_answer_that_does_not_parse_is_found_by_content(tmp_path):
    nb = colab(solved("06_batching"))
    i = at(solved("06_batching"), "schedule_step")
    broken = "def schedule_step(sched):\n    running = [s for s in sched.running\n"
    nb["cells"][i]["source"] = broken
    answers = read(tmp_path, "06_batching", nb)
    assert answers.sources == {"schedule_step": broken}
    assert answers.notes == [content_note("06_batching")]


@pytest.mark.parametrize("editor", [lambda nb: nb, colab])
def test_a_deleted_answer_cell_is_graded_as_unanswered(tmp_path, editor):
    lesson = "07_paged_attention"
    nb = solved(lesson)
    del nb["cells"][at(nb, "paged_attention")]
    answers = read(tmp_path, lesson, editor(nb))
    assert answers.sources == dict(expected(lesson), paged_attention=stubs(lesson)[
        "paged_attention"])
    assert not answers.found("paged_attention") and answers.found("block_manager")
    missing = "answer 'paged_attention' was not found in the notebook: graded as unanswered"
    assert answers.notes == ([content_note(lesson, ["block_manager"]), missing]
                             if editor is colab else [missing])


def test_metadata_that_lies_loses_to_content(tmp_path):
    """The two answers pasted into each other's cells (metadata kept): content decides."""
    lesson = "07_paged_attention"
    nb = solved(lesson)
    a, b = at(nb, "block_manager"), at(nb, "paged_attention")
    nb["cells"][a]["source"], nb["cells"][b]["source"] = (nb["cells"][b]["source"],
                                                          nb["cells"][a]["source"])
    answers = read(tmp_path, lesson, nb)
    assert answers.sources == expected(lesson)
    assert answers.cells == {"block_manager": b, "paged_attention": a}
    assert answers.notes == [
        f"cell {a + 1} ('def paged_attention(q, k_cache, v_cac...') is marked as answer "
        "'block_manager' but holds the code of answer 'paged_attention': graded as "
        "'paged_attention'",
        f"cell {b + 1} ('from collections import deque') is marked as answer 'paged_attention' "
        "but holds the code of answer 'block_manager': graded as 'block_manager'"]


def test_an_answer_cell_turned_into_markdown_is_graded_as_code(tmp_path):
    nb = solved("06_batching")
    cell = nb["cells"][at(nb, "schedule_step")]
    cell["cell_type"] = "markdown"
    del cell["outputs"], cell["execution_count"]
    answers = read(tmp_path, "06_batching", nb)
    assert answers.sources == expected("06_batching")
    assert answers.notes == ["answer 'schedule_step' is in a markdown cell: it is graded as code"]


@pytest.mark.parametrize("editor", [lambda nb: nb, colab])
def test_a_deleted_test_cell_is_still_graded(tmp_path, editor):
    nb = solved("06_batching")
    del nb["cells"][at(nb, "test_schedule_step")]
    answers = read(tmp_path, "06_batching", editor(nb))
    assert answers.sources == expected("06_batching")
    deleted = "test cell 'test_schedule_step' was deleted: it is still graded"
    assert answers.notes == ([content_note("06_batching"), deleted] if editor is colab
                             else [deleted])


@pytest.mark.parametrize("editor", [lambda nb: nb, colab])
def test_a_changed_test_cell_is_ignored(tmp_path, editor):
    lesson = "12_knowledge_check"
    nb = solved(lesson)
    i = at(nb, "check_q2")
    nb["cells"][i]["source"] = text(nb["cells"][i]).replace("raise", "print") + "\n_ok = True"
    answers = read(tmp_path, lesson, editor(nb))
    assert answers.sources == expected(lesson)
    changed = (f"test cell 'check_q2' was changed (cell {i + 1} ('# Question 2: your answer must "
               "be one...')): your version is ignored, grading runs the original")
    assert answers.notes == ([content_note(lesson), changed] if editor is colab else [changed])


def test_a_duplicated_test_cell_is_ignored(tmp_path):
    nb = solved("07_paged_attention")
    i = at(nb, "test_block_manager")
    nb["cells"].append(copy.deepcopy(nb["cells"][i]))
    answers = read(tmp_path, "07_paged_attention", nb)
    assert answers.sources == expected("07_paged_attention")
    assert answers.notes == ["test cell 'test_block_manager' appears 2 times: the copies are "
                             "ignored (grading runs its own tests)"]


def test_a_moved_test_cell_is_no_news(tmp_path):
    nb = solved("12_knowledge_check")
    nb["cells"].append(nb["cells"].pop(at(nb, "check_q1")))
    answers = read(tmp_path, "12_knowledge_check", nb)
    assert answers.sources == expected("12_knowledge_check")
    assert answers.notes == []


@pytest.mark.parametrize("editor", [lambda nb: nb, colab])
def test_scratch_cells_the_student_added_are_not_run(tmp_path, editor):
    lesson = "07_paged_attention"
    nb = solved(lesson)
    i = at(nb, "paged_attention")
    scratch = [code_cell("def helper(x):\n    return x * 2\n"),
               code_cell("paged_attention = torch.compile(paged_attention)"),  # no new answer
               code_cell(""), code_cell("   \n"),                               # empty: no news
               {"cell_type": "markdown", "metadata": {}, "source": "my notes"},
               code_cell("%timeit paged_attention(q, k, v, table, 9)\n!nvidia-smi")]
    nb["cells"][i + 1:i + 1] = scratch
    answers = read(tmp_path, lesson, editor(nb))
    assert answers.sources == expected(lesson)
    added = (f"3 code cells you added (cell {i + 2} ('def helper(x):'), cell {i + 3} "
             f"('paged_attention = torch.compile(paged...'), cell {i + 7} ('%timeit "
             "paged_attention(q, k, v, tabl...')) are not run in grading: put what an answer "
             "needs (helpers, imports) inside its answer cell")
    assert answers.notes == ([content_note(lesson), added] if editor is colab else [added])


def test_a_later_redefinition_of_the_answer_is_the_one_graded(tmp_path):
    """As the kernel would leave it: a later ``def`` of the answer's function replaces it."""
    nb = solved("06_batching")
    later = "def schedule_step(sched):\n    return my_policy(sched)\n"
    nb["cells"].append(code_cell(later))
    answers = read(tmp_path, "06_batching", nb)
    i = at(nb, "schedule_step")
    n = len(nb["cells"])
    assert answers.sources == {"schedule_step": later}
    assert answers.notes == [f"answer 'schedule_step' appears 2 times (cells {i + 1}, {n}): the "
                             f"last one, cell {n}, is graded, as running the notebook from top "
                             "to bottom would leave it"]


def test_an_emptied_pasted_copy_does_not_replace_the_answer(tmp_path):
    """JupyterLab copies nbgrader's metadata with a pasted cell; emptied, it defines nothing."""
    nb = solved("06_batching")
    i = at(nb, "schedule_step")
    pasted = copy.deepcopy(nb["cells"][i])
    pasted.pop("id")
    pasted["source"] = "# scratch\n"
    nb["cells"].insert(i + 1, pasted)
    answers = read(tmp_path, "06_batching", nb)
    assert answers.sources == expected("06_batching")
    assert answers.cells["schedule_step"] == i
    assert answers.notes == [f"answer 'schedule_step' appears 2 times (cells {i + 1}, {i + 2}): "
                             f"the last one that defines schedule_step, cell {i + 1}, is graded, "
                             "as running the notebook from top to bottom would leave it"]


def test_an_edited_lesson_cell_is_reported(tmp_path):
    nb = solved("06_batching")
    i = next(i for i, c in enumerate(nb["cells"]) if "n_tokens = pick(32, 8)" in text(c))
    cell = nb["cells"][i]
    assert text(cell).startswith("batch_sizes = pick(")
    cell["source"] = text(cell).replace("pick(32, 8)", "pick(4, 2)")
    answers = read(tmp_path, "06_batching", nb)
    assert answers.sources == expected("06_batching")
    assert answers.notes == [f"you changed 1 lesson cell (cell {i + 1} ('batch_sizes = pick([1, "
                             "4, 16, 64], [1...')): grading runs the lesson's own version"]


def test_everything_at_once_in_colab(tmp_path):
    """Colab, a GPU run, a scratch cell, a duplicate, a deleted test: each reported once."""
    lesson = "01_quantization"
    nb = solved(lesson)
    del nb["cells"][at(nb, "test_nf4")]
    i = at(nb, "pack")
    nb["cells"][i + 1:i + 1] = [code_cell("print(pack_int4(torch.arange(4)))"),
                                copy.deepcopy(nb["cells"][i])]
    answers = read(tmp_path, lesson, gpu_outputs(colab(nb)))
    assert answers.sources == expected(lesson)
    assert answers.notes == [
        content_note(lesson),
        f"answer 'pack' appears 2 times (cells {i + 1}, {i + 3}): the last one, cell {i + 3}, is "
        "graded, as running the notebook from top to bottom would leave it",
        "test cell 'test_nf4' was deleted: it is still graded",
        f"1 code cell you added (cell {i + 2} ('print(pack_int4(torch.arange(4)))')) is not run "
        "in grading: put what an answer needs (helpers, imports) inside its answer cell"]


# --------------------------------------------------------------------- files that are not
def error_of(tmp_path: Path, content: bytes | str, name: str = "07_paged_attention.ipynb") -> str:
    with pytest.raises(SubmissionError) as caught:
        read(tmp_path, "07_paged_attention", content, name)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_empty_files(tmp_path):
    want = ("07_paged_attention.ipynb is empty: the notebook was not saved before it was "
            f"submitted; {SUBMIT}")
    assert error_of(tmp_path, b"") == want
    assert error_of(tmp_path, "  \n\n") == want


def test_files_that_are_not_json(tmp_path):
    assert error_of(tmp_path, "import torch\nprint(1)\n") == (
        f"07_paged_attention.ipynb is plain text (a script?), not a notebook: {SUBMIT}")
    assert error_of(tmp_path, '{"cells": [], nbformat: 4}') == (
        "07_paged_attention.ipynb is not valid JSON (line 1, column 15: Expecting property name "
        f"enclosed in double quotes), so not a notebook (was it edited as text?): {SUBMIT}")
    assert error_of(tmp_path, "<!DOCTYPE html><html><body>notebook</body></html>") == (
        f"07_paged_attention.ipynb is a web page (HTML), not a notebook: {SUBMIT}")
    conflict = _solved_text("07_paged_attention").replace(
        '"cells": [', '"cells": [\n<<<<<<< HEAD\n=======\n>>>>>>> theirs\n', 1)
    assert error_of(tmp_path, conflict) == (
        "07_paged_attention.ipynb holds unresolved merge-conflict markers (<<<<<<<): resolve the "
        f"conflict or take one version; {SUBMIT}")


def test_a_truncated_notebook(tmp_path):
    whole = _solved_text("07_paged_attention")
    assert error_of(tmp_path, whole[:len(whole) // 2]) == (
        "07_paged_attention.ipynb is cut short (its text stops in the middle): it was not "
        f"completely saved or uploaded; {SUBMIT}")


def test_json_that_is_not_a_notebook(tmp_path):
    assert error_of(tmp_path, json.dumps([{"cell_type": "code"}])) == (
        f"07_paged_attention.ipynb is JSON but not a notebook (it holds a list): {SUBMIT}")
    assert error_of(tmp_path, json.dumps({"name": "x"})) == (
        "07_paged_attention.ipynb is JSON but not a notebook (it holds an object without "
        f"cells): {SUBMIT}")
    assert error_of(tmp_path, "42") == (
        f"07_paged_attention.ipynb is JSON but not a notebook (it holds a single value): {SUBMIT}")
    assert error_of(tmp_path, json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                          "nbformat_minor": 5})) == (
        f"07_paged_attention.ipynb is a notebook with no cells: {SUBMIT}")
    assert error_of(tmp_path, json.dumps(dict(solved("07_paged_attention"), nbformat=5))) == (
        "07_paged_attention.ipynb has an unknown notebook format version (5): save it with "
        "Jupyter (nbformat 4) and submit again")


def test_binary_files(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    assert error_of(tmp_path, png) == (
        f"07_paged_attention.ipynb is a PNG image, not a notebook: {SUBMIT}")
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("07_paged_attention.ipynb", _solved_text("07_paged_attention"))
    assert error_of(tmp_path, archive.read_bytes()) == (
        f"07_paged_attention.ipynb is a zip archive, not a notebook: {SUBMIT}")
    junk = bytes(range(256)) * 8
    assert error_of(tmp_path, junk) == (
        f"07_paged_attention.ipynb holds binary data, not a notebook: {SUBMIT}")


def test_a_file_too_large(tmp_path):
    path = tmp_path / "07_paged_attention.ipynb"
    with path.open("wb") as sparse:             # no disk space used, the size is what counts
        sparse.truncate(60 * 2**20)
    assert path.stat().st_size > MAX_BYTES
    with pytest.raises(SubmissionError) as caught:
        read_answers(path, release("07_paged_attention"))
    assert str(caught.value) == (
        "07_paged_attention.ipynb is 60.0 MB, over the 50 MB limit: clear all outputs (Edit > "
        "Clear Outputs of All Cells), save and submit again")


# ------------------------------------------------------------------------------ the file
def folder_with(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "submitted" / "alice" / "03_pruning"
    for k, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (1_700_000_000 + k, 1_700_000_000 + k))   # later names are newer
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("names, graded, notes", [
    (["03_pruning.ipynb", "Copy of 03_pruning.ipynb"], "03_pruning.ipynb", []),
    (["Copy of 03_pruning.ipynb"], "Copy of 03_pruning.ipynb",
     ["graded 'Copy of 03_pruning.ipynb': the notebook should be named 03_pruning.ipynb"]),
    (["03_pruning-checkpoint.ipynb", "03_pruning (1).ipynb", "._03_pruning.ipynb"],
     "03_pruning (1).ipynb",
     ["graded '03_pruning (1).ipynb': the notebook should be named 03_pruning.ipynb"]),
    (["Untitled.ipynb", "Copy of 03_pruning.ipynb"], "Copy of 03_pruning.ipynb",
     ["graded 'Copy of 03_pruning.ipynb': the notebook should be named 03_pruning.ipynb"]),
    (["Untitled.ipynb", "notes.txt"], "Untitled.ipynb",
     ["graded 'Untitled.ipynb': the notebook should be named 03_pruning.ipynb"]),
    (["03_Pruning (1).ipynb", "Copy of 03_pruning.ipynb"], "Copy of 03_pruning.ipynb",
     ["graded 'Copy of 03_pruning.ipynb': the notebook should be named 03_pruning.ipynb (the "
      "most recently modified; not graded: '03_Pruning (1).ipynb')"]),
    (["03_pruning/03_pruning.ipynb"], "03_pruning/03_pruning.ipynb",
     ["graded '03_pruning/03_pruning.ipynb': the notebook should be named 03_pruning.ipynb"]),
    ([".ipynb_checkpoints/03_pruning-checkpoint.ipynb"],
     ".ipynb_checkpoints/03_pruning-checkpoint.ipynb",
     ["graded '.ipynb_checkpoints/03_pruning-checkpoint.ipynb', an automatic checkpoint copy, "
      "since no other notebook was submitted: submit 03_pruning.ipynb itself"]),
])
def test_find_notebook(tmp_path, names, graded, notes):
    folder = folder_with(tmp_path, *names)
    assert find_notebook(folder, "03_pruning") == (folder / graded, notes)


@pytest.mark.parametrize("names, message", [
    (["Untitled.ipynb", "scratch.ipynb"],
     "2 notebooks were submitted for 03_pruning and none is named like it ('Untitled.ipynb', "
     "'scratch.ipynb'): submit only 03_pruning.ipynb"),
    (["03_pruning.py", "03_pruning.html"],
     "no notebook (.ipynb) was submitted for 03_pruning (found: '03_pruning.html', "
     "'03_pruning.py'): submit the notebook itself, 03_pruning.ipynb"),
    ([], "no notebook (.ipynb) was submitted for 03_pruning (the folder is empty): submit the "
         "notebook itself, 03_pruning.ipynb"),
])
def test_find_notebook_refuses(tmp_path, names, message):
    folder = folder_with(tmp_path, *names)
    with pytest.raises(SubmissionError) as caught:
        find_notebook(folder, "03_pruning")
    assert str(caught.value) == message


def test_find_notebook_without_a_folder(tmp_path):
    with pytest.raises(SubmissionError) as caught:
        find_notebook(tmp_path / "nobody" / "03_pruning", "03_pruning")
    assert str(caught.value) == (f"nothing was submitted for 03_pruning: there is no folder "
                                 f"{tmp_path / 'nobody' / '03_pruning'}")


def test_a_renamed_colab_download_end_to_end(tmp_path):
    folder = tmp_path / "submitted" / "bob" / "12_knowledge_check"
    folder.mkdir(parents=True)
    (folder / "Copy of 12_knowledge_check.ipynb").write_text(
        json.dumps(colab(solved("12_knowledge_check"))))
    path, notes = find_notebook(folder, "12_knowledge_check")
    answers = read_answers(path, release("12_knowledge_check"))
    assert answers.sources == expected("12_knowledge_check")
    assert notes + answers.notes == [
        "graded 'Copy of 12_knowledge_check.ipynb': the notebook should be named "
        "12_knowledge_check.ipynb", content_note("12_knowledge_check")]


# ------------------------------------------------------------- a release unlike the course's
def synthetic_release() -> nbformat.NotebookNode:
    """Two answers with the same signature, one without any, a markdown answer."""
    v4 = nbformat.v4

    def answer(grade_id, source, kind=v4.new_code_cell):
        return kind(source, metadata={"nbgrader": {"grade_id": grade_id, "solution": True,
                                                   "grade": False, "locked": False}})

    def test(grade_id, source):
        return v4.new_code_cell(source, metadata={"nbgrader": {
            "grade_id": grade_id, "solution": False, "grade": True, "locked": True, "points": 1}})

    stub = "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    return v4.new_notebook(cells=[
        v4.new_markdown_cell("# Part 1"), answer("f_first", stub), test("t1", "assert f(1) == 1"),
        v4.new_markdown_cell("# Part 2"), answer("f_again", stub), test("t2", "assert f(1) == 2"),
        v4.new_markdown_cell("# Part 3"),
        answer("free", "# YOUR CODE HERE\nraise NotImplementedError()"),
        test("t3", "assert y == 3"),
        answer("essay", "YOUR ANSWER HERE", kind=v4.new_markdown_cell),
        v4.new_markdown_cell("# The end")])


def student(release_nb, sources: dict[str, str], keep_metadata: bool) -> dict:
    nb = json.loads(nbformat.writes(release_nb))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in sources:
            cell["source"] = sources[grade_id]
        if not keep_metadata:
            cell["metadata"] = {}
    return nb


@pytest.mark.parametrize("keep_metadata", [True, False])
def test_a_release_with_look_alike_and_nameless_stubs(tmp_path, keep_metadata):
    release_nb = synthetic_release()
    sources = {"f_first": "def f(x):\n    return 1", "f_again": "def f(x):\n    return 2",
               "free": "y = 3", "essay": "Because memory bandwidth."}
    path = tmp_path / "synthetic.ipynb"
    path.write_text(json.dumps(student(release_nb, sources, keep_metadata)))
    answers = read_answers(path, release_nb)
    assert answers.sources == sources
    assert answers.cells == {"f_first": 1, "f_again": 4, "free": 7, "essay": 9}
    assert answers.notes == ([] if keep_metadata else [
        "2 answer cells (f_first, f_again) were found by content: the notebook lost nbgrader's "
        "cell metadata (Colab and some editors drop it)",
        "answer 'free' was found by its position: cell 8 ('y = 3'), where the answer cell stood",
        "answer 'essay' was found by its position: cell 10 ('Because memory bandwidth.'), where "
        "the answer cell stood"])


def test_look_alike_stubs_keep_their_order_without_the_anchors_between_them(tmp_path):
    """Test t1 and the heading of part 2 deleted: only the order tells the two answers apart."""
    release_nb = synthetic_release()
    sources = {"f_first": "def f(x):\n    return 1", "f_again": "def f(x):\n    return 2"}
    nb = student(release_nb, sources, keep_metadata=False)
    del nb["cells"][2:4]
    path = tmp_path / "synthetic.ipynb"
    path.write_text(json.dumps(nb))
    answers = read_answers(path, release_nb)
    assert answers.sources == dict(sources, free=release_nb.cells[7].source,
                                   essay="YOUR ANSWER HERE")
    assert answers.cells == {"f_first": 1, "f_again": 2, "free": 5, "essay": 7}
    assert answers.notes == [
        "2 answer cells (f_first, f_again) were found by content: the notebook lost nbgrader's "
        "cell metadata (Colab and some editors drop it)",
        "answer 'free' was found by its position: cell 6 ('# YOUR CODE HERE'), where the answer "
        "cell stood",
        "answer 'essay' was found by its position: cell 8 ('YOUR ANSWER HERE'), where the answer "
        "cell stood",
        "test cell 't1' was deleted: it is still graded"]


def test_links_are_not_followed(tmp_path):
    folder = folder_with(tmp_path, "Copy of 03_pruning.ipynb")
    (folder / "03_pruning.ipynb").symlink_to(REPOSITORY / "README.md")
    assert find_notebook(folder, "03_pruning") == (folder / "Copy of 03_pruning.ipynb", [
        "graded 'Copy of 03_pruning.ipynb': the notebook should be named 03_pruning.ipynb"])
    with pytest.raises(SubmissionError) as caught:
        read_answers(folder / "03_pruning.ipynb", release("07_paged_attention"))
    assert str(caught.value) == ("03_pruning.ipynb is not a plain file (a link or a folder?): "
                                 f"{SUBMIT}")
