# vr-xcon image with xcon: a drop-in for vrnetlab's vr-xcon (same entrypoints, same flags).
#
#   make docker                                  # FROM python:3.11-slim-bookworm (a registry)
#   make docker-base && make docker PYTHON_IMAGE=xcon-base:bookworm   # no registry
#   docker run -d --name vr-xcon --link vr1 --link vr2 vr-xcon --p2p vr1/1--vr2/1
#
# Any Debian bookworm image with python3 works as PYTHON_IMAGE: the official
# python image (its own Python in /usr/local) or a Debian-made one (Debian's
# python3, see docker/make-base.sh).  xcon lives in a venv, /opt/xcon, made in
# the build stage and copied whole into the runtime stage: no pip runs in the
# runtime stage, so Debian's PEP 668 marker (externally-managed-environment)
# never applies and the base's own Python packages are left alone.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: the xcon wheel with its compiled fast path (xcon._native) and the
# venv /opt/xcon holding it and its pinned runtime dependencies (uvloop included,
# for --engine uvloop).  The compiler, Python's headers (python3-dev, only where
# the base's Python has none, as Debian's python3) and venv support
# (python3-venv, only where missing) stay in this stage.
FROM ${PYTHON_IMAGE} AS build
RUN set -eu; \
    pkgs="gcc libc6-dev"; \
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
      || pkgs="$pkgs python3-dev"; \
    python3 -m venv /tmp/venv-probe >/dev/null 2>&1 || pkgs="$pkgs python3-venv"; \
    rm -rf /tmp/venv-probe; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; \
    rm -rf /var/lib/apt/lists/*
# Every pip below, build isolation included, takes its versions from the pins.
COPY docker/constraints.txt docker/pins.py /opt/pins/
ENV PIP_CONSTRAINT=/opt/pins/constraints.txt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install -q pip \
 && python3 -m venv --without-pip /opt/xcon
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY native/ native/
COPY xcon/ xcon/
RUN /opt/build/bin/pip wheel -q --wheel-dir /wheels '.[uvloop]' \
 && /opt/build/bin/pip --python /opt/xcon/bin/python install -q --no-index --find-links /wheels 'xcon[uvloop]' \
 && /opt/build/bin/pip --python /opt/xcon/bin/python check \
 && /opt/xcon/bin/python /opt/pins/pins.py /opt/pins/constraints.txt

# Runtime stage: no compiler, no pip; the tools users `docker exec` into.
FROM ${PYTHON_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      iproute2 iputils-ping tcpdump >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/xcon /opt/xcon
# PATH spelled out: a base made by `docker import` may set none.
ENV PATH=/opt/xcon/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
COPY docker/xcon.py /xcon.py
COPY docker/xcon.py /xcon
RUN chmod 755 /xcon.py /xcon \
 && /xcon.py --version | grep -q 'fast path: native' \
 && /xcon --version
# The default health file is ./health, so /health, which the health check reads:
# first line 0 healthy, 1 not, then a message (shown by docker inspect).  Same
# verdict and output as vrnetlab's `sed 1d /health; exit $(head -n1 /health)` on
# every file xcon writes; a missing or unreadable file is unhealthy (1), never 2.
WORKDIR /
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/bin/sh", "-c", "sed 1d /health && read -r code < /health && [ \"$code\" = 0 ] || exit 1"]
ENTRYPOINT ["/xcon.py"]
