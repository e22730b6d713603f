"""The course's grading side: nbgrader configuration, release/grade pipeline, authoring checks,
completion and certificates. Run ``python -m autograder --help``."""
