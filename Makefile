# The two quick-start commands. Both set everything up first (idempotent, fast when done).
VENV ?= .venv
SAMPLE ?= samples/sample.mp4

.PHONY: setup demo lint test test-fast test-train bench clean

setup:
	bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/affectlens analyze $(SAMPLE)

# Two tiers: the fast one (no model) first, so a plumbing error shows in the first minutes; then
# the tests that load models or drive the browser. Exit code 5 (nothing collected, e.g. a
# PYTEST_ARGS that selects only one tier) is not a failure.
FAST = not slow and not browser and not train
SLOW = (slow or browser) and not train
PYTEST = HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -ra

test:
	bash scripts/setup.sh --test
	$(PYTEST) -m "$(FAST)" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PYTEST) -m "$(SLOW)" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The fast tier alone: no model loads, about 2 minutes on 2 cores.
test-fast:
	bash scripts/setup.sh --test
	$(PYTEST) -m "$(FAST)" $(PYTEST_ARGS)

# Lint, format and types on the package (CI runs this before the tests).
SRC = affectlens agent tools ui evals prompts scripts tests
lint:
	bash scripts/setup.sh --test
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)
	bash scripts/typecheck.sh

# The refits of the shipped scorers from ../shared/data (minutes of CPU each): they check that
# the fitting scripts still reproduce the files in the repo. Not part of `make test`.
test-train:
	bash scripts/setup.sh --test
	$(PYTEST) -m train $(PYTEST_ARGS)

bench: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/affectlens bench

clean:
	rm -rf $(VENV) .pytest_cache
