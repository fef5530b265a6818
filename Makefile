# AlexNet, two towers. A newcomer needs only `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?=
DATA   ?=
ARGS   ?=
NPROC  ?= 1

.PHONY: install test lint demo train-2gpu train-1gpu evaluate tensorboard bench gpu-check clean ablations-demo ensemble-demo help

install: $(STAMP) ## the virtual environment .venv: the package, its pins, the native LRN and max-pool kernels

# Re-installs only when the pins or the package metadata change (idempotent).
$(STAMP): requirements.txt setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -c 'from alexnet.models import native; raise SystemExit(native.main())'
	touch $(STAMP)

test: $(STAMP) ## the whole test suite
	$(PY) -m pytest tests -q

# The formatter and the linter (configured in pyproject.toml); CI runs it before the tests.
lint: $(STAMP) ## the formatter and the linter, as CI runs them
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# ---- training (README: Training, Demo, Evaluation; docs/training.md) ----
# DATA= dataset root (train/<class>/, val/<class>/); CONFIG= another preset; ARGS= e.g. "--set optim.lr=0.02 --resume"
DEMO_DATA  ?= data/demo
CHECKPOINT ?=

demo: $(STAMP) ## make the synthetic demo data if missing, then train on it (resumes)
	@test -d $(DEMO_DATA)/train || $(PY) -m alexnet demo-data --out $(DEMO_DATA)
	$(PY) -m alexnet train --config $(or $(CONFIG),configs/demo.toml) $(DEMO_DATA) --resume $(ARGS)

# NPROC=R: R data-parallel replicas on this node under torchrun, replica r on cuda:2r and cuda:2r+1
# (2R GPUs are checked for before torchrun starts).
train-2gpu: $(STAMP) ## train the paper's network on two GPUs: DATA=dataset root (NPROC=R replicas)
ifeq ($(NPROC),1)
	$(PY) -m alexnet train --require-gpus 2 --config $(or $(CONFIG),configs/alexnet-2gpu.toml) $(DATA) $(ARGS)
else
	@$(PY) -m twogpu.check_gpus $$((2 * $(NPROC))) --what "make train-2gpu NPROC=$(NPROC) (two towers per replica)" \
	  --hint "Use NPROC=N with 2N GPUs; with one GPU or none, run \`make train-1gpu DATA=...\`."
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC) -m alexnet train --require-gpus $$((2 * $(NPROC))) \
	  --config $(or $(CONFIG),configs/alexnet-2gpu.toml) $(DATA) $(ARGS)
endif

train-1gpu: $(STAMP) ## train on one GPU (or the CPU): DATA=dataset root
	$(PY) -m alexnet train --config $(or $(CONFIG),configs/alexnet-1gpu.toml) $(DATA) $(ARGS)

evaluate: $(STAMP) ## top-1/top-5 error of CHECKPOINT= (default: the demo's best) on DATA=
	$(PY) -m alexnet evaluate --checkpoint $(or $(CHECKPOINT),runs/demo/checkpoints/best.pt) $(or $(DATA),$(DEMO_DATA)) $(ARGS)

# ---- the paper's ablations on the demo data (docs/ablations.md) ----
# Trains configs/ablations/demo/{baseline,<ablation>}.toml one after another on the CPU (or GPUs),
# evaluates each run (centre + 10 views) and prints the comparison table with 95 % intervals.
# Re-running continues unfinished runs (--resume), skips finished ones, and re-evaluates only newer
# checkpoints. ABLATIONS= a subset, e.g. "no-lrn one-tower"; ABLATION_RUNS= parent folder of the run
# directories; SEEDS=N trains N seeds of each (train.seed 0..N-1; seed k > 0 in <run>-seed<k>), which
# `alexnet compare` averages, adding their spread to the intervals.
ABLATIONS     ?= one-tower no-lrn no-overlap no-lighting no-dropout no-flip-crop
ABLATION_RUNS ?= runs
SEEDS         ?= 1

