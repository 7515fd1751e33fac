# Set-up and common tasks. `make run` and `make test` each install what they
# need into a virtual environment in .venv first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := pyproject.toml setup.py $(wildcard nnfast/*.pyx csrc/*.c csrc/*.h)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: run test test-boundscheck data install bench clean

$(VENV)/.installed: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel "Cython>=3" numpy
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	$(PY) -m compileall -q nnfast
	touch $@

install: $(VENV)/.installed

# Debian's dataset-fashion-mnist package; without apt, the loader downloads
# the files instead.
data:
	@if [ ! -d $(FASHION_MNIST) ] && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q dataset-fashion-mnist \
		|| { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; } \
		|| echo "apt-get failed; the loader will download Fashion-MNIST instead"; \
	fi

run: install data
	$(PY) examples/fashion_mnist.py

test: install
	$(PY) -m pytest -q tests

# The whole suite once more against a build with Cython's bounds and
# wraparound checks on, made in a scratch copy so the normal build stays.
# No -j: every extension compiles the same csrc/*.c files to the same object
# paths, and parallel jobs can overwrite each other's objects.
test-boundscheck: install
	@scratch=$$(mktemp -d) && \
	tar --exclude=./.venv --exclude=./build --exclude='./nnfast/*.so' \
		--exclude='./nnfast/_*.c' -cf - . \
		| tar -xf - -C $$scratch && \
	cd $$scratch && \
	NNFAST_BOUNDSCHECK=1 $(abspath $(PY)) setup.py -q build_ext --inplace && \
	$(abspath $(PY)) -m pytest -q -p no:cacheprovider tests; \
	status=$$?; rm -rf $$scratch; exit $$status

bench: install
	$(PY) -m pip install -q --no-build-isolation -e ".[bench]"
	$(PY) benchmarks/train.py

clean:
	rm -rf build dist *.egg-info nnfast/*.so nnfast/_*.c $(VENV)
