# lseg_pacl — every target creates and reuses the virtualenv (.venv) by itself.
#   make train [EXP=demo] [ARGS="key=value ..."]     make test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXP ?= demo
ARGS ?=
CKPT ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train eval table predict docs-example sweep agent test test-fast bench stress lint synth clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools (once; again when pyproject.toml changes)

train: $(STAMP) ## train an experiment: make train EXP=pacl_vitb16 ARGS="optim.lr=1e-4" (default EXP=demo)
	$(PY) -m lseg_pacl train $(EXP) $(ARGS)

eval: $(STAMP) ## zero-shot evaluation: make eval EXP=demo_pacl CKPT=runs/.../last.ckpt ARGS="..."
	$(PY) -m lseg_pacl eval $(EXP) $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

RUNS ?= runs

table: $(STAMP) ## the method x benchmark table of eval results: make table [RUNS=runs/] [ARGS="compare=A,B out=DIR"]
	$(PY) -m lseg_pacl table runs=$(RUNS) $(ARGS)

SWEEP ?=
ID ?=

sweep: $(STAMP) ## create a W&B sweep: make sweep SWEEP=experiments/sweeps/pacl_vitb16_temperature.yaml (prints its id)
	@test -n "$(SWEEP)" || { echo "make sweep SWEEP=experiments/sweeps/<file>.yaml"; exit 2; }
	$(VENV)/bin/wandb sweep --project lseg_pacl $(SWEEP)

agent: $(STAMP) ## run trials of a W&B sweep on this machine: make agent ID=entity/project/sweep_id
	@test -n "$(ID)" || { echo "make agent ID=<entity>/<project>/<sweep id> (printed by make sweep)"; exit 2; }
	$(VENV)/bin/wandb agent $(ID)

DEMO_CKPT = $(lastword $(sort $(wildcard runs/demo/*/demo_pacl/checkpoints/last.ckpt)))
DEMO_LABELS = sky, wall, grass, water, sand, ball, box, tree, house, sun
IMAGE ?=
LABELS ?=

predict: $(STAMP) ## segment images: make predict CKPT=... IMAGE=... LABELS="cat, dog" (none: the demo PACL model on 4 synthetic images)
ifeq ($(strip $(CKPT)$(IMAGE)$(LABELS)),)
	@test -n "$(DEMO_CKPT)" || { echo "no demo checkpoint under runs/demo/: run 'make train' first (about 6 minutes)"; exit 3; }
	$(PY) -m lseg_pacl predict ckpt=$(DEMO_CKPT) image=data/synthetic/ADEChallengeData2016/images/validation labels="$(DEMO_LABELS)" limit=4 out=predictions/demo $(ARGS)
else
	$(PY) -m lseg_pacl predict ckpt=$(CKPT) image=$(IMAGE) labels="$(LABELS)" $(ARGS)
endif

docs-example: $(STAMP) ## regenerate docs/examples/ (README's example overlay) from the demo PACL checkpoint
	@test -n "$(DEMO_CKPT)" || { echo "no demo checkpoint under runs/demo/: run 'make train' first (about 6 minutes)"; exit 3; }
	$(PY) -m lseg_pacl predict ckpt=$(DEMO_CKPT) image=data/synthetic/ADEChallengeData2016/images/validation/000000004001.jpg labels="$(DEMO_LABELS)" out=docs/examples overwrite=true

APP_STAMP := $(VENV)/.app-installed-stamp
.PHONY: app

$(APP_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[app]"
	touch $(APP_STAMP)

app: $(APP_STAMP) ## a web page to segment images, 1-2 models side by side: make app [CKPT=...] [ARGS="port=7860 host=127.0.0.1"]
	$(PY) -m lseg_pacl app $(if $(CKPT),ckpt=$(CKPT)) $(ARGS)

test: $(STAMP) ## the whole test suite, slow end-to-end tests included
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) ## the tests without the slow end-to-end ones
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) ## speed/memory figures (about 7 min on 2 CPU cores) -> bench/results.json: make bench ARGS="suites=pacl_loss full=true"
	$(PY) -m lseg_pacl bench $(ARGS)

stress: $(STAMP) ## count stalls: the demo PACL stage and a DDP step, repeated under load: make stress ARGS="pacl=50 ddp=50"
	$(PY) -m lseg_pacl stress $(ARGS)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check lseg_pacl data_modules tests

synth: $(STAMP) ## write the synthetic world: make synth ARGS="out=data/synthetic seed=0"
	$(PY) -m lseg_pacl data synth $(if $(ARGS),$(ARGS),out=data/synthetic)

clean: ## remove caches and build files (keeps .venv, runs/ and data/)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
