# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need (venv + Python deps, MariaDB via apt-get, Kafka jars via Maven)
# and start throwaway services under .run/ (see devenv/).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
# rustup installs cargo in ~/.cargo/bin, which a non-login shell (CI, cron) does not have on PATH
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: venv services-up services-down services-status test test-unit demo bench check clean

venv: $(VENV)/.installed

# The compiled extensions are built by the editable install (C: _rowcodec; Rust: _native, when cargo is on
# PATH, else the Python implementation is used, see setup.py): their sources are prerequisites, so an edit
# rebuilds them on the next `make venv` / `make test`.
$(VENV)/.installed: pyproject.toml setup.py cdc_bridge/source/_rowcodec.c native/Cargo.toml native/Cargo.lock \
		$(wildcard native/src/*.rs)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	@# PYTHONWARNINGS: setuptools' editable-install banner is not for users of this project
	PYTHONWARNINGS=ignore $(VENV)/bin/pip install -q -e '.[test]'
	touch $@

services-up: venv
	$(PY) -m devenv up

services-down: venv
	$(PY) -m devenv down

services-status: venv
	$(PY) -m devenv status

# Unit tests (no services) then integration tests (real MariaDB + Kafka), then the 15 slowest.
# Services are stopped afterwards unless KEEP_SERVICES=1 (handy for quick re-runs).
test: venv
	@$(PY) -m devenv up || { $(PY) -m devenv down; exit 1; }; \
	$(VENV)/bin/pytest --durations=15 $(PYTEST_ARGS) tests/unit tests/integration; rc=$$?; \
	if [ -z "$(KEEP_SERVICES)" ]; then $(PY) -m devenv down; fi; \
	exit $$rc

test-unit: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS) tests/unit

# Starts the services, runs the bridge while a writer plays the monolith, prints the events;
# Ctrl-C stops the writer, the bridge and the services (KEEP_SERVICES=1 leaves the services up).
demo: venv
	$(PY) -m devenv.demo

check: venv
	$(VENV)/bin/cdc-bridge check --mappings mappings

bench: venv
	$(PY) -m devenv up
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	-$(PY) -m devenv down
	rm -rf .run
