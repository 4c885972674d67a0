# Two commands do all set-up: `make train` (the main job) and `make test` (the test suite).
# Both create .venv on first use (torch==2.13.0 first, so pip never pulls a CUDA build), then reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TRAIN_ARGS ?=

.PHONY: install train test lint typecheck wheel-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,smax,vmas,mpe,research,mamujoco,cluster]"
	touch $(STAMP)

install: $(STAMP)

# The main job: the headline command (HASAC + HyperMARL on MaMuJoCo) with the quick-start config, Hopper 3x1
# on a budget of about 3 minutes on 2 quiet cores (3 min 6 s measured): 2,500 warm-up steps, then 4,000
# updates; its evaluation return rises from the first evaluation to the last. Progress every 10 s, a summary
# and learning_curve.png at the end. TRAIN_ARGS adds options, which override the config's (e.g. TRAIN_ARGS="--seed 2"),
# and replaces the flag given here that it names (e.g. TRAIN_ARGS="--exp_name mine").
QUICKSTART := harl/tuned_configs/mamujoco/Hopper-3x1/hasac-hypermarl-quickstart.yaml
unless_given = $(if $(filter --$(1) --$(1)=%,$(TRAIN_ARGS)),,--$(1) $(2))
train: install
	$(PY) examples/train.py $(call unless_given,algo,hasac) $(call unless_given,arch,hypermarl) \
		$(call unless_given,env,mamujoco) $(call unless_given,exp_name,quickstart) \
		$(call unless_given,load_config,$(QUICKSTART)) $(TRAIN_ARGS)

# The default suite (< 10 minutes on 2 cores).
test: install
	HARL_CONCURRENT_RUNS=2 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile tests

lint: install
	$(PY) -m ruff check harl hypermarl_ext examples tests bench
	$(PY) -m ruff format --check harl hypermarl_ext examples tests bench

# mypy on harl/ with the settings in pyproject.toml.
typecheck: install
	$(PY) -m mypy

# Build the wheel, install it outside the repository and run a tuned training and the console scripts from it.
wheel-check: install
	.ci/check_wheel $(PY)

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache
