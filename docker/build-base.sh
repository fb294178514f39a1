#!/bin/sh
# build-base.sh: make a Debian bookworm base image with Python 3.11, from Debian's packages only,
# for hosts that reach a Debian mirror and PyPI but no image registry (air-gapped HPC,
# enterprise networks). Both docker/Dockerfile and docker/Dockerfile.postgres build FROM it:
#
#   sudo docker/build-base.sh                          # -> image growsearch-base:bookworm
#   sudo CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt docker/build-base.sh   # behind a TLS proxy
#   docker build -f docker/Dockerfile --network host \
#       --build-arg BASE_IMAGE=growsearch-base:bookworm -t growsearch:latest .
#
# Environment (all optional):
#   BASE_IMAGE   name to import the base under (default growsearch-base:bookworm)
#   MIRROR       Debian mirror (default http://deb.debian.org/debian)
#   CA_BUNDLE    a PEM file of extra CA certificates (e.g. your proxy's, or the host's whole
#                bundle) added to the base's trust store, so pip and apt over https work
#   DOCKER       docker client (default docker)
#
# Needs root (debootstrap chroots), debootstrap and a running Docker engine. Takes a few
# minutes; the image is ~200 MB. Nothing is pulled from an image registry.
set -eu

name=${BASE_IMAGE:-growsearch-base:bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

die() { echo "build-base.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap needs it)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
$docker info >/dev/null 2>&1 || die "no Docker engine reachable (\`$docker info\` failed)"
if [ -n "${CA_BUNDLE:-}" ] && [ ! -r "$CA_BUNDLE" ]; then
  die "CA_BUNDLE=$CA_BUNDLE: no such readable file"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/growsearch-base.XXXXXX")
log="$work.log"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
root="$work/rootfs"

# python3 (3.11 in bookworm), venv for the Dockerfile's virtualenv, python-is-python3 for
# `python`, ca-certificates for pip/https. The Dockerfiles apt-get what else they need.
echo "build-base.sh: debootstrap bookworm from $mirror (log: $log)" >&2
debootstrap --variant=minbase \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  bookworm "$root" "$mirror" >"$log" 2>&1 || die "debootstrap failed; read $log"

if [ -n "${CA_BUNDLE:-}" ]; then
  cp "$CA_BUNDLE" "$root/usr/local/share/ca-certificates/growsearch-extra.crt"
  chroot "$root" update-ca-certificates >>"$log" 2>&1 || die "update-ca-certificates failed; read $log"
fi

# an image wants no package cache, no apt lists (the Dockerfiles run apt-get update) and no logs
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* \
       "$root"/tmp/* "$root"/root/.cache
# apt in a container: never install recommends, keep no downloaded .debs
cat >"$root/etc/apt/apt.conf.d/90growsearch" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Binary::apt::APT::Keep-Downloaded-Packages "false";
EOF

py=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$py" = 3.11 ] || die "expected Python 3.11 in bookworm, found $py"

tar -C "$root" -c . | $docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  --message "growsearch base: debootstrap bookworm minbase + Python $py" \
  - "$name" >>"$log" 2>&1 || die "docker import failed; read $log"
rm -f "$log"
echo "build-base.sh: imported $name (Debian bookworm, Python $py)" >&2
