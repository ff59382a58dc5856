# Every target installs what it needs on first use: a virtual environment in .venv with the
# reference (aoi-kit) and the conformance suite (aoi-conformance), both editable, and the
# test tools; for test and bench, Debian's redis-server; for certify, Allure's report generator in
# .tools/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUITE := packaging/aoi-conformance
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(SUITE)/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test certify dist lint types bench clean

$(STAMP): pyproject.toml $(SUITE)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" \
	    $(PY) -m pip install --quiet -e $(SUITE) -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(VENV)/.bench-installed: $(STAMP)
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

# The store's tests run a private redis-server: Debian's, installed here when it is missing.
test: $(STAMP)
	scripts/redis install
	$(VENV)/bin/pytest

certify: $(STAMP)
	scripts/certify

# The two wheels: aoi-kit (the reference) and aoi-conformance (the suite, on its own).
dist: $(STAMP)
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist . $(SUITE)

lint: $(STAMP)
	$(VENV)/bin/ruff check reference conformance schemas tests bench
	$(VENV)/bin/ruff format --check reference conformance schemas tests bench

types: $(STAMP)
	$(VENV)/bin/mypy

bench: $(VENV)/.bench-installed
	scripts/redis install
	$(PY) -m bench

clean:
	rm -rf $(VENV) reports .tools dist
