# The two commands a newcomer needs: `make demo` (the whole pipeline on the embedded sample) and
# `make test` (lint, format check, tests). Both create .venv and install the project on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,annotate]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/focus-pipeline demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# One pytest worker per core (at most 4: the multi-process tests start their own ranks), a test file per
# worker so that its module fixtures are built once.
test: lint
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Small settings for the scripts whose defaults are a real experiment: focus_effect.py's registered protocol
# (6 seeds x 300 steps), paper_step.py's paper batch of 32 (about 42 GB, a GPU's job) and scale.py's
# 100,000 images (hours on a CPU).
bench: install
	for f in benchmarks/*.py; do \
	  case $$f in \
	    *focus_effect.py) args="--seeds 2 --steps 30" ;; \
	    *paper_step.py) args="--batch-size 2 --steps 1" ;; \
	    *finetune_recipe.py) args="--seeds 2 --steps 10" ;; \
	    *scale.py) args="--images 2000 --steps 20" ;; \
	    *) args="" ;; \
	  esac; \
	  $(PY) $$f $$args || exit 1; \
	done

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
