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

.PHONY: train tune bench demo static test test-keras2 test-backends test-fast lint format clean browser fonts node

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

# Debian packages a target needs, installed with apt when one is missing: as root, through sudo
# otherwise, or a one-line instruction when neither can. $(1): the packages, $(2): what for.
define apt_install
if [ "$$(id -u)" = 0 ]; then SUDO=; \
elif command -v sudo > /dev/null && sudo -n true 2> /dev/null; then SUDO=sudo; \
else echo "error: $(2) needs $(1): run 'sudo apt-get install $(1)' (Debian) and retry" >&2; exit 2; fi; \
$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(1) > /dev/null
endef

# The demo's browser test drives Debian's Chromium (browsers cannot be downloaded here).
export CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { $(call apt_install,chromium,the browser test); }

# The wild benchmark prints digits in Debian's font faces (scripts/wild_bench.py, mnist_keras/wild.py).
FONT_PACKAGES := fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35
fonts:
	@dpkg-query -W -f='$${Status}\n' $(FONT_PACKAGES) 2> /dev/null | grep -c '^install ok installed$$' | grep -qx $(words $(FONT_PACKAGES)) || { \
	  $(call apt_install,$(FONT_PACKAGES),the wild benchmark); }

# The static page's browser runtime (ONNX Runtime Web), pinned by web/package-lock.json: npm is
# used for nothing else. npm ci installs exactly the lockfile's versions; no install scripts run.
WEB_RUNTIME := web/node_modules/.installed
node:
	@command -v npm > /dev/null || { $(call apt_install,nodejs npm,the static page); }

$(WEB_RUNTIME): web/package.json web/package-lock.json | node
	npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The demo as a static folder (artifacts/static/) from the newest export: python -m http.server
# -d artifacts/static serves it, as would any static host.
static: $(VENV)/.installed $(WEB_RUNTIME)
	$(VENV)/bin/python -m mnist_keras.demo --static artifacts/static $(ARGS)

test: $(VENV)/.installed browser fonts $(WEB_RUNTIME)
	$(VENV)/bin/python -m pytest $(XDIST) -m 'not backends' $(PYTEST_ARGS)

test-keras2: $(VENV2)/.installed browser fonts $(WEB_RUNTIME)
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
	rm -rf $(VENV) $(VENV2) web/node_modules .pytest_cache .ruff_cache
