# lra: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, pinned, so nothing else pulls another build: on a machine whose pip finds the
# CPU wheel on disk (this project's CI) that is the CPU build; from PyPI on Linux it is the CUDA build.
# Another CUDA version: make install TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,slurm
TASK ?= listops
NAME ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install browser test test-gpu lint train data probe bench analysis tables report campaign clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Create .venv and install lra with torch, lightning, hydra, wandb, datasets, torchmetrics
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	@$(MAKE) --no-print-directory browser
	@$(BIN)/python -c "import torch, lightning, hydra, wandb, datasets, torchmetrics; \
	print('lra installed: torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"

browser: ## Install Debian's Chromium for the report test, where apt-get and root are available
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the report test will skip"; \
	else echo "no chromium (optional: only the HTML report test uses it; it skips without it)"; fi

test: ## Run the whole test suite on the CPU
	$(BIN)/python -m pytest -q $(ARGS)

test-gpu: ## Run the GPU tests (needs CUDA)
	$(BIN)/python -m pytest -q -m gpu $(ARGS)

lint: ## ruff
	$(BIN)/ruff check lra tests train.py evaluate.py

train: ## The CPU quickstart: a small model on generated ListOps (ARGS="attention=performer ...")
	$(BIN)/python train.py $(ARGS)

data: ## Fetch (where a network allows) and prepare a task's data: make data TASK=text
	$(BIN)/python -m lra.data prepare task=$(TASK) $(ARGS)

probe: ## Is an image task's data learnable? A small CNN, not an LRA model: make probe TASK=pathfinder
	$(BIN)/python -m lra.probe task=$(TASK) $(ARGS)

bench: ## Attention speed and memory vs length -> results/bench/<device>/
	$(BIN)/python -m lra.bench $(ARGS)

analysis: ## Sparse patterns: a fixed attention vs d and L -> results/analysis/ (ARGS="sparse.ckpt=[PATH,...]")
	$(BIN)/python -m lra.analysis sparse $(ARGS)

tables: ## Run records -> results/tables/ (published numbers beside ours; ARGS="checkpoint=last wandb=ENTITY/lra")
	$(BIN)/python -m lra.tables report=null $(ARGS)

report: ## The tables plus results/report.html (self-contained; opens in any browser)
	$(BIN)/python -m lra.tables $(ARGS)

campaign: ## Advance a campaign within a budget, then rebuild the tables: make campaign NAME=lra_table1 ARGS="budget=9m"
	@test -n "$(NAME)" || { echo "make campaign NAME=<one of: $$(ls conf/campaign | sed 's/.yaml//' | tr '\n' ' ')> [ARGS=...]"; exit 2; }
	$(BIN)/python -m lra.campaign $(NAME) $(ARGS)

clean: ## Remove caches of Python and pytest (not data/, models/ or results/)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