ablations-demo: $(STAMP) ## the paper's ablations on the demo data, then their comparison table
	@test -d $(DEMO_DATA)/train || $(PY) -m alexnet demo-data --out $(DEMO_DATA)
	@failed=""; runs=""; for a in baseline $(ABLATIONS); do for s in $$(seq 0 $$(($(SEEDS) - 1))); do \
	  name=demo-ablation-$$a; test $$s = 0 || name=$$name-seed$$s; run=$(ABLATION_RUNS)/$$name; \
	  echo "== ablation $$a, seed $$s -> $$run"; \
	  $(PY) -m alexnet train --config configs/ablations/demo/$$a.toml $(DEMO_DATA) --resume \
	    --set train.runs_dir='"$(ABLATION_RUNS)"' --set train.seed=$$s --set train.name='"'$$name'"' $(ARGS) \
	    || failed="$$failed $$a/seed$$s"; \
	  test ! -f $$run/checkpoints/best.pt || test $$run/eval.json -nt $$run/checkpoints/best.pt || \
	    $(PY) -m alexnet evaluate --checkpoint $$run/checkpoints/best.pt $(DEMO_DATA) || failed="$$failed $$a/seed$$s"; \
	  test ! -d $$run || runs="$$runs $$run"; \
	done; done; \
	$(PY) -m alexnet compare --baseline $(ABLATION_RUNS)/demo-ablation-baseline $$runs || exit 1; \
	if [ -n "$$failed" ]; then echo "ablations-demo: these runs failed or stopped early (see above):$$failed" >&2; exit 1; fi

# ---- Table 2's ensemble on the demo data (docs/ensembles.md) ----
# Trains ENSEMBLE_N demo networks (configs/demo.toml, train.seed 0..N-1, runs/demo-ensemble-seed<k>)
# one after another, about 6 minutes each on two CPU cores (N = 3: about 20 minutes), then evaluates
# them as one ensemble (softmax averaged) into $(ENSEMBLE_RUNS)/demo-ensemble.json. Re-running
# continues unfinished runs and skips finished ones (--resume). ARGS= goes to each training run.
ENSEMBLE_N    ?= 3
ENSEMBLE_RUNS ?= runs

ensemble-demo: $(STAMP) ## train N demo networks (seeds 0..N-1) and evaluate them as one ensemble
	@test -d $(DEMO_DATA)/train || $(PY) -m alexnet demo-data --out $(DEMO_DATA)
	@runs=""; for s in $$(seq 0 $$(($(ENSEMBLE_N) - 1))); do name=demo-ensemble-seed$$s; \
	  echo "== ensemble member $$s -> $(ENSEMBLE_RUNS)/$$name"; \
	  $(PY) -m alexnet train --config configs/demo.toml $(DEMO_DATA) --resume \
	    --set train.runs_dir='"$(ENSEMBLE_RUNS)"' --set train.seed=$$s --set train.name='"'$$name'"' $(ARGS) \
	    || exit 1; \
	  runs="$$runs $(ENSEMBLE_RUNS)/$$name"; \
	done; \
	$(PY) -m alexnet evaluate --checkpoint $$runs $(DEMO_DATA) --out $(ENSEMBLE_RUNS)/demo-ensemble.json

tensorboard: $(STAMP) ## TensorBoard on runs/
	$(PY) -m tensorboard.main --logdir runs $(ARGS)

# ---- performance (README: Performance; docs/performance.md) ----
# ARGS= e.g. "--quick", "--no-channels-last --no-tune-malloc" (the plain PyTorch defaults), "--devices cuda:0 cuda:1 --precision bf16"
bench: $(STAMP) ## the performance benchmarks (ARGS=--quick for a short run)
	$(PY) benchmarks/bench.py $(ARGS)

# The one-GPU check (under 5 minutes): OUT=folder for gpu_check.json and summary.txt (default: git-ignored).
OUT ?= bench-results/gpu-check
gpu-check: $(STAMP) ## the one-GPU check, under 5 minutes: OUT=folder for its report
	$(PY) benchmarks/gpu_check.py $(OUT) $(ARGS)

clean: ## remove .venv and the build outputs
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

help: ## this list
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
