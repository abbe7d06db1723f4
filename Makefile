# Two commands for a fresh clone:
#   make train   install into .venv and train the default agent (CartPole)
#   make test    install into .venv (with test tools) and run lint + the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install train test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is a local CPU wheel on our machines; an unpinned torch would pull
	# several GB of CUDA packages. A torch already in the venv (your own CUDA build) is kept.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	# the env suites that install here, so that their tests run rather than skip
	$(PY) -m pip install -e '.[test,all-envs]'
	touch $@

install: $(VENV)/.installed

train: install
	$(VENV)/bin/reverie train

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: install lint
	$(VENV)/bin/pytest -q

bench: install
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) logs
