# Every target sets up what it needs: a virtualenv in .venv with the project and its test extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT   ?= 8765
DEMO   := $(VENV)/demo
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
NO_ENDPOINT := env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u AZURE_OPENAI_ENDPOINT -u AZURE_OPENAI_API_KEY

.PHONY: demo mock test lint bench notebooks clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

## demo: set up, then open the quick start in JupyterLab, on the bundled mock server
## (on a fresh copy of the notebooks in .venv/demo, so that the tracked ones stay as they are)
demo: $(STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO) && cp notebooks/*.ipynb $(DEMO)/
	@echo "Opening the quick start, a copy in $(DEMO) (edits there do not touch notebooks/). The URL to open is the"
	@echo "one below that ends in /lab/tree/01_quickstart.ipynb?token=...; Ctrl-C stops JupyterLab."
	$(NO_ENDPOINT) $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=$(DEMO) \
	  --LabApp.default_url=/lab/tree/01_quickstart.ipynb $(ROOT_FLAG)

## mock: set up, then start the bundled mock Responses server alone on http://127.0.0.1:$(PORT)/v1
mock: $(STAMP)
	$(BIN)/python -m mock_server --port $(PORT)

## test: set up, then lint, type-check and run the whole test suite
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy

## notebooks: run the notebooks top to bottom and save their outputs, as the test run executes them
notebooks: $(STAMP)
	$(BIN)/python tests/notebooks/regenerate.py

## bench: run the benchmarks (figures are printed as ratios against a peer measured in the same run)
bench: $(STAMP)
	$(BIN)/python bench/bench_server.py
	$(BIN)/python bench/bench_client.py
	$(BIN)/python bench/bench_notebook.py
	$(BIN)/python bench/bench_batch.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Debian packages the tests use: redis-server (the Redis run store is tested against a real server) and chromium
# (the JupyterLab test drives Debian's browser with Playwright; no browser download).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing with apt-get:$$missing (the tests need them)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
