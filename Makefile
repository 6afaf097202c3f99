# The two quick-start commands. Both set everything up first (idempotent, fast when done).
VENV ?= .venv
SAMPLE ?= samples/sample.mp4

.PHONY: setup demo test bench clean

setup:
	bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/affectlens analyze $(SAMPLE)

# Two tiers: the fast one (no model) first, so a plumbing error shows in the first minutes; then
# the tests that load models or drive the browser. Exit code 5 (nothing collected, e.g. a
# PYTEST_ARGS that selects only one tier) is not a failure.
FAST = not slow and not browser
PYTEST = HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -ra

test:
	bash scripts/setup.sh --test
	$(PYTEST) -m "$(FAST)" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PYTEST) -m "slow or browser" $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/affectlens bench

clean:
	rm -rf $(VENV) .pytest_cache
