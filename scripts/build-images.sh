#!/usr/bin/env bash
# Build the local test images used by mcpgw's integration tests:
#
#   mcpgw/testserver:dev      static mcpgw-testserver binary in a FROM scratch image
#   mcpgw/python-servers:dev  Debian bookworm rootfs (mmdebstrap) + venv /opt/mcp with
#                             the reference servers mcp-server-time and mcp-server-git,
#                             the official SDK mcp==$MCP_VERSION they run on, and
#                             /opt/sdk/server.py (scripts/sdk-server.py, a server written
#                             with that SDK: /opt/mcp/bin/python /opt/sdk/server.py)
#   mcpgw/gateway:dev         (with the argument `gateway`) static mcpgw in a FROM
#                             scratch image, for compose/docker-compose.yaml
#
# No registry is needed: nothing is pulled. Both images carry the label
# io.mcpgw.inputs-hash; when it matches the current inputs the build is skipped.
# The python rootfs tarball is also cached under .cache/images/ (keyed by the same
# hash), so re-creating a deleted image only costs a `docker import`.
#
# Usage (from anywhere): scripts/build-images.sh [test|testserver|python|gateway]
#        (default: test, which is testserver and python)
# Env: MCPGW_STATIC_BIN_DIR  take the static binaries from this directory instead of
#                            building them (see build_static_image)
#      MCPGW_DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org)
#      MCPGW_IMAGES_FORCE=1  ignore the caches and rebuild everything
set -euo pipefail

# ---- pins (changing anything in this file, or scripts/sdk-server.py, changes the
#      python image hash) ----
MCP_SERVER_TIME_VERSION="2026.10.19"
MCP_SERVER_GIT_VERSION="2026.10.19"
# The SDK the SDK server is written for; the reference servers above need mcp>=2.3,<3,
# so all three share the one venv.
MCP_VERSION="2.3.0"
DEBIAN_SUITE="bookworm"     # python3 is 3.11 in bookworm; wheels are fetched for cp311
PYTHON_ABI="cp311"
PYTHON_VERSION="3.11"
DEBIAN_PACKAGES="python3,python3-venv,git,ca-certificates,tzdata"
# Removed with `dpkg --force-depends` after the venv is built. git Depends on perl, but
# the commands GitPython runs (status, diff, log, add, commit, reset, branch, checkout,
# show) are C builtins; the rest is only needed at install time. Saves ~50 MB.
PRUNE_PACKAGES="perl perl-modules-5.36 libperl5.36 liberror-perl git-man usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl python3-pip-whl python3-setuptools-whl"

TESTSERVER_IMAGE="mcpgw/testserver:dev"
GATEWAY_IMAGE="mcpgw/gateway:dev"
PYTHON_IMAGE="mcpgw/python-servers:dev"
LABEL_KEY="io.mcpgw.inputs-hash"
RUST_TARGET="x86_64-unknown-linux-gnu"

MIRROR="${MCPGW_DEBIAN_MIRROR:-http://deb.debian.org}"
FORCE="${MCPGW_IMAGES_FORCE:-0}"

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)"
CACHE_DIR="$REPO_ROOT/.cache/images"
SDK_SERVER="$REPO_ROOT/scripts/sdk-server.py"

INIT_REQ='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"build-images","version":"1"}}}'

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }

sha256() { sha256sum | cut -d' ' -f1; }

current_label() {
    docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$1" 2>/dev/null || true
}

TMP_DIRS=()
cleanup() {
    local d
    for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf "$d"; done
}
trap cleanup EXIT
mktempdir() {
    local d
    d="$(mktemp -d "${TMPDIR:-/tmp}/mcpgw-images.XXXXXX")"
    TMP_DIRS+=("$d")
    printf '%s\n' "$d"
}

# Send $INIT_REQ to a container and require a JSON-RPC result.
smoke_test() {
    local what="$1"; shift
    local out
    if ! out="$(printf '%s\n' "$INIT_REQ" | timeout 60 docker run -i --rm "$@" 2>/dev/null)"; then
        : # servers may exit non-zero when stdin closes; judge by the output
    fi
    if ! grep -q '"result"' <<<"$out"; then
        die "$what: initialize did not return a result; output was: ${out:-<empty>}"
    fi
    log "$what: initialize OK"
}

command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "docker daemon not reachable"

