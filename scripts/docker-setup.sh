#!/usr/bin/env bash
# A Docker engine and the test image, on a fresh machine (CI) or a developer's: installs Debian's
# docker.io and debootstrap when missing, starts dockerd (no bridge, no iptables: containers use
# host or no networking), and builds vhtui-test/python:3.11 from a debootstrap root filesystem with
# `docker import` (no registry is reachable). The root filesystem tarball is cached between runs.
set -euo pipefail
IMAGE=vhtui-test/python:3.11
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vhtui-ci
ROOTFS_TAR=$CACHE/python-valohai-utils-rootfs.v2.tar.gz  # bump when the image's contents change
PIP=${PIP:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/pip}

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    (setsid dockerd --bridge=none --iptables=false >/tmp/vhtui-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "dockerd did not start:" >&2
        tail -20 /tmp/vhtui-dockerd.log >&2
        exit 1
    fi
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1 \
        || ! docker run --rm --network none "$IMAGE" python3 -c "import valohai" >/dev/null 2>&1; then
    mkdir -p "$CACHE"
    if [ ! -s "$ROOTFS_TAR" ]; then
        mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
        mirror=${mirror:-http://deb.debian.org/debian}
        rm -rf "$CACHE/rootfs"
        debootstrap --variant=minbase --include=python3 bookworm "$CACHE/rootfs" "$mirror" >/dev/null
        # valohai-utils in the image, as users' images have it: the contract tests run its scripts
        "$PIP" install --quiet --disable-pip-version-check --no-compile \
            --target "$CACHE/rootfs/usr/lib/python3/dist-packages" valohai-utils
        tar -C "$CACHE/rootfs" -c . | gzip -1 > "$ROOTFS_TAR.part"
        mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
        rm -rf "$CACHE/rootfs"
    fi
    docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$ROOTFS_TAR" "$IMAGE" >/dev/null
fi
echo "docker: $(docker version --format '{{.Server.Version}}'), image $IMAGE ready"
