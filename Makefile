# make demo: the main job (builds .venv first); make test: the test suite (builds .venv first).
# The environment is built once by tools/setup_env.sh; later runs reuse .venv in seconds.
PY := .venv/bin/python
RUFF := $(firstword $(wildcard .venv/bin/ruff) $(shell command -v ruff 2>/dev/null))

.PHONY: env test demo lint

env:
	bash tools/setup_env.sh

test: env
	$(PY) -m pytest -q tests

# Placeholder until tools/demo.sh exists: it will run the smallest real DA-VPT training and test.
demo: env
	@if [ -f tools/demo.sh ]; then bash tools/demo.sh; else \
		echo "make demo: tools/demo.sh is not written yet; it will train and test DA-VPT on the offline demo data"; \
		exit 1; fi

lint:
	@if [ -n "$(RUFF)" ]; then $(RUFF) check mmdavpt tools tests; else \
		echo "ruff is not installed (.venv/bin/python -m pip install ruff)"; exit 1; fi
