# Prefer the Python that Lambda runs (3.13, under pyenv here); fall back to python3.
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys' >/dev/null 2>&1; then echo $$p; break; fi; done)
export SAM_CLI_TELEMETRY := 0
VENV := .venv
BIN := $(VENV)/bin
FUNCTIONS := $(wildcard functions/*/app.py)

.PHONY: install demo test lint format bench fuzz faults clean train-triage

# requirements.lock pins (with hashes) every package of pyproject's dependencies and its `dev` extra, for
# every Python the project supports (requires-python) on any platform; layers/common/requirements.txt is
# its subset that `sam build` installs into the layer: the runtime dependencies at the same versions, for
# Lambda's Python 3.13 on arm64. Both are written by `make lock`, never by hand.
LOCK := requirements.lock
LAYER_REQUIREMENTS := layers/common/requirements.txt
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
UV := .tools/uv/bin/uv
# The oldest Python of pyproject's requires-python: the lock holds for it and every later one.
OLDEST_PYTHON := 3.11
LOCK_COMMAND := make lock
UV_COMPILE := $(UV) pip compile pyproject.toml --quiet --generate-hashes --custom-compile-command "$(LOCK_COMMAND)"

.PHONY: lock lock-upgrade

$(BIN)/support-agent: pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

# dynalite (npm) backs the concurrency tests: its conditional writes are atomic, moto's are not.
.tools/node_modules/.bin/dynalite:
	@command -v npm >/dev/null 2>&1 && npm install --prefix .tools --no-audit --no-fund --silent dynalite@3 \
		|| echo "npm not found: the dynalite concurrency tests will be skipped"

# checkov scans template.yaml; it gets its own environment because its pins clash with aws-sam-cli's
# (see the iac-scan extra in pyproject.toml). requirements-iac-scan.lock pins that environment; `make lock`
# writes it from the extra alone (not the project's dependencies: checkov does not import them).
CHECKOV := .tools/checkov/bin/checkov
CHECKOV_LOCK := requirements-iac-scan.lock
$(CHECKOV): $(CHECKOV_LOCK)
	$(PYTHON) -m venv --clear .tools/checkov
	.tools/checkov/bin/pip install -q pip==$(PIP_VERSION)
	.tools/checkov/bin/pip install -q --require-hashes -r $(CHECKOV_LOCK)
	@touch $@

install: $(BIN)/support-agent .tools/node_modules/.bin/dynalite

# Asks for each decision in a terminal; scripted decisions when stdin is not a terminal (CI, pipes).
demo: install
	$(BIN)/support-agent demo --decisions ask

test: install
	$(BIN)/pytest -n 2 --dist loadfile

lint: install $(CHECKOV)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	@for f in $(FUNCTIONS); do $(BIN)/mypy --follow-imports=silent $$f || exit 1; done
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --region us-east-1 >/dev/null
	$(CHECKOV) --file template.yaml --framework cloudformation --skip-download --quiet --compact

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/agent_step.py
	$(BIN)/python bench/slack_endpoint.py
	$(BIN)/python bench/pipeline.py -n 1000
	$(BIN)/python bench/prompt_cache.py
	$(BIN)/python bench/triage_crossdomain.py
	$(BIN)/python bench/import_time.py
	$(BIN)/python bench/layer_size.py --bytecode

# The triage guard's learned check, trained on the labelled files in tests/data/triage into the layer's
# data file; the same files give the same bytes.
train-triage: install
	$(BIN)/python -m support_agent_local.train_triage

# >= 10,000 generated requests to both routes (services on fakes, handlers on the stack, HTTP through serve
# on 127.0.0.1); fails unless 0 answered 5xx, 0 dropped, 0 forged accepted and 0 state changes from refusals.
fuzz: install
	$(BIN)/python bench/fuzz.py

# One fault per row through the whole local pipeline (the model via the real SDK on a strict Messages API
# stand-in); fails unless every ticket ends answered or with a person and nothing runs twice.
faults: install
	$(BIN)/python -m support_agent_local.faults

# uv (from PyPI) resolves; pip installs. `make lock` keeps every pin it can and adds what pyproject.toml
# gained (run it after adding or changing a dependency); `make lock-upgrade` moves every pin to the newest
# release allowed (UPGRADE="--upgrade-package NAME" moves one).
$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install -q uv==$(UV_VERSION)

lock: $(UV)
	$(UV_COMPILE) --extra dev --universal --python-version $(OLDEST_PYTHON) $(UPGRADE) -o $(LOCK)
	$(UV_COMPILE) --python-version 3.13 --python-platform aarch64-manylinux_2_34 --constraint $(LOCK) $(UPGRADE) \
		-o $(LAYER_REQUIREMENTS)
	$(PYTHON) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["iac-scan"]))' \
		| $(UV) pip compile - --quiet --generate-hashes --custom-compile-command "$(LOCK_COMMAND)" --universal \
		--python-version $(OLDEST_PYTHON) $(UPGRADE) -o $(CHECKOV_LOCK)

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
