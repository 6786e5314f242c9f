# `make train` and `make test` set up their virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
VENV2 ?= .venv-keras2
ARGS ?=
PYTEST_ARGS ?=
# The suites run in pytest-xdist workers, one a core (tests/conftest.py gives each worker's
# TensorFlow its share); tests that share a slow fixture stay in one worker. TEST_WORKERS=0 runs
# them in this process.
TEST_WORKERS ?= auto
XDIST = -n $(TEST_WORKERS) --dist loadgroup

# Real MNIST for tests and training, when the shared data folder sits beside this checkout
# (as in CI); an MNIST_KERAS_DATA already set wins.
SHARED_MNIST := $(wildcard ../shared/datasets/mnist)
ifneq ($(SHARED_MNIST),)
export MNIST_KERAS_DATA ?= $(abspath $(SHARED_MNIST))
endif

.PHONY: train tune bench demo test test-keras2 test-backends test-fast lint format clean browser fonts

# The stamp is rebuilt when pyproject.toml changes, so a dependency edit reinstalls.
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,demo,jax,torch]'
	touch $@

# Keras 2: TensorFlow 2.15.1 is the last release that bundles it.
$(VENV2)/.installed: pyproject.toml constraints-keras2.txt
	test -x $(VENV2)/bin/python || $(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/python -m pip install --quiet --upgrade pip
	$(VENV2)/bin/python -m pip install --quiet -c constraints-keras2.txt -e '.[dev,demo]'
	touch $@

train: $(VENV)/.installed
	$(VENV)/bin/python -m mnist_keras.train $(ARGS)

# The virtual environment holds Keras 3's three backends: the tests train on each, and the
# benchmark puts PyTorch eager beside them.
bench: $(VENV)/.installed fonts
	$(VENV)/bin/python -m benchmarks.bench $(ARGS)

tune: $(VENV)/.installed
	$(VENV)/bin/python -m mnist_keras.tune $(ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/python -m mnist_keras.demo $(ARGS)

# The demo's browser test drives Debian's Chromium (browsers cannot be downloaded here): installed
# with apt as root, through sudo otherwise, or a one-line instruction when neither can.
export CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo > /dev/null && sudo -n true 2> /dev/null; then SUDO=sudo; \
	  else echo "error: the browser test needs Chromium: run 'sudo apt-get install chromium' (Debian) and retry" >&2; exit 2; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium > /dev/null; }

# The wild benchmark prints digits in Debian's font faces (scripts/wild_bench.py, mnist_keras/wild.py):
# installed like Chromium above when any package is missing.
FONT_PACKAGES := fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35
fonts:
	@dpkg-query -W -f='$${Status}\n' $(FONT_PACKAGES) 2> /dev/null | grep -c '^install ok installed$$' | grep -qx $(words $(FONT_PACKAGES)) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo > /dev/null && sudo -n true 2> /dev/null; then SUDO=sudo; \
	  else echo "error: the wild benchmark needs fonts: run 'sudo apt-get install $(FONT_PACKAGES)' (Debian) and retry" >&2; exit 2; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(FONT_PACKAGES) > /dev/null; }

test: $(VENV)/.installed browser fonts
	$(VENV)/bin/python -m pytest $(XDIST) -m 'not backends' $(PYTEST_ARGS)

test-keras2: $(VENV2)/.installed browser fonts
	$(VENV2)/bin/python -m pytest $(XDIST) -m 'not backends' $(PYTEST_ARGS)

# Keras 3's JAX and PyTorch backends (tests/test_backends.py): a suite of its own, about 4 minutes.
test-backends: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(XDIST) -m backends $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(XDIST) -m 'not slow and not backends' $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(VENV2) .pytest_cache .ruff_cache
