# Everything sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup browser test test-fast demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# the CPU build of torch first: an unpinned torch would pull several GB of CUDA packages
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[all]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# the page test (tests/test_page.py) drives Debian's chromium through chromedriver: installed here when missing and
# run as root with apt-get (as CI does); otherwise a message, and that test skips saying what is missing
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (apt) for tests/test_page.py"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else \
		echo "chromium/chromedriver not found and not root with apt-get: tests/test_page.py will skip" \
		     "(install them with: sudo apt-get install chromium chromium-driver)"; \
	fi

# the whole suite: fast offline tests on a tiny random BERT, then the `real` ones (packaged MiniLM, ../shared/data)
test: setup browser
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup browser
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -m "not real"

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/polytask demo

clean:
	rm -rf $(VENV) runs build *.egg-info
