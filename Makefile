# `make demo` and `make test` set up .venv (created once, reinstalled when pyproject.toml changes),
# install tclr-zoo with its dev extra into it, and run. pip byte-compiles what it installs: keep it so
# (no --no-compile). Where PYTHONDONTWRITEBYTECODE is set, as here, a module compiled at import is
# never kept, and every process compiled torch again: the suite took 2 minutes longer (2026-12-03).
# Compiling on both cores after pip instead saved nothing measurable.
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
# The browser test (tests/app/test_app_browser.py) drives Debian's Chromium through its chromedriver
# (Selenium, in the dev extra). `make test` installs the two packages when they are missing and it can
# (root and apt-get); where it cannot, that test is skipped and says why. `make demo` needs neither.
BROWSER_PACKAGES := chromium chromium-driver

.PHONY: demo test test-setup fuzz install clean browser

demo: $(STAMP)
	$(VENV)/bin/tclr-zoo pretrain --out runs/demo --overwrite

# -n 2: two test processes (pytest-xdist) on 2 cores: the cores were busy 80% of a run (2026-12-03);
# -n 3 was slower (clean clone: 19.4 min against 18.1 min for -n 2). worksteal: an idle process
# takes tests from a busy one.
# ruff first: a lint error fails in seconds, not after the suite.
test: test-setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist worksteal

# The three set-ups are independent, so they run side by side.
test-setup:
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(OLAH_STAMP) browser

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

browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $(BROWSER_PACKAGES) for the browser test (apt-get)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES); } \
	    || echo "warning: could not install $(BROWSER_PACKAGES); the browser test will be skipped"; \
	else echo "note: no chromium/chromedriver here and no root apt-get to install them; the browser test will be skipped"; fi

clean:
	rm -rf $(VENV) $(OLAH_VENV) runs build *.egg-info
