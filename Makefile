# Two commands for a newcomer: `make render` (set up, then render the dev stack offline) and
# `make test`. Both create the virtualenvs from the pinned requirements on first use.
VENV    := .venv
PY      := $(VENV)/bin/python
CHECKOV := .venv-checkov
STACK   ?= dev

.PHONY: render test

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV)/.installed: requirements-checkov.txt
	python3 -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

render: $(VENV)/.installed
	$(PY) -m components render --stack $(STACK) --out out/$(STACK)

test: $(VENV)/.installed $(CHECKOV)/.installed
	$(PY) -m pytest
