# Prefer the Python that Lambda runs (3.13, under pyenv here); fall back to python3.
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys' >/dev/null 2>&1; then echo $$p; break; fi; done)
export SAM_CLI_TELEMETRY := 0
VENV := .venv
BIN := $(VENV)/bin
FUNCTIONS := $(wildcard functions/*/app.py)

.PHONY: install demo test lint format bench fuzz faults clean

$(BIN)/support-agent: pyproject.toml layers/common/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r layers/common/requirements.txt -e '.[dev]'
	@touch $@

# dynalite (npm) backs the concurrency tests: its conditional writes are atomic, moto's are not.
.tools/node_modules/.bin/dynalite:
	@command -v npm >/dev/null 2>&1 && npm install --prefix .tools --no-audit --no-fund --silent dynalite@3 \
		|| echo "npm not found: the dynalite concurrency tests will be skipped"

# checkov scans template.yaml; it gets its own environment because its pins clash with aws-sam-cli's
# (see the iac-scan extra in pyproject.toml, which this installs).
CHECKOV := .tools/checkov/bin/checkov
$(CHECKOV): pyproject.toml
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install -q $$($(PYTHON) -c 'import tomllib; \
		print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["iac-scan"]))')
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
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/triage_crossdomain.py

# >= 10,000 generated requests to both routes (services on fakes, handlers on the stack, HTTP through serve
# on 127.0.0.1); fails unless 0 answered 5xx, 0 dropped, 0 forged accepted and 0 state changes from refusals.
fuzz: install
	$(BIN)/python bench/fuzz.py

# One fault per row through the whole local pipeline (the model via the real SDK on a strict Messages API
# stand-in); fails unless every ticket ends answered or with a person and nothing runs twice.
faults: install
	$(BIN)/python -m support_agent_local.faults

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
