# The README's two commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint typecheck unit lint-infra dev azurite bench bench-azurite bench-store mono chromium clean

$(STAMP): setup.py pyproject.toml $(wildcard chargeback_pipeline/lib/_*.[ch])
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Azurite (a real Blob Storage endpoint) for the tests; pinned in package.json.
$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Mono's C# compiler + Newtonsoft.Json: the policy tests compile and run the APIM expressions
# (~9 MB, ~12 s, Debian packages; installed only where missing).
MONO_PACKAGES := mono-mcs libnewtonsoft-json-cil-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

mono:
	@command -v mcs >/dev/null && command -v mono >/dev/null && \
	  ls /usr/lib/cli/Newtonsoft.Json*/Newtonsoft.Json.dll >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(MONO_PACKAGES); }

# Headless Chromium (Debian package): the HTML report test renders the page and screenshots it.
CHROMIUM_PACKAGES := chromium fonts-dejavu-core
chromium:
	@command -v chromium >/dev/null || \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $(CHROMIUM_PACKAGES); }

demo: $(STAMP)
	$(BIN)/chargeback demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy chargeback_pipeline/lib

unit: $(STAMP) $(NODE_STAMP) mono chromium
	$(BIN)/pytest

# checkov (offline, own venv .venv-checkov) over infra/bicep, infra/terraform, the Dockerfile and
# .github/workflows; terraform fmt where a terraform binary exists.
lint-infra:
	bash infra/scripts/lint_infra.sh

test: lint typecheck unit lint-infra

# The Dagster UI on 127.0.0.1:3000 over the same lake as `make demo`.
dev: $(STAMP)
	DAGSTER_HOME=$(CURDIR)/.chargeback/dagster_home $(BIN)/python -c "from chargeback_pipeline.cli import ensure_dagster_home as e; e()"
	DAGSTER_HOME=$(CURDIR)/.chargeback/dagster_home \
	CHARGEBACK_PSEUDONYM_KEY=$${CHARGEBACK_PSEUDONYM_KEY:-DEMO-ONLY-pseudonym-key-not-secret} \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Hour ingest vs an orjson floor and a naive json+pandas baseline, forwarder throughput, marts build.
bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_bench.py $(BENCH_ARGS)

# The same with the hour stored in Azurite (a real Blob endpoint, started and stopped by the bench).
bench-azurite: $(STAMP) $(NODE_STAMP)
	$(BIN)/python benchmarks/ingest_bench.py --azurite $(BENCH_ARGS)

# Forwarder write and hour read throughput, local folder vs Azurite (figures, not assertions).
bench-store: $(STAMP) $(NODE_STAMP)
	$(BIN)/python benchmarks/store_throughput.py

# Azurite on its default port (10000) for `CHARGEBACK_STORE='UseDevelopmentStorage=true'`.
azurite: $(NODE_STAMP)
	mkdir -p .chargeback/azurite
	node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort 10000 \
		--location .chargeback/azurite --skipApiVersionCheck --disableTelemetry

clean:
	rm -rf .chargeback
