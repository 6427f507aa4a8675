#!/usr/bin/env bash
# Build the registry image without Docker Hub: a Debian bookworm base (python3 3.11, pip) made
# with mmdebstrap from a Debian mirror and `docker import`ed, then deploy/Dockerfile on it.
# For air-gapped sites and for tests/deploy/test_image_build.py, which runs exactly this.
#
#   deploy/build-local-base.sh BASE_TAG [IMAGE_TAG]
#   deploy/build-local-base.sh --sources      (print the apt sources it would use, and exit)
#
# BASE_TAG   the base image to create (e.g. pyreg-base:bookworm)
# IMAGE_TAG  if given, also `docker build -f deploy/Dockerfile --build-arg BASE_IMAGE=BASE_TAG`
#
# Environment (all optional):
#   PYREG_DEBIAN_MIRROR           a Debian mirror (bookworm, bookworm-updates); default: the
#                                 build host's own apt sources for bookworm* main
#   PYREG_DEBIAN_SECURITY_MIRROR  its security mirror (bookworm-security), with the above
#   PYREG_EXTRA_CA_DIR            *.crt files the base trusts besides Debian's bundle (a site's
#                                 TLS-inspecting proxy, a private PyPI mirror); default the
#                                 build host's own /usr/local/share/ca-certificates
#   PYREG_PIP_INDEX_URL           a PyPI mirror, written to the base's /etc/pip.conf
#   DOCKER_HOST                   the engine to use, as for the docker CLI
# Needs root (mmdebstrap's root mode), mmdebstrap and the docker CLI.
set -euo pipefail

sources=()
if [ -n "${PYREG_DEBIAN_MIRROR:-}" ]; then
    sources+=("deb $PYREG_DEBIAN_MIRROR bookworm main" "deb $PYREG_DEBIAN_MIRROR bookworm-updates main")
    if [ -n "${PYREG_DEBIAN_SECURITY_MIRROR:-}" ]; then
        sources+=("deb $PYREG_DEBIAN_SECURITY_MIRROR bookworm-security main")
    fi
else
    # the mirror this host's apt uses (sources.list or deb822 .sources alike)
    mapfile -t sources < <(apt-get indextargets --format 'deb $(REPO_URI) $(RELEASE) $(COMPONENT)' \
        'Identifier: Packages' | grep -E ' bookworm(-updates|-security)? main$' | sort -u)
fi
if [ "${#sources[@]}" = 0 ]; then
    echo "no bookworm main in this host's apt sources: set PYREG_DEBIAN_MIRROR" >&2
    exit 1
fi
if [ "${1:-}" = --sources ]; then
    printf '%s\n' "${sources[@]}"
    exit 0
fi

base_tag=${1:?usage: $0 BASE_TAG [IMAGE_TAG]}
image_tag=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
ca_dir=${PYREG_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What python:3.11-slim gives deploy/Dockerfile, done here in the base rather than in the
# Dockerfile: `python` and `pip` on PATH, groupadd/useradd (passwd), and pip allowed to
# install system-wide (Debian's EXTERNALLY-MANAGED marker removed, as the container's Python
# is the application's own). merged-usr hook: usr-is-merged instead of usrmerge and its perl.
hooks=(--customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED')
if compgen -G "$ca_dir/*.crt" >/dev/null; then
    cp "$ca_dir"/*.crt "$work/"
    hooks+=(--customize-hook="cp '$work'/*.crt \"\$1\"/usr/local/share/ca-certificates/")
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null')
fi
if [ -n "${PYREG_PIP_INDEX_URL:-}" ]; then
    printf '[global]\nindex-url = %s\n' "$PYREG_PIP_INDEX_URL" >"$work/pip.conf"
    hooks+=(--customize-hook="cp '$work/pip.conf' \"\$1\"/etc/pip.conf")
fi

mmdebstrap --quiet --variant=essential \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include=python3,python3-pip,python-is-python3,passwd \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    "${hooks[@]}" \
    bookworm "$work/base.tar" "${sources[@]}"

docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$work/base.tar" "$base_tag" >/dev/null
echo "base image: $base_tag"

if [ -n "$image_tag" ]; then
    # DOCKER_BUILDKIT=0: Debian's docker.io has no buildx. The classic builder reads the
    # context's .dockerignore (a link to deploy/Dockerfile.dockerignore). --network host:
    # pip reaches PyPI even where the engine runs without a bridge (--bridge=none).
    DOCKER_BUILDKIT=0 docker build --network host -f "$root/deploy/Dockerfile" \
        --build-arg "BASE_IMAGE=$base_tag" -t "$image_tag" "$root"
    echo "image: $image_tag"
fi
