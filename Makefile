# Two commands for a newcomer: `make render` (set up, then render the dev stack offline) and
# `make test`. Both create the virtualenv from the pinned requirements on first use.
VENV  := .venv
PY    := $(VENV)/bin/python
STACK ?= dev

.PHONY: render test

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

render: $(VENV)/.installed
	$(PY) -m components render --stack $(STACK) --out out/$(STACK)

test: $(VENV)/.installed
	$(PY) -m pytest
