# Every target builds or refreshes .venv from nothing, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[spark,dev]'
	touch $(STAMP)

venv: $(STAMP)

# The browser tests drive Debian's Chromium (no browser download): installed from Debian packages when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser tests need Chromium at $(CHROMIUM)"; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

demo: $(STAMP)
	$(BIN)/carelake demo

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[spark,dev,bench]"
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/views.py
	$(BIN)/python bench/match.py
	$(BIN)/python bench/deid_notes.py
	$(BIN)/python bench/interop.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/web_load.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info carelake-lake carelake-demo bench/out
