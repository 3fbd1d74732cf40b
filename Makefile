# xcon: every target works on a fresh machine (it installs what it needs first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# REGISTRY=registry.example.com:1234 names the image registry.example.com:1234/vr-xcon.
IMAGE  := $(if $(REGISTRY),$(REGISTRY:%/=%)/,)vr-xcon

.PHONY: install demo test lint bench bench-micro docker clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.py)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,uvloop]'
	$(PY) native/build_native.py
	$(PY) -c "import xcon.native as n; print('xcon fast path:', n.BACKEND)"
	touch $(STAMP)

demo: install
	$(PY) -m xcon demo

# The whole suite on the native fast path, then again on the pure-Python fallback.
test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)
	XCON_NATIVE=0 $(PY) -m pytest -q -p no:randomly $(PYTEST_ARGS) tests/unit tests/integration

lint: install
	$(PY) -m ruff check xcon tests bench native
	$(PY) -m ruff format --check xcon tests bench native
	$(PY) -m mypy

# The baselines and the real-qemu scenario need Debian packages (installed when root).
BENCH_DEBS := socat iperf3 qemu-system-x86 iputils-ping iproute2 gcc

bench: install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(BENCH_DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEBS) >/dev/null; }; \
	fi
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench

bench-micro: install
	$(PY) -m pytest -q bench/micro --benchmark-storage=file://bench/micro/baseline --benchmark-compare --benchmark-compare-fail=min:50% --benchmark-compare-fail=median:100%

# PYTHON_IMAGE=... builds on another base (see docker-base); --network host: the build
# reaches the apt mirror and PyPI even where dockerd runs without a bridge.
docker:
	docker build --network host $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) -t $(IMAGE) .

clean:
	rm -rf $(VENV) build *.egg-info xcon/_native*.so xcon/_native.c

# The image on a registry-less machine: a Debian bookworm base made with debootstrap
# (BASE_IMAGE, kept once made), then `make docker PYTHON_IMAGE=$(BASE_IMAGE)`.
BASE_IMAGE ?= xcon-base:bookworm
.PHONY: docker-base test-docker
docker-base:
	sh docker/make-base.sh $(BASE_IMAGE)

# Build the image and run it with real qemu routers (tests/docker); see docker/test.sh.
test-docker: install
	PY=$(PY) IMAGE=$(IMAGE) sh docker/test.sh
