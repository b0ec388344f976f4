# Fruits! image lakehouse. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ENV ?= local
LAKEHOUSE ?= ./lakehouse
SOURCE ?=
DEMO_DIR ?= ./demo-images
SPARK_ARGS ?=
JOB_ARGS ?=
N ?= 20000

STAMP := $(VENV)/.installed
JARS := .ivy/jars/.fetched

# The spark-submit line of every job: the profile's options (master, memory, Delta jars,
# settings) come from `python -m common.spark --submit-args`, so conf/$(ENV).yaml is the
# one place they are defined; it also reads JOB_ARGS' --set overrides, so that
# JOB_ARGS="--set spark.driver_memory=8g" reaches the JVM, which starts before the job.
# SPARK_ARGS come last and win (e.g. --master spark://...).
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
PROFILE_ARGS = mapfile -t PROFILE < <($(PY) -m common.spark --submit-args --env $(ENV) --lakehouse "$$FRUITS_LAKEHOUSE" $(JOB_ARGS)); [ -n "$${PROFILE[0]:-}" ] || exit 2;
SUBMIT = $(PROFILE_ARGS) $(VENV)/bin/spark-submit "$${PROFILE[@]}" $(SPARK_ARGS)
export SPARK_LOCAL_IP ?= 127.0.0.1
COMMON = --env $(ENV) --lakehouse "$$FRUITS_LAKEHOUSE" $(JOB_ARGS)

.PHONY: help setup run pipeline bronze silver gold pca train predict classify sql sql-shell \
        serve serve-bench classify-bench delta-bench demo test test-quick test-long cluster-test s3-test bench history \
        emr-package clean jvm-archive browser

# Values that reach programs through the environment, never pasted into a shell line
# (recipes quote "$$FRUITS_..."): $(value ...) keeps them as typed, $ and spaces
# included, and no quote in them can end a shell word. JOB_ARGS and SPARK_ARGS are
# flags: they are split into words on purpose.
export FRUITS_SOURCE := $(value SOURCE)
export FRUITS_LAKEHOUSE := $(value LAKEHOUSE)
export FRUITS_DEMO_DIR := $(value DEMO_DIR)
export FRUITS_SQL := $(value Q)
export FRUITS_PHOTOS := $(value PHOTOS)
export FRUITS_HOST := $(value HOST)
export FRUITS_PORT := $(value PORT)

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: $(STAMP) $(JARS) ## create .venv, install, fetch the Delta jars, build the JVM class archive (once; quiet when done)
	@$(PY) -m common.jvm_build

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

$(JARS): $(STAMP)
	@$(PY) -m common.spark --fetch-jars
	@touch $@

run: setup ## the whole pipeline on SOURCE (default: a generated demo image set)
	@if [ -z "$$FRUITS_SOURCE" ]; then $(PY) -m common.demo --out "$$FRUITS_DEMO_DIR"; fi
	$(SUBMIT) common/pipeline.py --source "$${FRUITS_SOURCE:-$$FRUITS_DEMO_DIR}" $(COMMON)

pipeline: setup ## bronze, silver, gold, pca (and predict, once trained) in one Spark application
	@test -n "$$FRUITS_SOURCE" || { echo "error: give SOURCE=DIR (the image root)"; exit 2; }
	$(SUBMIT) common/pipeline.py --source "$$FRUITS_SOURCE" $(COMMON)

bronze: setup ## ingest SOURCE into bronze.images
	$(SUBMIT) bronze/job.py --source "$$FRUITS_SOURCE" $(COMMON)

silver: setup ## labels + 224x224 RGB images into silver.images / silver.rejects
	$(SUBMIT) silver/job.py $(COMMON)

gold: setup ## MobileNetV2 features into gold.image_features + Parquet export
	$(SUBMIT) gold/job.py $(COMMON)

pca: setup ## PCA of the gold features into gold.image_features_pca + report
	$(SUBMIT) gold/pca_job.py $(COMMON)

summary: setup
	@$(SUBMIT) common/sql.py --summary $(COMMON)

train: setup ## train a species classifier on gold (JOB_ARGS="--eval-root DIR" to hold photos out)
	$(SUBMIT) gold/train_job.py $(COMMON)

predict: setup ## the serving classifier's answers for every gold row into gold.predictions
	$(SUBMIT) gold/predict_job.py $(COMMON)

classify: setup ## classify photos without Spark: make classify PHOTOS="a.jpg dir/" (JSON lines)
	@$(PY) -m gold.classify --from-env FRUITS_PHOTOS --env $(ENV) --lakehouse "$$FRUITS_LAKEHOUSE"

serve: setup ## the HTTP service and its page on 127.0.0.1:8000 (HOST=, PORT= to change)
	@$(PY) -m gold.service --env $(ENV) --lakehouse "$$FRUITS_LAKEHOUSE"

serve-bench: setup ## load test of the service (4 clients, bounded): docs/performance.md
	$(PY) -m tests.benchmarks.serve_bench --env $(ENV) --lakehouse "$$FRUITS_LAKEHOUSE"

