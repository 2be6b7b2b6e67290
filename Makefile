# mia-audit developer entry points. `make demo` and `make test` each build their own venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the builds the constraint allows (installed from local files here).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-fast lint schema bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[dev,ray,mlflow,dp]' $(TORCH_PINS)
	touch $@

demo: $(BIN)/.installed
	$(BIN)/mia-audit demo --dir mia-demo

# Two workers, a test file each: the end-to-end tests spend much of their time starting
# processes and waiting on subprocesses. OMP_WAIT_POLICY=PASSIVE: the two workers' torch threads
# oversubscribe two cores, and spinning OpenMP waits made that several times slower
# (bench/omp_wait.py); the whole suite took 16 minutes on 2 nearly quiet cores.
TEST_WORKERS ?= 2

# The whole suite, every tier (what CI runs through .ci/run).
test: lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The unit tier only (tests/unit: no subprocess, no model training): the loop while editing.
test-fast: $(BIN)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest tests/unit

# mkdocs builds docs/ into site/ and fails on a broken link or anchor (not with -q: quiet hides
# the warnings --strict counts).
lint: $(BIN)/.installed
	$(BIN)/ruff check mia_audit tests bench
	$(BIN)/mypy mia_audit tests bench
	$(BIN)/mkdocs build --strict

schema: $(BIN)/.installed
	$(BIN)/mia-audit schema > policies/policy.schema.json

bench: $(BIN)/.installed
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) mia-demo .mia-cache build dist site
