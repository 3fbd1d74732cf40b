#!/bin/sh
# Make a Debian bookworm Python base image without an image registry:
# debootstrap from this host's apt mirror, the host's CA certificates added (so
# pip and apt work behind the host's TLS setup), then `docker import`.
#
#   docker/make-base.sh [IMAGE]        (default xcon-base:bookworm; FORCE=1 remakes it)
#   make docker PYTHON_IMAGE=xcon-base:bookworm
#
# The result has what the Dockerfile expects of a Python base: python3 with pip
# and venv, apt, ca-certificates.  Needs root, debootstrap and a running docker.
set -eu

IMAGE=${1:-xcon-base:bookworm}
SUITE=${SUITE:-bookworm}
DOCKER=${DOCKER:-docker}

if [ "${FORCE:-0}" != 1 ] && $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "make-base: $IMAGE exists (FORCE=1 remakes it)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make-base: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || {
  echo "make-base: debootstrap not found (Debian package debootstrap)" >&2; exit 1; }

# The first URI of the host's apt source for SUITE (deb822 .sources or one-line .list),
# and the one for SUITE-security; deb.debian.org when the host has none.
source_uri() { # $1: suite
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$1" '
      /^[[:space:]]*$/ { if (ok && uri) { print uri; exit } ok = 0; uri = ""; next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (ok && uri) print uri }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$1" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == suite) print $i; break } }' "$f"
  done
}
MIRROR=${MIRROR:-$(source_uri "$SUITE" | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-$(source_uri "$SUITE-security" | head -n1)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

root=$(mktemp -d /tmp/xcon-base.XXXXXX)
chmod 755 "$root" # the target's /: apt's _apt user must traverse it
cleanup() {
  for m in proc sys dev; do umount "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"; rm -f "$root.log"
}
trap cleanup EXIT INT TERM

echo "make-base: debootstrap $SUITE from $MIRROR into $root"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -f "$root/etc/apt/sources.list"

# The host's CA bundle (it may hold a TLS proxy's CA): kept by update-ca-certificates.
if [ -s "$CA_BUNDLE" ]; then
  cp "$CA_BUNDLE" "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
fi
# Like docker's Debian images: no recommends, no documentation, no package caches.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
mount -t proc proc "$root/proc"
chroot "$root" /bin/sh -ec '
  export DEBIAN_FRONTEND=noninteractive
  update-ca-certificates
  apt-get -o Dpkg::Use-Pty=0 update -qq
  apt-get -o Dpkg::Use-Pty=0 -y -qq upgrade
  apt-get clean
  rm -rf /var/lib/apt/lists/* /usr/share/doc/*/changelog* /usr/share/man/* /usr/share/info/* /var/log/*.log
' >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
umount "$root/proc"
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

echo "make-base: docker import as $IMAGE"
tar -C "$root" --numeric-owner -c . | $DOCKER import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap $SUITE from $MIRROR, python3, host CA certificates" \
  - "$IMAGE" >/dev/null
$DOCKER run --rm --network none "$IMAGE" python3 -c 'import sys, venv, ensurepip; print("make-base:", sys.version.split()[0])'
$DOCKER image ls "$IMAGE"
