"""The course service under a burst: about 100 submissions fired at once by 50 students through
the notebook API (``benchmarks/service_load.py`` with smaller numbers; its 300-submission run is
in ``benchmarks/results/service_load.md``). Every one must be accepted (202) and graded with full
marks, none lost or duplicated. No timing is asserted: the figures are the benchmark's business.
"""
from __future__ import annotations

import pytest

from benchmarks.service_load import run_load

pytestmark = pytest.mark.slow

SUBMISSIONS, STUDENTS, KNOWLEDGE_CHECKS = 100, 50, 20


def test_a_burst_of_submissions_is_accepted_and_graded_with_none_lost(tmp_path):
    figures = run_load(SUBMISSIONS, STUDENTS, KNOWLEDGE_CHECKS, workers=2, data_dir=tmp_path,
                       grading_timeout=1200, report=lambda line: None)
    log = figures.get("service_log_tail", "")
    assert figures["answers"] == {"202": SUBMISSIONS}, (figures["not_accepted"], log)
    assert not figures["timed_out"], log
    assert figures["unique_ids"] == SUBMISSIONS
    assert figures["in_database"] == figures["graded"] == SUBMISSIONS, (figures["by_status"], log)
    assert figures["full_marks"] == SUBMISSIONS and figures["lost"] == 0
