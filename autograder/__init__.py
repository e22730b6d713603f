"""The course's grading side: nbgrader configuration, the release (lesson scripts -> notebooks),
grading, completion and certificates. Instructor tooling used from the repository - it is not
part of the ``inferlab`` package students install. Run ``python -m autograder --help``."""
