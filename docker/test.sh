#!/bin/sh
# `make test-docker`: build the vr-xcon image and run it (tests/docker, marker `docker`).
#
# As root with apt-get, installs what is missing (docker.io, debootstrap, qemu).
# Starts dockerd if no daemon answers (--iptables=false --bridge=none: the host's
# firewall and interfaces are left alone) and stops it again at the end.  Builds
# on PYTHON_IMAGE if given, else on python:3.11-slim-bookworm if it is here or
# can be pulled, else on a Debian-made base (docker/make-base.sh, made once and
# kept).  Where no container engine can be started, says why and skips (exit 0).
#
# Environment: PY (the venv's python), IMAGE (tag to build, default vr-xcon),
# PYTHON_IMAGE, BASE_IMAGE (default xcon-base:bookworm), PYTEST_ARGS.
set -eu
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
IMAGE=${IMAGE:-vr-xcon}
BASE_IMAGE=${BASE_IMAGE:-xcon-base:bookworm}
OFFICIAL=python:3.11-slim-bookworm
DEBS="docker.io debootstrap qemu-system-x86 iproute2 iputils-ping"

skip() {
  echo "SKIPPED docker tests: $*"
  exit 0
}
now() { date +%s; }
t0=$(now)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # shellcheck disable=SC2086
  if ! dpkg -s $DEBS >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $DEBS >/dev/null
  fi
fi
command -v docker >/dev/null || skip "no docker command (Debian package docker.io)"

started=""
stop_dockerd() {
  if [ -n "$started" ] && kill -0 "$started" 2>/dev/null; then
    kill "$started"
    i=0
    while kill -0 "$started" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  fi
}
trap stop_dockerd EXIT
trap 'exit 130' INT TERM

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "no docker daemon answers and starting one needs root"
  command -v dockerd >/dev/null || skip "no docker daemon answers and there is no dockerd"
  log=${DOCKERD_LOG:-/var/log/xcon-dockerd.log}
  dockerd --iptables=false --bridge=none >"$log" 2>&1 &
  started=$!
  i=0
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$started" 2>/dev/null || [ $i -ge 300 ]; then
      tail -n 20 "$log" >&2 || true
      started=""
      skip "dockerd could not be started (log: $log)"
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "test-docker: started dockerd (pid $started, log $log)"
fi

if [ -z "${PYTHON_IMAGE:-}" ]; then
  if docker image inspect "$OFFICIAL" >/dev/null 2>&1 || timeout 120 docker pull -q "$OFFICIAL" >/dev/null 2>&1; then
    PYTHON_IMAGE=$OFFICIAL
  else
    echo "test-docker: $OFFICIAL cannot be pulled (no registry): Debian-made base $BASE_IMAGE"
    sh docker/make-base.sh "$BASE_IMAGE"
    PYTHON_IMAGE=$BASE_IMAGE
  fi
fi
t1=$(now)
echo "test-docker: building $IMAGE on $PYTHON_IMAGE"
mkdir -p build
docker build --network host --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" -t "$IMAGE" . >build/docker-build.log 2>&1 || {
  tail -n 40 build/docker-build.log >&2
  echo "test-docker: docker build failed (whole log: build/docker-build.log)" >&2
  exit 1
}
t2=$(now)
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "test-docker: $IMAGE built in $((t2 - t1)) s on $PYTHON_IMAGE, $((size / 1000000)) MB ($size bytes)"

# shellcheck disable=SC2086
XCON_DOCKER_IMAGE=$IMAGE "$PY" -m pytest -q -rs -m docker -p no:randomly tests/docker ${PYTEST_ARGS:-}
echo "test-docker: done in $(($(now) - t0)) s"
