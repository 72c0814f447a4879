# Two commands a newcomer needs (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1

.PHONY: install demo test ui bench clean-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,train,eval]'
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# Runs the whole chain on the embedded default (synthetic MIMIC-CXR generated under ./data); the
# staged experiment (job staged_tuning) is left out: the demo's stages hold too few studies.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster asset materialize -m cpo_pipeline.definitions --select 'not group:staged'

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The Dagster web UI on http://127.0.0.1:3000
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m cpo_pipeline.definitions

clean-data:
	rm -rf data
