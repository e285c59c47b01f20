# The two commands of the README: `make up` and `make test`. Both install what they need first
# (Debian packages, Python packages into .venv, npm packages), idempotently.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
AF := $(VENV)/bin/af
STAMP := $(VENV)/.installed

.PHONY: up down status test install install-system lint format clean bench images test-images

up: install
	$(AF) up

down:
	$(AF) down

status:
	$(AF) status

install: $(STAMP)

# images/requirements.lock constrains the host too: hub, notebook and Dask workers run the same versions.
$(STAMP): pyproject.toml package.json images/requirements.lock $(wildcard scripts/install.d/*.sh scripts/lib/*.sh) scripts/base-python.sh scripts/make-venv.sh $(wildcard extensions/*/src/*.ts extensions/*/af_dask_lab/*.py)
	bash scripts/install-system.sh
	bash scripts/make-venv.sh $(VENV)  # from a Python every facility account may run (not one under /root)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[analysis,test]' -c images/requirements.lock
	bash scripts/install.d/60-lab-extension.sh  # needs the venv's JupyterLab
	touch $(STAMP)

test:  # installs first (scripts/run-tests.sh times each phase)
	bash scripts/run-tests.sh

# Measurements (minutes; not part of `make test`): results in benchmarks/results/. Installs what only
# the benchmarks need first (scripts/bench-install.d: toxiproxy for the shaped link).
bench: install
	set -e; for step in scripts/bench-install.d/*.sh; do bash "$$step"; done
	$(PY) -m benchmarks.data_path
	$(PY) -m benchmarks.dask_efficiency
	$(PY) -m benchmarks.xcache_sweep
	$(PY) -m benchmarks.uproot_reads

# The notebook and Dask-worker images (not part of `make up`): built with buildah from a debootstrap
# base, cached under ~/.cache/analysis-facility/images ($AF_IMAGES_CACHE) and rebuilt only when the
# lock, the Containerfile or the files it copies change; published unpacked CVMFS-style there.
images: install
	set -e; for step in scripts/images-install.d/*.sh; do bash "$$step"; done
	$(PY) -m images.build

# The image tests (tests/test_image_*.py, then the notebook image as a pod on a real kubelet in
# tests/test_kube_notebook_pod.py; pytest marker `images`): not part of `make test`,
# whose 45-minute budget a cold build (about 8.5 min) would break on a fresh machine.
test-images: images
	$(PY) -m pytest -n0 -m images tests/test_image_build.py tests/test_image_slurm.py tests/test_image_htcondor.py tests/test_kube_notebook_pod.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	-$(AF) down
	rm -rf $(VENV) node_modules