# --------------------------------------------------------------------------
# 1. mcpgw/testserver:dev
# --------------------------------------------------------------------------
# A static binary of workspace package $1 in a FROM scratch image $2.
#
# With MCPGW_STATIC_BIN_DIR set (the Makefile sets it on x86_64 Linux, where
# its one build of the workspace is already static), the binary is taken
# from there and nothing is compiled; otherwise it is built here, in release.
build_static_image() {
    local package="$1" image="$2"
    local bin
    if [[ -n "${MCPGW_STATIC_BIN_DIR:-}" ]]; then
        bin="$MCPGW_STATIC_BIN_DIR/$package"
        [[ -x "$bin" ]] || die "$package: no binary at $bin; build the workspace first (make build)"
        log "$package: using ${bin#"$REPO_ROOT"/}"
    else
        log "$package: cargo build (static, $RUST_TARGET, +crt-static, release)"
        local target_dir="$REPO_ROOT/target/static"
        (
            cd "$REPO_ROOT"
            CARGO_TARGET_DIR="$target_dir" \
            CARGO_PROFILE_RELEASE_STRIP=symbols \
            RUSTFLAGS="-C target-feature=+crt-static" \
                cargo build --release --quiet -p "$package" --target "$RUST_TARGET"
        )
        bin="$target_dir/$RUST_TARGET/release/$package"
    fi
    [[ -x "$bin" ]] || die "$package: binary not found at $bin"

    # Must be statically linked (a scratch image has no libc / loader).
    if command -v file >/dev/null; then
        local desc
        desc="$(file -b "$bin")"
        if [[ "$desc" == *"dynamically linked"* ]]; then
            die "$package: binary is dynamically linked: $desc"
        fi
    else
        if ldd "$bin" 2>&1 | grep -q '=>'; then
            die "$package: binary has dynamic dependencies: $(ldd "$bin" 2>&1)"
        fi
    fi

    local dockerfile
    dockerfile="FROM scratch
COPY $package /$package
ENTRYPOINT [\"/$package\"]
"
    local hash
    hash="$( { sha256sum <"$bin"; printf '%s' "$dockerfile"; } | sha256)"

    if [[ "$FORCE" != 1 && "$(current_label "$image")" == "$hash" ]]; then
        log "$package: $image up to date (${hash:0:12})"
        return
    fi

    log "$package: docker build $image (${hash:0:12})"
    local ctx
    ctx="$(mktempdir)"
    # A debug build carries its debug information; the image needs none.
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$ctx/$package" "$bin"
    else
        cp "$bin" "$ctx/$package"
    fi
    printf '%s' "$dockerfile" >"$ctx/Dockerfile"
    local build_log
    if ! build_log="$(docker build --quiet --label "$LABEL_KEY=$hash" -t "$image" "$ctx" 2>&1)"; then
        printf '%s\n' "$build_log" >&2
        die "$package: docker build failed"
    fi
}

build_testserver() {
    build_static_image mcpgw-testserver "$TESTSERVER_IMAGE"
    smoke_test "testserver" "$TESTSERVER_IMAGE"
}

# mcpgw itself, for compose/docker-compose.yaml (only with `gateway`).
build_gateway() {
    build_static_image mcpgw "$GATEWAY_IMAGE"
    docker run --rm "$GATEWAY_IMAGE" --version >/dev/null || die "gateway: $GATEWAY_IMAGE does not run"
    log "gateway: --version OK"
}

# --------------------------------------------------------------------------
# 2. mcpgw/python-servers:dev
# --------------------------------------------------------------------------
build_python_rootfs() {
    local out="$1"
    command -v mmdebstrap >/dev/null \
        || die "mmdebstrap not found; install it with: apt-get install -y mmdebstrap"
    command -v python3 >/dev/null || die "python3 (with pip) is needed on the host to download wheels"

    local work wheels
    work="$(mktempdir)"
    wheels="$work/wheels"
    mkdir -p "$wheels"

    log "python-servers: downloading wheels (mcp-server-time==$MCP_SERVER_TIME_VERSION, mcp-server-git==$MCP_SERVER_GIT_VERSION, mcp==$MCP_VERSION)"
    python3 -m pip download --quiet --disable-pip-version-check \
        --only-binary=:all: \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any \
        --python-version "$PYTHON_VERSION" --implementation cp --abi "$PYTHON_ABI" \
        -d "$wheels" \
        "mcp-server-time==$MCP_SERVER_TIME_VERSION" \
        "mcp-server-git==$MCP_SERVER_GIT_VERSION" \
        "mcp==$MCP_VERSION" >&2

    log "python-servers: mmdebstrap $DEBIAN_SUITE ($DEBIAN_PACKAGES)"
    # Hooks run on the host with "$1" = the rootfs; mmdebstrap mounts /proc,/dev for chroot.
    # Commands inside the chroot get a clean environment so host PIP_* settings don't leak in.
    local in_root='chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8'
    mmdebstrap \
        --quiet \
        --format=tar \
        --variant=essential \
        --include="$DEBIAN_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --customize-hook="mkdir -p \"\$1/wheels\" && cp -a '$wheels'/. \"\$1/wheels/\"" \
        --customize-hook="$in_root python3 -m venv /opt/mcp" \
        --customize-hook="$in_root /opt/mcp/bin/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check --find-links /wheels mcp-server-time==$MCP_SERVER_TIME_VERSION mcp-server-git==$MCP_SERVER_GIT_VERSION mcp==$MCP_VERSION" \
        --customize-hook="$in_root /opt/mcp/bin/pip uninstall --quiet --yes pip setuptools" \
        --customize-hook='test -x "$1/opt/mcp/bin/mcp-server-time" && test -x "$1/opt/mcp/bin/mcp-server-git"' \
        --customize-hook="$in_root /opt/mcp/bin/python -c 'import mcp_server_time, mcp_server_git'" \
        --customize-hook="mkdir -p \"\$1/opt/sdk\" && install -m 0755 '$SDK_SERVER' \"\$1/opt/sdk/server.py\"" \
        --customize-hook="$in_root /opt/mcp/bin/python -c 'import importlib.metadata as m; assert m.version(\"mcp\") == \"$MCP_VERSION\", m.version(\"mcp\")'" \
        --customize-hook="$in_root dpkg --purge --force-depends $PRUNE_PACKAGES >/dev/null 2>&1" \
        --customize-hook="$in_root git --version >/dev/null" \
        --customize-hook='rm -rf "$1/wheels" "$1/root/.cache" "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/* "$1"/tmp/* "$1"/usr/share/python-wheels/*' \
        --customize-hook='chmod 1777 "$1/tmp"' \
        "$DEBIAN_SUITE" "$out" \
        "deb $MIRROR/debian $DEBIAN_SUITE main" \
        "deb $MIRROR/debian $DEBIAN_SUITE-updates main" \
        "deb $MIRROR/debian-security $DEBIAN_SUITE-security main"
}

build_python_servers() {
    local hash
    hash="$(cat "$SCRIPT_PATH" "$SDK_SERVER" | sha256)"

    if [[ "$FORCE" != 1 && "$(current_label "$PYTHON_IMAGE")" == "$hash" ]]; then
        log "python-servers: $PYTHON_IMAGE up to date (${hash:0:12})"
        return
    fi

    mkdir -p "$CACHE_DIR"
    local tarball="$CACHE_DIR/python-servers-$hash.tar"
    if [[ "$FORCE" == 1 || ! -f "$tarball" ]]; then
        local tmp="$CACHE_DIR/.tmp-$$-python-servers.tar"
        TMP_DIRS+=("$tmp")
        build_python_rootfs "$tmp"
        mv -f "$tmp" "$tarball"
        # Drop rootfs tarballs from older inputs.
        find "$CACHE_DIR" -maxdepth 1 -name 'python-servers-*.tar' ! -name "python-servers-$hash.tar" -delete
    else
        log "python-servers: using cached rootfs ${tarball#"$REPO_ROOT"/}"
    fi

    log "python-servers: docker import $PYTHON_IMAGE (${hash:0:12})"
    docker import \
        --change 'ENV PATH=/opt/mcp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV HOME=/tmp' \
        --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
        --change 'ENV PYTHONUNBUFFERED=1' \
        --change 'WORKDIR /' \
        --change "LABEL $LABEL_KEY=$hash" \
        --change "LABEL io.mcpgw.mcp-server-time=$MCP_SERVER_TIME_VERSION io.mcpgw.mcp-server-git=$MCP_SERVER_GIT_VERSION io.mcpgw.mcp=$MCP_VERSION" \
        --message "mcpgw python MCP reference servers and SDK server ($DEBIAN_SUITE)" \
        "$tarball" "$PYTHON_IMAGE" >/dev/null

    smoke_test "python-servers (mcp-server-time, read-only, uid 65534)" \
        --read-only --tmpfs /tmp --user 65534:65534 --network none \
        --cap-drop ALL --security-opt no-new-privileges \
        "$PYTHON_IMAGE" /opt/mcp/bin/mcp-server-time --local-timezone UTC
    smoke_test "python-servers (sdk-server, read-only, uid 65534)" \
        --read-only --tmpfs /tmp --user 65534:65534 --network none \
        --cap-drop ALL --security-opt no-new-privileges \
        "$PYTHON_IMAGE" /opt/mcp/bin/python /opt/sdk/server.py
}

case "${1:-test}" in
    test) build_testserver; build_python_servers ;;
    testserver) build_testserver ;;
    python) build_python_servers ;;
    gateway) build_gateway ;;
    *) die "usage: scripts/build-images.sh [test|testserver|python|gateway]" ;;
esac
log "done"
