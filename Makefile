# AlexNet, two towers. A newcomer needs only `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?=
DATA   ?=
ARGS   ?=

.PHONY: install test demo train-2gpu train-1gpu evaluate tensorboard bench clean

install: $(STAMP)

# Re-installs only when the pins or the package metadata change (idempotent).
$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
