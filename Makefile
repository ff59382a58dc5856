# Every target installs what it needs on first use: a virtual environment in .venv with the
# project and its test tools, (for test) Debian's redis-server, and (for certify) Allure's
# report generator in .tools/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test certify lint types bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

# The store's tests run a private redis-server: Debian's, installed here when it is missing.
test: $(STAMP)
	scripts/redis install
	$(VENV)/bin/pytest

certify: $(STAMP)
	scripts/certify

lint: $(STAMP)
	$(VENV)/bin/ruff check reference conformance schemas tests bench
	$(VENV)/bin/ruff format --check reference conformance schemas tests bench

types: $(STAMP)
	$(VENV)/bin/mypy

bench: $(VENV)/.bench-installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) reports .tools
