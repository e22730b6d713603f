"""Plausible wrong answers for the knowledge check: every other letter of each question.

They are well-formed (so the visible format checks pass) and wrong (so the hidden tests fail);
lower case and stray spaces are accepted as answers, so some mutants use them.
"""

_CORRECT = {"answer_q1": "B", "answer_q2": "D", "answer_q3": "A", "answer_q4": "C",
            "answer_q5": "B"}


def _wrong(grade_id: str) -> list[str]:
    letters = [x for x in "ABCD" if x != _CORRECT[grade_id]]
    return [f"{grade_id} = {letters[0]!r}",
            f"{grade_id} = {letters[1].lower()!r}",
            f"{grade_id} = {(' ' + letters[2] + ' ')!r}"]


MUTANTS = {grade_id: _wrong(grade_id) for grade_id in _CORRECT}
