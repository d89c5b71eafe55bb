# The README's two commands: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

.PHONY: install demo test test-fast lint bench browser
install: $(STAMP)

# Separate the official example song with the official 2stems model into ./output/
demo: $(STAMP)
	$(BIN)/stemsep separate -p spleeter:2stems -o output --overwrite "$$($(BIN)/stemsep example)"

# Lint, then the whole suite (slow parity tests build the reference spleeter 2.4.2 venv once, ~3 min).
test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

# Debian's chromium and chromium-driver for the page's browser test (apt, once; sudo when not root).
browser:
	sh scripts/install-chromium.sh

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_separate.py
