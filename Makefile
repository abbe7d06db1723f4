# Two commands for a fresh clone:
#   make train   install into .venv and train the default agent (CartPole)
#   make test    install into .venv (with test tools) and run lint + the test suite
#   make test-fast  the tests under a second each (no lint, no @pytest.mark.slow): the edit loop
#   make lock    refresh constraints.txt to the newest releases, reinstall, run the suite
VENV ?= .venv
WARMUP ?= 1
# exact versions of everything the install pulls (but torch, pinned below), so that what CI
# tested is what the next clone gets; `make lock` rewrites it
CONSTRAINTS := constraints.txt
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install train test test-fast lint bench clean lock

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is a local CPU wheel on our machines; an unpinned torch would pull
	# several GB of CUDA packages. A torch already in the venv (your own CUDA build) is kept.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -c $(CONSTRAINTS) torch==2.13.0
	# the env suites that install here, so that their tests run rather than skip
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[test,all-envs]'
	# compile the default run's update once (about 2-3 minutes on 2 cores), so that the
	# first `make train` finds its kernels in Inductor's cache (~/.cache/reverie/inductor);
	# WARMUP=0 skips it. A failure here only means the first run compiles itself. The
	# kernels take their thread count at run time, so a run given fewer cores than this
	# install (taskset, run.threads) finds them too.
	if [ "$(WARMUP)" != 0 ]; then rm -rf $(VENV)/warmup; \
	  $(VENV)/bin/reverie train --logdir $(VENV)/warmup --steps 1025 run.progress=false \
	    run.tensorboard=false run.eval_every=0 run.log_every=0 >/dev/null \
	    || echo "compile warm-up failed: the first run compiles instead"; \
	  rm -rf $(VENV)/warmup; fi
	touch $@

install: $(VENV)/.installed

train: install
	$(VENV)/bin/reverie train

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

# the suite in TEST_JOBS processes (pytest-xdist): most tests run one thread, so 2 fill
# 2 cores; TEST_JOBS=0 runs it in this process alone
TEST_JOBS ?= 2
test: install lint
	$(VENV)/bin/pytest -q -rs --durations=15 -n $(TEST_JOBS)

# the fast tier: every test not marked slow (each under a second), no lint
test-fast: install
	$(VENV)/bin/pytest -q -m "not slow" -n $(TEST_JOBS)

bench: install
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) logs

# the newest releases that pyproject.toml allows, resolved in a scratch venv and written to
# constraints.txt; then a fresh install from it and the whole suite (commit both if green)
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install torch==2.13.0
	$(LOCK_VENV)/bin/pip install -e '.[test,all-envs]'
	{ echo "# pip constraints for make install: written by make lock on $$(date -u +%F)"; \
	  echo "# (torch is pinned in the Makefile, so that a CUDA build in the venv is kept)"; \
	  $(LOCK_VENV)/bin/pip freeze --all --exclude-editable \
	    | grep -v -i -E '^(pip|torch|reverie)( @|==)' | LC_ALL=C sort -f; } > $(CONSTRAINTS)
	rm -rf $(LOCK_VENV) $(VENV)
	$(MAKE) test
