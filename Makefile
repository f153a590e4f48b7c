# Two commands do all set-up on a fresh clone:  `make run`  and  `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Telemetry off, project-local state (see docs/stack.md).
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 60
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# The raw data's local mirror is params.yaml `data.mirror` (../shared/data, used where it exists, else
# the official download); TRLS_DATA_MIRROR=/path (empty: download) overrides it for one run.
MIRROR := $(if $(TRLS_DATA_MIRROR),$(TRLS_DATA_MIRROR),$(abspath $(CURDIR)/../shared/data))

.PHONY: help setup run pipeline run-bare ui serve test test-fast lint format bench bench-orchestration bench-cinc2017 bench-cinc-record bench-transfer faults floors compare study mutation bench-scale-out prefect-server prefect-deploy prefect-worker clean-venv

$(BIN)/.installed: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned in the same install as everything else (docs/stack.md)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# every target with its `## ` line (a test checks that none lacks one)
help: ## list the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z][a-zA-Z0-9_-]*:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(BIN)/.installed ## create .venv and install the pinned stack (once; every target depends on it)

# The main job, as a Prefect flow (ephemeral API) with MLflow tracking (sqlite
# ./mlflow.db, artifacts ./mlartifacts): dvc repro -> BYOL/TFRNN pretraining ->
# evaluation units (mapped tasks) -> reports -> model registry (challenger/champion).
run: setup ## the main job: trls pipeline (dvc repro -> pretrain -> evaluate -> registry), Prefect + MLflow
	$(BIN)/trls pipeline

pipeline: run ## same as make run

# The same work without Prefect/MLflow: the CLI steps one after another.
run-bare: setup ## the same work without Prefect/MLflow: dvc repro, trls pretrain, trls evaluate
	$(BIN)/dvc repro
	$(BIN)/trls pretrain
	$(BIN)/trls evaluate

# MLflow UI on the same store: http://127.0.0.1:5000
ui: setup ## MLflow UI on http://127.0.0.1:5000 against ./mlflow.db
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

# A registered encoder as a REST endpoint (raw windows (B, C, L) in, embeddings out), e.g.
# curl -H 'Content-Type: application/json' -d '{"inputs": [[[...178 samples...]]]}' http://127.0.0.1:5001/invocations
# `mlflow models serve` starts `uvicorn` by name: .venv/bin is on PATH above (docs/stack.md).
MODEL ?= models:/trls-$(if $(DATASET),$(DATASET),epilepsy)-encoder@champion
PORT ?= 5001
serve: setup ## a registered model as a REST API on http://127.0.0.1:5001 (MODEL=models:/<name>@<alias>, PORT=)
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
	  $(BIN)/mlflow models serve -m "$(MODEL)" --env-manager local -h 127.0.0.1 -p $(PORT) -w 1

test: setup ## the whole test suite (<= 10 min on 2 cores)
	$(BIN)/python -m pytest -q

# ruff lint + format check (settings in pyproject.toml); `make format` applies the formatter
lint: setup ## ruff lint + format check (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## apply ruff's fixes and formatter
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# scale tests start services past one process (Dask cluster, Prefect server + worker, ...); all are also slow
test-fast: setup ## the tests not marked slow or scale
	$(BIN)/python -m pytest -q -m "not slow and not scale"

bench: setup ## spectrogram, encoder and TS2Vec-crop micro-benchmarks
	$(BIN)/python bench/bench_spectrogram.py
	$(BIN)/python bench/bench_encoder.py
	$(BIN)/python bench/bench_ts2vec_crop.py

# Prefect + MLflow overhead vs bare calls, full small-profile run each (~20 min on 2 cores)
bench-orchestration: setup ## Prefect + MLflow overhead vs bare calls (~20 min)
	$(BIN)/dvc repro
	$(BIN)/python bench/bench_orchestration.py

# Baselines through one protocol (compare.methods and compare.settings in params.yaml)
# -> reports/<dataset>/comparison.{md,csv,png}; ablations: make compare METHODS="trls trls_cnn ...";
# another dataset: make compare DATASET=cinc2017
compare: setup ## baselines/ablations through one protocol -> reports/<ds>/comparison.* (METHODS=, DATASET=)
	$(BIN)/dvc repro
	$(BIN)/trls compare $(foreach m,$(METHODS),--method $(m)) $(if $(DATASET),--dataset $(DATASET))

