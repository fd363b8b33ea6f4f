# Two commands for a fresh machine (Python 3.11+ and make): `make repro` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands call `python`: the venv's, whether or not it is activated.
export PATH := $(BIN):$(PATH)

# Run from another copy of the archive: make repro DATA_URL=<url or path> DATA_MD5=<md5>
DATA_URL ?=
DATA_MD5 ?=
# A relative path becomes absolute, so it also resolves inside `dvc exp` workspaces.
data_url = $(if $(findstring ://,$(DATA_URL)),$(DATA_URL),$(abspath $(DATA_URL)))

.PHONY: venv repro test test-quick ui lint bench clean-venv server server-stop server-status \
        server-add-user plots optuna-dashboard

# Says what it installs: the first time takes minutes (about 160 packages, 1 GB).
$(STAMP): pyproject.toml requirements.lock
	@echo "make venv: $(VENV) with $$($(PYTHON) --version 2>&1)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@echo "make venv: installing cifarlab and its pinned dependencies (requirements.lock):" \
	  "numpy, numba, pandas, scikit-learn, matplotlib, dvc, mlflow, jinja2, vl-convert, pytest," \
	  "playwright … (a few minutes the first time)"
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@echo "make venv: done ($$($(VENV)/bin/python -m pip list 2>/dev/null | tail -n +3 | wc -l) packages)"
	touch $@

venv: $(STAMP)

repro: $(STAMP)
ifeq ($(DATA_URL),)
	dvc repro
else
	@test -n "$(DATA_MD5)" || { echo "make repro: DATA_URL needs DATA_MD5 (the archive's md5)" >&2; exit 2; }
	dvc exp run -S 'data.url=$(data_url)' -S 'data.md5=$(DATA_MD5)'
endif

# The full suite (CI runs it): unit tests, then `dvc repro` end to end in project copies.
test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The contributors' inner loop: the unit tests alone, no `dvc repro` runs (under 2 minutes).
test-quick: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not e2e"

# DVC's plots as one page that renders offline: dvc_plots/index.html. EXP=<experiment or rev>
# overlays the workspace and it (`dvc plots diff`); EXP="a b" compares those two revisions.
PLOTS_PAGE := .dvc/tmp/plots_offline.html
EXP ?=

$(PLOTS_PAGE): .dvc/plots/offline.html scripts/offline_plots_template.py $(STAMP)
	$(VENV)/bin/python scripts/offline_plots_template.py $< $@

plots: $(PLOTS_PAGE)
	rm -rf dvc_plots  # DVC leaves the images of earlier revisions there
ifeq ($(EXP),)
	dvc plots show --html-template $(PLOTS_PAGE) -o dvc_plots
else
	dvc plots diff $(EXP) --html-template $(PLOTS_PAGE) -o dvc_plots
endif

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The MLflow UI on the project's store: prints the runs page (saved view "cifarlab: compare":
# test accuracies, key params, DVC experiment, pipeline run as columns) and opens it in a browser
# when there is one. Another port: make ui UI_PORT=5001
UI_PORT ?= 5000
ui: $(STAMP)
	$(VENV)/bin/python -m cifarlab.tracking.dashboard --host 127.0.0.1 --port $(UI_PORT)

# optuna-dashboard on the searches' study storage (CIFARLAB_STUDY_STORAGE, default optuna.db here):
# every svm_tune study, its trials, intermediate values and pruning, beside the MLflow UI.
OPTUNA_PORT ?= 8080
optuna-dashboard: $(STAMP)
	@url=$$($(VENV)/bin/python -c 'from cifarlab.tuning.storage import storage_url; print(storage_url())'); \
	  echo "optuna-dashboard: $$url on http://127.0.0.1:$(OPTUNA_PORT)"; \
	  $(VENV)/bin/optuna-dashboard --host 127.0.0.1 --port $(OPTUNA_PORT) "$$url"

# The team's MLflow tracking server (PostgreSQL + served artifacts) on 127.0.0.1:5000.
# Settings: scripts/tracking-server.sh; then export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
server: $(STAMP)
	scripts/tracking-server.sh start

server-stop:
	scripts/tracking-server.sh stop

server-status:
	scripts/tracking-server.sh status

# A teammate's account on the server started with CIFARLAB_SERVER_AUTH=1, added as its admin:
# make server-add-user NAME=bob (asks the admin's and bob's passwords, or reads them from
# MLFLOW_AUTH_ADMIN_PASSWORD and CIFARLAB_NEW_USER_PASSWORD; never on a command line).
server-add-user:
	@test -n "$(NAME)" || { echo "make server-add-user: set NAME=<the teammate's user name>" >&2; exit 2; }
	scripts/tracking-server.sh add-user '$(NAME)'

bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[dev,bench]'
	$(VENV)/bin/python benchmarks/knn.py

clean-venv:
	rm -rf $(VENV)
