# Two commands set up and run everything on a fresh machine:
#   make demo   -> creates .venv, installs knoblab, runs the main job on built-in defaults,
#                  a small deep profile and the analysis (report.html)
#   make test   -> installs the dev extras, runs the whole test suite (what CI runs)
#   make test-fast -> the unit tests only: no slow, multiprocess, crash or HF-matrix tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of torch that lies on this machine's disk; a plain `torch` requirement
# would pull a multi-GB CUDA build. pyproject declares torch>=2.4 only.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv install install-dev demo test test-fast lint format bench browser clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	touch $@

venv: $(VENV)/.created

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The demo: the default sweep (results/profile/shapes-vqa), a small operator-level profile
# of its cheapest and its richest configuration on 8 of the same samples
# (results/deep_profile), and the analysis that joins them (E1 with the decode fit and the
# operator shares, E2, E3: results/profile/shapes-vqa/analysis/report.html).
DEMO_DEEP := 'deep.configurations=[{tier: low, top_k: 1, num_active_blocks: 2}, {tier: high, top_k: 4, num_active_blocks: 4}]' \
	deep.samples=all dataset/sampling@dataset.sampling=fixed dataset.sampling.num_samples_per_epoch=8 run.progress=false

demo: install
	$(VENV)/bin/knoblab profile
	$(VENV)/bin/knoblab deep-profile $(DEMO_DEEP)
	$(VENV)/bin/knoblab analyze results/profile/shapes-vqa

# Headless Chromium renders the analysis report in one test; install it when we can
# (root with apt), otherwise that test skips and says why (under CI it fails instead).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1) || true; }

test: install-dev browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/python -m pytest -q

# Seconds, for the edit-test loop; markers are set in tests/conftest.py (LANES) and in place.
test-fast: install-dev
	$(VENV)/bin/python -m pytest -q -m "not slow and not multiprocess and not crash and not hf"

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install-dev
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: install-dev
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
