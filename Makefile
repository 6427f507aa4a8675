# Two commands for a newcomer: `make run` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test setup lint typecheck unit clean bench lock

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pyreg needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian, apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/pyreg serve --host 127.0.0.1 --port 5000 --storage file://./var/registry

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -rs

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# deploy/requirements.lock: every runtime dependency of pyproject.toml pinned with its hashes,
# resolved in a clean venv (not .venv, whose dev tools would leak in); deploy/Dockerfile
# installs from it with --require-hashes. Re-run after changing dependencies in pyproject.toml.
LOCK_VENV ?= /tmp/pyreg-lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip pip-tools
	cd $(CURDIR) && $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras \
	    --no-emit-index-url --no-emit-find-links --allow-unsafe \
	    --output-file deploy/requirements.lock pyproject.toml deploy/lock-extras.in
	rm -rf $(LOCK_VENV)