delta-bench: setup ## each private Delta route against the public API, same answers: docs/performance.md
	$(PY) -m tests.benchmarks.delta_routes_bench --env $(ENV) $${FRUITS_LAKEHOUSE:+--lakehouse "$$FRUITS_LAKEHOUSE"}

classify-bench: setup ## train time, classify photos/s, accuracy and unknown rates: docs/performance.md
	$(PY) -m tests.benchmarks.classify_bench --env $(ENV) --lakehouse "$$FRUITS_LAKEHOUSE" $(if $(TRAIN),--train)

sql: setup ## run one query in a new process: make sql Q="SELECT ..."
	@test -n "$$FRUITS_SQL" || { echo 'error: give Q="SELECT ..."'; exit 2; }
	@$(SUBMIT) common/sql.py $(COMMON) -- "$$FRUITS_SQL"

sql-shell: setup ## interactive spark-sql shell with the lakehouse tables registered
	@$(PY) -m common.sql --write-init $(COMMON) > /dev/null
	$(PROFILE_ARGS) $(VENV)/bin/spark-sql "$${PROFILE[@]}" \
	  --conf spark.sql.catalogImplementation=hive \
	  --conf spark.hadoop.javax.jdo.option.ConnectionURL='jdbc:derby:memory:metastore;create=true' \
	  -i "$$FRUITS_LAKEHOUSE/_catalog/register.sql" $(SQL_ARGS)

jvm-archive: $(STAMP) $(JARS) ## rebuild the JVM class archive that speeds up every job's start (common/jvm_build.py)
	$(PY) -m common.jvm_build --force

demo: setup ## (re)generate the demo image set in DEMO_DIR
	$(PY) -m common.demo --out "$$FRUITS_DEMO_DIR"

browser: ## Debian's Chromium and ChromeDriver for the page's test (apt-get, as root; once)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and chromium-driver (apt-get) for the page's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "warning: no chromium/chromedriver and not root: install them to run the page's browser test"; fi; }

test: setup browser ## the test suite (all but the long-marked tests)
	$(PY) -m pytest -m "not long" $(PYTEST_ARGS)

test-quick: setup ## the fast tests only (seconds to a few minutes)
	$(PY) -m pytest -m "not slow and not long" $(PYTEST_ARGS)

test-long: setup ## the long tests: kills, concurrency, out of memory, cluster, S3
	$(PY) -m pytest -m long $(PYTEST_ARGS)

cluster-test: setup ## bronze/silver/gold on a standalone master + 2 workers (127.0.0.1)
	$(PY) -m pytest tests/cluster/test_standalone.py -m long $(PYTEST_ARGS)

s3-test: setup ## every layer on a local S3 server (moto, 127.0.0.1) vs a local run
	$(PY) -m pytest tests/cluster/test_s3.py -m long $(PYTEST_ARGS)

bench: setup ## benchmarks: the pipeline on N images (SOURCE= your own), silver on 12 MP photos, train + classify
	$(PY) -m tests.benchmarks.bench --n $(N) $${FRUITS_SOURCE:+--source "$$FRUITS_SOURCE"} --env $(ENV)
	$(PY) -m tests.benchmarks.classify_bench --build --train --env $(ENV) --lakehouse bench-data/lakehouse-classify

history: setup ## Spark History Server on the lakehouse's event logs
	@mkdir -p "$$FRUITS_LAKEHOUSE/_spark_events"
	@echo "Spark History Server: http://127.0.0.1:18080  (event logs: $$(realpath "$$FRUITS_LAKEHOUSE")/_spark_events; Ctrl-C stops it)"
	SPARK_HISTORY_OPTS="-Dspark.history.fs.logDirectory=file:$$(realpath "$$FRUITS_LAKEHOUSE")/_spark_events -Dspark.history.ui.port=18080" \
	  $(VENV)/bin/spark-class org.apache.spark.deploy.history.HistoryServer

emr-package: setup ## build dist/emr: wheel, job scripts, profiles, bootstrap, requirements
	rm -rf dist/emr && mkdir -p dist/emr/wheel dist/emr/jobs dist/emr/conf
	$(PY) -m pip wheel -q --no-deps --disable-pip-version-check -w dist/emr/wheel .
	cp bronze/job.py dist/emr/jobs/bronze_job.py
	cp silver/job.py dist/emr/jobs/silver_job.py
	cp gold/job.py dist/emr/jobs/gold_job.py
	cp gold/pca_job.py dist/emr/jobs/pca_job.py
	cp conf/*.yaml dist/emr/conf/
	cp conf/emr/bootstrap.sh conf/emr/configurations.json conf/emr/steps.json dist/emr/
	$(PY) conf/emr/requirements.py > dist/emr/requirements-emr.txt
	@echo "upload: aws s3 cp --recursive dist/emr s3://BUCKET/artifacts/  (see README, 'On AWS EMR')"

clean: ## remove the local lakehouse and demo images (not .venv)
	rm -rf -- "$$FRUITS_LAKEHOUSE" "$$FRUITS_DEMO_DIR"
