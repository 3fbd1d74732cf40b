# vr-xcon image with xcon: a drop-in for vrnetlab's vr-xcon (same entrypoints, same flags).
#
#   docker build -t vr-xcon .
#   docker run -d --privileged --name vr-xcon --link vr1 --link vr2 vr-xcon --p2p vr1/1--vr2/1
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: the xcon wheel with its compiled fast path (xcon._native), plus the
# wheels of its runtime dependencies (cffi, pyroute2, uvloop for --engine uvloop), so
# the runtime stage installs offline.
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY native/ native/
COPY xcon/ xcon/
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[uvloop]'

# Runtime stage: no compiler; the same tools as upstream's image.
FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping tcpdump \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'xcon[uvloop]' \
 && rm -rf /wheels
COPY docker/xcon.py /xcon.py
COPY docker/xcon.py /xcon
RUN chmod 755 /xcon.py /xcon \
 && /xcon.py --version | grep -q 'fast path: native' \
 && /xcon --version
ENV PYTHONUNBUFFERED=1
# The default health file is ./health, so /health, which the health check reads:
# first line 0 healthy, 1 not, then a message (shown by docker inspect).
WORKDIR /
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/bin/sh", "-c", "cat /health && read -r code < /health && exit \"$code\""]
ENTRYPOINT ["/xcon.py"]
