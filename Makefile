# Everything sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup test test-fast demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# the CPU build of torch first: an unpinned torch would pull several GB of CUDA packages
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[all]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# the whole suite: fast offline tests on a tiny random BERT, then the `real` ones (packaged MiniLM, ../shared/data)
test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -m "not real"

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/polytask demo

clean:
	rm -rf $(VENV) runs build *.egg-info
