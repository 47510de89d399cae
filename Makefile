# `make demo` and `make test` set up .venv (created once, reinstalled when pyproject.toml changes),
# install tclr-zoo with its dev extra into it, and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tclr-zoo-installed

.PHONY: demo test install clean

demo: $(STAMP)
	$(VENV)/bin/tclr-zoo pretrain --out runs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs build *.egg-info
