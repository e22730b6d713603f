"""``python -m autograder COMMAND ...``: see ``autograder.cli`` (or ``--help``)."""
import sys

from .cli import main

sys.exit(main())
