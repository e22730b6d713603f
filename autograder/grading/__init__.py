"""Grading a certificate can rest on: student code in a sandbox, tests outside it.

    submission.py  any editor's notebook -> the student's code for each answer cell
    plan.py        what grading runs: answer cells (with the lesson lines they use), then tests
    redact.py      the course package without the exercises' reference implementations
    sandbox.py     bubblewrap namespaces and limits around the student's process (worker.py)
    wire.py        what crosses the boundary: plain data, never a student object
    checker.py     the trusted side: runs the tests against proxies, one verdict per test cell
    grader.py      students and classes (local processes or Ray); the one gradebook writer

The threat model and what an instructor must provide are in docs/grading.md.
"""
