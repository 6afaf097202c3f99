# The two quick-start commands. Both set everything up first (idempotent, fast when done).
VENV ?= .venv
SAMPLE ?= samples/sample.mp4

.PHONY: setup demo test bench clean

setup:
	bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/affectlens analyze $(SAMPLE)

test:
	bash scripts/setup.sh --test
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

bench: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/affectlens bench

clean:
	rm -rf $(VENV) .pytest_cache
