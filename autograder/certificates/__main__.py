"""``python -m autograder.certificates COMMAND ...``: the same as ``python -m autograder COMMAND``.
"""
import sys

from ..cli import main

sys.exit(main(sys.argv[1:]))
