# `make demo` and `make test` set up .venv (created once, reinstalled when pyproject.toml changes),
# install tclr-zoo with its dev extra into it, and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tclr-zoo-installed
# olah (a Hugging Face Hub server) serves local git repos as Hub repos to tests/hub/test_hub_client.py. It
# lives in its own venv (its fastapi/pydantic stack stays out of .venv); the stamp names the version,
# so changing OLAH_VERSION reinstalls it.
OLAH_VERSION := 0.5.4
OLAH_VENV := .venv-olah
OLAH_STAMP := $(OLAH_VENV)/.olah-$(OLAH_VERSION)-installed

.PHONY: demo test fuzz install clean

demo: $(STAMP)
	$(VENV)/bin/tclr-zoo pretrain --out runs/demo --overwrite

test: $(STAMP) $(OLAH_STAMP)
	$(PY) -m pytest

# A longer, randomised run of the decode fuzz target (tests/robustness/test_fuzz.py); FUZZ_EXAMPLES=N to change.
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	TCLR_ZOO_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/robustness/test_fuzz.py -p no:cacheprovider -q --durations=0

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(OLAH_STAMP):
	test -x $(OLAH_VENV)/bin/python || $(PYTHON) -m venv $(OLAH_VENV)
	$(OLAH_VENV)/bin/python -m pip install --quiet 'olah==$(OLAH_VERSION)'
	touch $@

clean:
	rm -rf $(VENV) $(OLAH_VENV) runs build *.egg-info
