# xcon: every target works on a fresh machine (it installs what it needs first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# REGISTRY=registry.example.com:1234 names the image registry.example.com:1234/vr-xcon.
IMAGE  := $(if $(REGISTRY),$(REGISTRY:%/=%)/,)vr-xcon

.PHONY: install demo test test-fast test-debs test-tools lint bench bench-micro docker clean

# Debian packages, installed when make runs as root on a machine with apt-get (once:
# nothing is fetched when they are all there).  Elsewhere the tests that need one
# skip, naming the package.
#   TEST_DEBS: iproute2 (namespaces, veth, taps), iputils-ping, util-linux (setpriv),
#   procps, qemu-system-x86 (real qemu routers in the end-to-end tests), iperf3 (TCP
#   through links, and through raw and tap ends with the kernel's offloads on),
#   tcpdump and tshark (captures read back), libpcap0.8 (capture filters: BPF compiler),
#   tmux (xcon ctl top drawn in a real terminal), bird2 (OSPF and BFD between real
#   qemu routers: tests/root/test_routing.py).
#   BUILD_DEBS: the compiler for the native fast path.
BUILD_DEBS := gcc libc6-dev
TEST_DEBS  := iproute2 procps iputils-ping util-linux qemu-system-x86 iperf3 tcpdump tshark libpcap0.8 linux-image-amd64 busybox-static cpio tmux bird2
BENCH_DEBS := socat iperf3 qemu-system-x86 iputils-ping iproute2 gcc
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(1) >/dev/null 2>&1 || { echo "installing Debian packages: $(1)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $(1) >/dev/null; }; \
	else echo "not root or no apt-get: not installing $(1) (what needs them skips and says why)"; fi
endef

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.py)
	$(call apt_install,$(BUILD_DEBS))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,uvloop]'
	$(PY) native/build_native.py
	$(PY) -c "import xcon.native as n; print('xcon fast path:', n.BACKEND)"
	touch $(STAMP)

demo: install
	$(PY) -m xcon demo

# bird2's package enables and starts a system BIRD; the routing tests run their own
# inside their namespaces, so one that test-debs installs is stopped and disabled
# (a BIRD that was there before is left alone).
BIRD_WAS := $(shell dpkg -s bird2 >/dev/null 2>&1 && echo yes)

test-debs:
	$(call apt_install,$(TEST_DEBS))
	@if [ -z "$(BIRD_WAS)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && dpkg -s bird2 >/dev/null 2>&1; then \
	  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	    systemctl disable --now bird >/dev/null 2>&1; \
	  else service bird stop >/dev/null 2>&1; update-rc.d bird disable >/dev/null 2>&1; fi; \
	  echo "bird2 installed for the routing tests: its system service is stopped and disabled"; \
	fi

# promtool (`promtool check metrics` in the metrics test) from Debian's prometheus
# package, unpacked into the venv rather than installed: installing the package
# would also set up and enable a Prometheus server.
PROMTOOL := $(VENV)/bin/promtool
test-tools: install
	@if [ ! -x $(PROMTOOL) ] && command -v apt-get >/dev/null; then \
	  d=$$(mktemp -d) && chmod 755 $$d && cd $$d && \
	  { apt-get download -qq prometheus 2>/dev/null || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb x && install -m 755 x/usr/bin/promtool $(CURDIR)/$(PROMTOOL) && \
	  echo "promtool from Debian's prometheus package: $(PROMTOOL)"; \
	  cd $(CURDIR); rm -rf "$$d"; \
	fi; [ -x $(PROMTOOL) ] || echo "no promtool: the metrics test that runs it skips and says why"

# The whole suite on the native fast path (XCON_NATIVE=1: a missing or stale
# compiled module fails instead of silently testing the fallback), then the
# unit and integration tests again on the pure-Python fallback.  Property tests
# run their full example counts here (hypothesis profile `thorough`); a plain
# pytest run takes a quarter of them.
THOROUGH := --hypothesis-profile=thorough
test: test-debs install test-tools
	XCON_NATIVE=1 $(PY) -m pytest -q $(THOROUGH) $(PYTEST_ARGS)
	XCON_NATIVE=0 $(PY) -m pytest -q -p no:randomly $(THOROUGH) $(PYTEST_ARGS) tests/unit tests/integration

# The run for every change (under a minute): tests/unit, then a smoke set of the
# integration tests (p2p, hub, VLAN, the control API) on the epoll engine, all
# on the native fast path.
SMOKE := $(addprefix tests/integration/,test_p2p.py test_hub.py test_vlan.py test_control.py)
test-fast: install
	XCON_NATIVE=1 $(PY) -m pytest -q $(PYTEST_ARGS) tests/unit $(SMOKE) -k "not uvloop or test_engines"

lint: install
	$(PY) -m ruff check xcon tests bench native
	$(PY) -m ruff format --check xcon tests bench native
	$(PY) -m mypy

# The baselines and the real-qemu scenario need Debian packages (installed when root).
bench: install
	$(call apt_install,$(BENCH_DEBS))
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