# A validation study (experiments/<name>.yaml): its variants pretrained and scored on held-out
# validation -> reports/studies/<name>.{csv,md}, one MLflow parent run with a child per variant;
# e.g. make study STUDY=experiments/epilepsy_epochs.yaml  (trls study ... --dry-run lists the variants)
study: setup ## a validation study: make study STUDY=experiments/<name>.yaml
	@test -n "$(STUDY)" || { echo "usage: make study STUDY=experiments/<name>.yaml"; exit 2; }
	$(BIN)/dvc repro
	$(BIN)/trls study $(STUDY)

# Full-size CinC 2017 data stages from the mirror, each stage under /usr/bin/time -v
# (target: <= 3 min, <= 3 GB peak on 2 cores) -> bench/results/cinc2017.json
bench-cinc2017: setup ## full-size CinC 2017 data stages from the mirror, timed
	$(BIN)/python bench/bench_cinc2017.py --mirror $(MIRROR)

# CinC 2017 at record level (profile cinc_record): floors on the evaluation's record splits
# (majority, RR-interval features + gradient boosting) -> reports/cinc2017/floors.json
floors: setup ## CinC 2017 record-level floors (majority, RR features + GBM)
	$(BIN)/dvc repro spectrogram@cinc2017
	$(BIN)/trls floors --profile cinc_record --set "evaluate.seeds=[0, 1, 2]"

# TRLS over 3 pretraining seeds against the floors (~20 min per seed on 2 cores)
# -> docs/results/cinc2017-record.{json,png}
bench-cinc-record: setup ## TRLS on CinC 2017 at record level over 3 seeds (~20 min per seed)
	$(BIN)/dvc repro spectrogram@cinc2017
	$(BIN)/python bench/cinc_record.py --seeds 0 1 2

# The CinC encoders (bench-cinc-record first) probed on UCR ECG200 -> docs/results/transfer-ecg200.{json,png}
bench-transfer: setup ## the CinC encoders probed on UCR ECG200
	$(BIN)/python bench/transfer_ecg200.py --seeds 0 1 2

# The fault suite (docs/reliability.md "Fault suite"): fuzzed inputs of every reader, kill -9 of real trls
# processes at many points + rerun, disk full on a tmpfs, a locked MLflow store, two runs on one root,
# 8 concurrent promotions x 20 -> bench/results/faults.json (<= 20 min on 2 cores; tmpfs needs root)
faults: setup ## the fault suite: fuzzing + injected faults and reruns -> bench/results/faults.json (~15 min)
	$(BIN)/python bench/faults/run.py

# Mutation testing of the method's core (BYOL loss/EMA, tau and lr schedules, STFT + normaliser,
# windows/splits/label fractions, metrics, record pooling, the promotion rule): bench/mutation.py puts
# one AST mutant at a time into a temp copy and runs the unit tests mapped to its module
# -> bench/results/mutation.json (score, survivors and why each is accepted; docs/reliability.md)
mutation: setup ## mutation testing of the method's core -> bench/results/mutation.json (~10 min, 2 cores)
	nice -n 15 $(BIN)/python bench/mutation.py

# Evaluation units on 1 vs 2 Dask worker processes (evaluate.runner: dask), the same units each run
# -> bench/results/scale_out.json key "dask" (~10 min on 2 cores; needs the built data and encoder: make run)
bench-scale-out: setup ## evaluation units on 1 vs 2 Dask workers -> bench/results/scale_out.json (dask)
	$(BIN)/python bench/bench_scale_out.py

# Prefect beyond the ephemeral API (prefect.yaml; docs/usage.md "A Prefect server and a worker"): a server,
# the pipeline deployment on a process work pool, a worker. Each in its own shell; PREFECT_PORT= for another port.
PREFECT_PORT ?= 4200
PREFECT_URL = $${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api}
prefect-server: setup ## a Prefect server (API + UI) on http://127.0.0.1:4200, state in .prefect/ (keeps running)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

prefect-deploy: setup ## the process work pool trls-process + the pipeline deployment of prefect.yaml on that server
	PREFECT_API_URL=$(PREFECT_URL) $(BIN)/prefect work-pool inspect trls-process >/dev/null 2>&1 || \
	  PREFECT_API_URL=$(PREFECT_URL) $(BIN)/prefect work-pool create trls-process --type process
	PREFECT_API_URL=$(PREFECT_URL) $(BIN)/prefect --no-prompt deploy --name trls-pipeline

prefect-worker: setup ## a worker of the trls-process pool: runs the deployment's flow runs here (keeps running)
	PREFECT_API_URL=$(PREFECT_URL) $(BIN)/prefect worker start --pool trls-process

clean-venv: ## remove .venv
	rm -rf $(VENV)
